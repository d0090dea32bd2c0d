"""Rule scaling_relative: the relative space of the member ranked `rank` in the first-k ensemble."""
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821  (Snakemake injects `snakemake`)

import torch

from deepen.studies import scaling_relative

torch.set_num_threads(snakemake.threads)
scaling_relative(snakemake.input.ranking, list(snakemake.input.models), list(snakemake.input.metas),
                 snakemake.params.members, int(snakemake.wildcards.k), int(snakemake.wildcards.rank),
                 snakemake.input.anchors, snakemake.output[0])
