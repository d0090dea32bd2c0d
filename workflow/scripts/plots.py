"""Rule plots: summary -> PNG plots."""
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821  (Snakemake injects `snakemake`)

from deepen.pipeline.plots import plots

plots(snakemake.input[0], snakemake.output.accuracy, snakemake.output.gain)
