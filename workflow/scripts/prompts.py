"""Rule prompts: task split -> prompts Parquet."""
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821  (Snakemake injects `snakemake`)

from deepen.pipeline.prompts import prompts_file

p, w = snakemake.params, snakemake.wildcards
n = prompts_file(w.task, w.split, snakemake.output[0], data_dir=p.data_dir, limit=p.limit, offset=p.offset, hub=p.hub,
                 max_new_tokens=p.max_new_tokens)
print(f"[deepen] {n} prompts", file=sys.stderr)
