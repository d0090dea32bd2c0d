"""Rule scaling_anchors: ranking + the pool's vocabularies -> anchors of the first k ranked members."""
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821  (Snakemake injects `snakemake`)

from deepen.studies import scaling_anchors

scaling_anchors(snakemake.input.ranking, list(snakemake.input.vocabularies), snakemake.params.members,
                int(snakemake.wildcards.k), snakemake.output[0], min_anchors=snakemake.params.min_anchors,
                max_anchors=snakemake.params.max_anchors)
