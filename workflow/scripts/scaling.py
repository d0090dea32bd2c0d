"""Rule scaling: rankings + test scores -> accuracy/latency vs number of members (Parquet, Markdown, PNG)."""
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821  (Snakemake injects `snakemake`)

from deepen.pipeline.studies import scaling_results

o = snakemake.output
scaling_results(snakemake.params.tasks, o.parquet, o.markdown, o.png)
