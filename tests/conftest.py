"""Shared fixtures: tiny synthetic members (fast, exact), the pipeline's model stages on them, and the two embedded
real models (slow, marked `real`). Helpers live in the package tests/helpers (on sys.path from here)."""

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


def _installed(name: str) -> None:
    """Fail (not skip) when an embedded model the tests need is missing: `make setup` installs every one of them."""
    from deepen.embedded import EMBEDDED, part_paths
    from deepen.errors import DeepenError

    try:
        part_paths(EMBEDDED[name])
    except DeepenError as exc:
        pytest.fail(f"{exc} (`make setup` installs it)")


@pytest.fixture(scope="session")
def real_members():
    """SmolLM2-135M and Gemma-3-270M, materialised once into $DEEPEN_HOME (the default cache when unset)."""
    from deepen import load_member

    for name in ("smollm2-135m", "gemma3-270m"):
        _installed(name)
    return load_member("smollm2-135m"), load_member("gemma3-270m")


@pytest.fixture(scope="session")
def qwen_member():
    """Qwen2.5-Coder-0.5B-Instruct, the third tokenizer family (the `qwen` extra)."""
    from deepen import load_member

    _installed("qwen2.5-coder-0.5b")
    return load_member("qwen2.5-coder-0.5b")
