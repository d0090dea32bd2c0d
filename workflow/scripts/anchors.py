"""Rule anchors: member vocabularies -> anchors Parquet."""
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821  (Snakemake injects `snakemake`)

from deepen.pipeline.models import anchors_table

p = snakemake.params
anchors_table(list(snakemake.input), p.members, snakemake.output[0], min_anchors=p.min_anchors, max_anchors=p.max_anchors)
