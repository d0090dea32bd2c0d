"""Rule vocabulary: model directory -> normalised vocabulary Parquet."""
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821  (Snakemake injects `snakemake`)

from deepen.pipeline.models import vocabulary_table

vocabulary_table(snakemake.input.model, snakemake.input.meta, snakemake.output[0])
