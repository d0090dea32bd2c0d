"""Helpers shared by the test tiers (tests/unit, tests/integration, tests/real, tests/slurm, tests/cuda).

    synthetic   tiny deterministic Hugging Face members of three tokenizer styles (and an NLLB look-alike)
    pipeline    a copy of the workflow in a temporary directory, running Snakemake on it, reading its output
    configs     the default config, and the table of bad configs every check must reject
    stages      the pipeline's model stages run in process on the synthetic pair (materialise ... relative caches)

tests/conftest.py puts tests/ on sys.path, so test modules import these as ``from helpers import synthetic``.
Test modules never import from each other.
"""
