"""Rule materialise: a model source -> safetensors directory + fingerprint JSON."""
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821  (Snakemake injects `snakemake`)

import torch

from deepen.pipeline import materialise

torch.set_num_threads(snakemake.threads)
materialise(snakemake.params.source, snakemake.output.model, snakemake.output.meta, dtype=snakemake.params.dtype,
            cache_dir=snakemake.params.cache_dir, trust_remote_code=snakemake.params.trust_remote_code)
