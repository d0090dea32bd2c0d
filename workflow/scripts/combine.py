"""Rule combine: candidates' cached predictions -> Voting / MBR predictions + timings + per-row scores."""
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821  (Snakemake injects `snakemake`)

from deepen.pipeline.score import combine_files, score

i, o, p, task = snakemake.input, snakemake.output, snakemake.params, snakemake.wildcards.task
combine_files(task, p.rule, list(i.predictions), list(i.timings), p.candidates, i.prompts, o.predictions, o.timings)
acc = score(task, i.prompts, o.predictions, o.timings, o.scores)
print(f"[deepen] {p.rule} over {', '.join(p.candidates)}: score {acc:.2f}", file=sys.stderr)
