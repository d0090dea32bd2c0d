"""Rule materialise: a model source -> safetensors directory + fingerprint JSON."""
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821  (Snakemake injects `snakemake`)

import torch

from deepen.pipeline.models import materialise

torch.set_num_threads(snakemake.threads)
p = snakemake.params
materialise(p.source, snakemake.output.model, snakemake.output.meta, dtype=p.dtype, trust_remote_code=p.trust_remote_code)
