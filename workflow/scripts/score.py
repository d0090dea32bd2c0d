"""Rule score: decode shards -> predictions + timings + per-row scores."""
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821  (Snakemake injects `snakemake`)

from deepen.pipeline import gather, score

gather(list(snakemake.input.shards), snakemake.output.predictions, snakemake.output.timings)
acc = score(snakemake.wildcards.task, snakemake.input.prompts, snakemake.output.predictions, snakemake.output.timings,
            snakemake.output.scores)
print(f"[deepen] accuracy {acc:.2f}", file=sys.stderr)
