"""Rule summary: scores -> summary Parquet + Markdown."""
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821  (Snakemake injects `snakemake`)

from deepen.pipeline.summary import write_summary

published = snakemake.input.published
write_summary(snakemake.params.entries, snakemake.output.parquet, snakemake.output.markdown,
              published_path=published if isinstance(published, str) and published else None,
              title=snakemake.params.title)
