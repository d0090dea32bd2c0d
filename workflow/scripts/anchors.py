"""Rule anchors: member vocabularies -> anchors Parquet."""
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821  (Snakemake injects `snakemake`)

from deepen.pipeline import anchors_table

anchors_table(list(snakemake.input), snakemake.params.members, snakemake.output[0],
              min_anchors=snakemake.params.min_anchors, max_anchors=snakemake.params.max_anchors)
