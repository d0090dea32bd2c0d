"""Rule adapt_weights: members' dev scores -> DeePEn-Adapt weights JSON."""
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821  (Snakemake injects `snakemake`)

from deepen.pipeline.score import dev_weights

w = dev_weights(list(snakemake.input), snakemake.params.members, snakemake.output[0])
print(f"[deepen] weights {w}", file=sys.stderr)
