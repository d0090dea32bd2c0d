"""Rule relative: model + anchors -> relative-space cache Parquet."""
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821  (Snakemake injects `snakemake`)

import torch

from deepen.pipeline.models import relative_table

torch.set_num_threads(snakemake.threads)
i = snakemake.input
relative_table(i.model, i.meta, i.anchors, snakemake.params.member_index, snakemake.output[0],
               snakemake.params.exact_tail)
