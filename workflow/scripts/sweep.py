"""Rule sweep: test scores of the sweep points -> accuracy/latency vs eta or T (Parquet, PNG)."""
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821  (Snakemake injects `snakemake`)

from deepen.pipeline.studies import sweep_results

sweep_results(snakemake.wildcards.param, snakemake.params.points, snakemake.output.parquet, snakemake.output.png)
