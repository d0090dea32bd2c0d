"""Rule decode: one shard of one (method, task) -> predictions Parquet."""
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821  (Snakemake injects `snakemake`)

import torch

from deepen.pipeline.decode import decode_job

torch.set_num_threads(snakemake.threads)
w = snakemake.wildcards
decode_job(dict(snakemake.input.items()), snakemake.params.settings, int(w.shard), int(w.n), snakemake.output[0])
