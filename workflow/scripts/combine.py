"""Rule combine: candidates' cached predictions -> Voting / MBR predictions + timings + per-row scores."""
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821  (Snakemake injects `snakemake`)

from deepen.combine import combine_files
from deepen.pipeline import score

task = snakemake.wildcards.task
combine_files(task, snakemake.params.rule, list(snakemake.input.predictions), list(snakemake.input.timings),
              snakemake.params.candidates, snakemake.input.prompts, snakemake.output.predictions,
              snakemake.output.timings)
acc = score(task, snakemake.input.prompts, snakemake.output.predictions, snakemake.output.timings,
            snakemake.output.scores)
print(f"[deepen] {snakemake.params.rule} over {', '.join(snakemake.params.candidates)}: accuracy {acc:.2f}",
      file=sys.stderr)
