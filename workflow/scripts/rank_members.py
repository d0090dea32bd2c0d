"""Rule rank_members: the scaling pool's dev scores -> members ranked by dev accuracy (JSON)."""
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821  (Snakemake injects `snakemake`)

from deepen.pipeline.studies import rank_members

rank_members(list(snakemake.input), snakemake.params.members, snakemake.output[0])
