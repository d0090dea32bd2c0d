"""The benchmark's bookkeeping (its figures are measured by tests/real/test_bench.py and the bench itself)."""

import shutil

import pytest

from deepen.bench import build
from deepen.bench.agreement import merged
from deepen.bench.speed import floor

SLEEP = shutil.which("sleep")  # found before a test narrows PATH
SETTINGS = {"anchors": 2048, "prompts": 12, "tokens": 16}


def cell(order, eta, steps, agree, commit=None):
    c = {"order": order, "eta": eta, "steps": steps, "compared": 10, "agree": {"fast": agree}}
    return c | ({"commit": commit} if commit else {})


def test_the_agreement_grid_keeps_the_cells_a_run_did_not_redo():
    ab, ba = ["a", "b"], ["b", "a"]
    last = SETTINGS | {"meta": {"commit": "old"}, "grid": [cell(ab, 1.0, 1, 9), cell(ba, 1.0, 1, 8), cell(ab, 0.5, 1, 7)]}
    now = [cell(ab, 0.5, 1, 10, "new"), cell(ba, 0.5, 1, 10, "new")]
    grid = merged(now, last, SETTINGS)
    assert [(c["order"], c["eta"], c["agree"]["fast"], c["commit"]) for c in grid] == [
        (ab, 0.5, 10, "new"), (ab, 1.0, 9, "old"), (ba, 0.5, 10, "new"), (ba, 1.0, 8, "old")]


def test_the_agreement_grid_starts_afresh_when_the_settings_differ():
    last = SETTINGS | {"meta": {"commit": "old"}, "grid": [cell(["a", "b"], 1.0, 1, 9)]}
    now = [cell(["a", "b"], 0.5, 1, 10, "new")]
    assert merged(now, last, SETTINGS | {"prompts": 24}) == now
    assert merged(now, None, SETTINGS) == now


def test_the_floor_replaces_the_fusion_by_its_rows_at_the_best_rate():
    """At batch 1 a 100 ms step spends 40 ms fusing and computes 10 + 20 rows; at 0.5 / 1.0 ms per row the fusion
    would cost 25 ms: the step 85 ms, the ratio 2.0 x 0.85."""
    ratios = {"deepen": 2.0, "gac": 1.5, "unite": 1.25}
    res = {"breakdown_ms_per_step": {k: {"forward_main": 30.0, "forward_assistants": 29.0, "fuse": 40.0,
                                         "relative": 30.0, "search": 9.0, "tokenizer": 1.0}
                                     for k in ("batch_1", "batch_n")},
           "rows_per_step": {"batch_1": [10, 20], "batch_n": [10, 20]},
           "rates": {"row_ms": {"float32": [0.5, 1.0], "bfloat16": [0.25, 0.5]}},
           "batch_1": {"batch": 1, "ratio": ratios}, "batch_n": {"batch": 16, "ratio": ratios}}
    f = floor(res)
    assert f["batch_1"]["float32"] == pytest.approx(2.0 * 85 / 100)
    assert f["batch_n"]["bfloat16"] == pytest.approx(2.0 * 72.5 / 100)
    assert f["deepen_vs_cheapest_every_step_peer"] == pytest.approx(2.0 * 0.85 / 1.25)


def fake_scontrol(directory, seconds):
    exe = directory / "scontrol"
    exe.write_text(f"#!/bin/sh\nexec {SLEEP} {seconds}\n")  # PATH holds only this directory
    exe.chmod(0o755)


def test_the_slurm_probe_is_timed_where_scontrol_is_on_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert build.slurm_probe_s() is None  # no SLURM client: the plugin's probe fails at once
    fake_scontrol(tmp_path, 0.3)
    assert build.slurm_probe_s() >= 0.3


def test_a_probe_that_hangs_is_cut_at_the_plugins_timeout(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(build, "SLURM_PROBE_TIMEOUT_S", 0.2)
    fake_scontrol(tmp_path, 30)
    assert 0.2 <= build.slurm_probe_s() < 10
