"""Rule scaling: rankings + test scores -> accuracy/latency vs number of members (Parquet, Markdown, PNG)."""
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821  (Snakemake injects `snakemake`)

from deepen.studies import scaling_results

scaling_results(snakemake.params.tasks, snakemake.output.parquet, snakemake.output.markdown, snakemake.output.png)
