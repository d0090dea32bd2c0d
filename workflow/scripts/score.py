"""Rule score: decode shards -> predictions + timings + per-row scores."""
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821  (Snakemake injects `snakemake`)

from deepen.pipeline.score import score_job

o = snakemake.output
acc = score_job(dict(snakemake.input.items()), snakemake.params.settings, o.predictions, o.timings, o.scores,
                snakemake.wildcards.task)
print(f"[deepen] score {acc:.2f}", file=sys.stderr)
