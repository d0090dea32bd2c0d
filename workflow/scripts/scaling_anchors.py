"""Rule scaling_anchors: ranking + the pool's vocabularies -> anchors of the first k ranked members."""
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821  (Snakemake injects `snakemake`)

from deepen.pipeline.models import scaling_anchors

i, p = snakemake.input, snakemake.params
scaling_anchors(i.ranking, list(i.vocabularies), p.members, int(snakemake.wildcards.k), snakemake.output[0],
                min_anchors=p.min_anchors, max_anchors=p.max_anchors)
