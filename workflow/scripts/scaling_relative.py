"""Rule scaling_relative: the relative space of the member ranked `rank` in the first-k ensemble."""
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821  (Snakemake injects `snakemake`)

import torch

from deepen.pipeline.models import scaling_relative

torch.set_num_threads(snakemake.threads)
i, w = snakemake.input, snakemake.wildcards
scaling_relative(i.ranking, list(i.models), list(i.metas), snakemake.params.members, int(w.k), int(w.rank), i.anchors,
                 snakemake.output[0], snakemake.params.exact_tail)
