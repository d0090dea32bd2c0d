"""Rule tune_eta: a tuned DeePEn method's dev scores at each η and the chosen η, as JSON."""
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821  (Snakemake injects `snakemake`)

import torch

from deepen.pipeline.tune import tune_job

torch.set_num_threads(snakemake.threads)
tune_job(dict(snakemake.input.items()), snakemake.params.settings, snakemake.wildcards.task, snakemake.output[0])
