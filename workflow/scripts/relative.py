"""Rule relative: model + anchors -> relative-space cache Parquet."""
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821  (Snakemake injects `snakemake`)

import torch

from deepen.pipeline import relative_table

torch.set_num_threads(snakemake.threads)
relative_table(snakemake.input.model, snakemake.input.meta, snakemake.input.anchors, snakemake.params.member_index,
               snakemake.output[0])
