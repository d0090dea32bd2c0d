"""Smoke run of the benchmark: it runs end to end and writes its files (timings are not checked here)."""

import json
import math
import subprocess
import sys

import pytest

pytestmark = pytest.mark.real


def test_bench_smoke(pair_dirs, tmp_path):
    out = tmp_path / "bench.json"
    res = subprocess.run(
        [sys.executable, "-m", "deepen.bench", *pair_dirs, "--quick", "--min-anchors", "50", "--capped-anchors", "100",
         "--snakemake-dir", "", "--out", str(out)],
        capture_output=True, text=True, timeout=900,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    sections = json.loads(out.read_text())["sections"]
    assert set(sections) == {"speed", "resync", "release", "memory", "build", "agreement"}
    speed = sections["speed"]
    assert set(speed["batch_n"]["ratio"]) == {"deepen", "gac", "unite", "safe+deepen"}
    # per-token figures are differences of two timings (48 tokens less 1 in a real run, 6 less 1 here): on a loaded
    # machine a smoke run's can come out negative, so only their presence is checked
    assert math.isfinite(speed["P1"]) and math.isfinite(speed["P3"]) and 0 <= speed["safe_share"]["share"] <= 1
    floor = speed["floor"]  # DeePEn's ratio with its fusion replaced by its rows at their best rate
    assert all(math.isfinite(floor[k][dtype]) for k in ("batch_1", "batch_n") for dtype in ("float32", "bfloat16"))
    assert 0 < speed["rates"]["bf16_rows_max_relative_deviation"] < 0.5
    assert sections["release"]["ceiling"] > 0
    assert all(all(x["same_tokens"].values()) for x in sections["resync"]["lengths"])
    assert sections["release"]["same_tokens"] is True
    assert 0.0 <= sections["agreement"]["P6"] <= 1.0
    assert all(s["meta"]["quick"] for s in sections.values())
    assert (tmp_path / "bench.md").read_text().startswith("| figure |")


def test_random_weight_members_keep_architecture_and_tokenizer(pair_dirs, tmp_path):
    """``--random-weights``: same config and tokenizer, weights drawn afresh (seeded, so reruns reuse them)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from deepen.bench.checkpoints import random_weight_members

    dirs = random_weight_members(list(pair_dirs), tmp_path)
    assert random_weight_members(list(pair_dirs), tmp_path) == dirs
    for src, new in zip(pair_dirs, dirs):
        a, b = (AutoModelForCausalLM.from_pretrained(d) for d in (src, new))
        assert a.config.to_dict() | {"_name_or_path": ""} == b.config.to_dict() | {"_name_or_path": ""}
        assert AutoTokenizer.from_pretrained(src).get_vocab() == AutoTokenizer.from_pretrained(new).get_vocab()
        wa, wb = a.get_input_embeddings().weight, b.get_input_embeddings().weight
        assert wa.shape == wb.shape and not torch.equal(wa, wb)
