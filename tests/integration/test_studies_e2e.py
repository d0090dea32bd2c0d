"""The combination rules (Voting / MBR, DeePEn+Voting/MBR) and the studies (scaling, eta / T sweeps) end to end
through Snakemake on three synthetic members."""

from __future__ import annotations

import json
import sys
import time

import pyarrow.parquet as pq
import pytest

from deepen.eval import combine
from deepen.eval.metrics import CHOICE, EXACT_MATCH
from helpers import synthetic
from helpers.pipeline import DATA_DIR, snakemake, workdir, write_config


@pytest.fixture(scope="module")
def studies_run(tmp_path_factory):
    """Three synthetic members, one 3-member ensemble with Voting / MBR, scaling over the three, an eta / T sweep."""
    tmp = tmp_path_factory.mktemp("studies")
    models = {name: synthetic.build_member(tmp / "models", style, seed=seed, hidden_size=h, name=name,
                                           max_position_embeddings=4096)
              for name, style, seed, h in [("bl", "bytelevel", 0, 32), ("sp", "sentencepiece", 1, 48),
                                           ("bl2", "bytelevel", 2, 32)]}
    work = workdir(tmp)
    config = {
        "title": "synthetic studies",
        "data_dir": str(DATA_DIR),
        "min_anchors": 50,
        "models": {k: {"source": v, "mem_mb": 500} for k, v in models.items()},
        "tasks": {"arc_c": {"limit": 4, "dev_limit": 4, "batch_size": 2},
                  "triviaqa": {"limit": 4, "dev_limit": 2, "batch_size": 2, "max_new_tokens": 4}},
        "ensembles": [{"name": "e3", "members": ["bl", "sp", "bl2"], "combine": True}],
        "scaling": {"members": ["bl", "sp", "bl2"], "tasks": ["arc_c"]},
        "sweeps": {"ensemble": "e3", "tasks": ["arc_c"], "eta": [0.0, 0.15], "steps": [1, 5]},
    }
    write_config(work, config)
    t0 = time.perf_counter()
    snakemake(work, "--cores", "2")
    print(f"cold synthetic studies run: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return work


def _read(path):
    return pq.read_table(path).to_pylist()


def test_e2e_voting_mbr_rows_reuse_the_cached_predictions(studies_run):
    work = studies_run
    md = (work / "results" / "summary.md").read_text()
    for row in ["e3 Voting", "e3 MBR", "e3 DeePEn-Avg", "e3 DeePEn-Adapt", "e3 DeePEn+Voting/MBR"]:
        assert f"| {row} |" in md
    assert md.index("| e3 Voting |") < md.index("| e3 MBR |") < md.index("| e3 DeePEn-Avg |") \
        < md.index("| e3 DeePEn+Voting/MBR |")  # Table 1's order
    pred = work / "results" / "predictions" / "test"
    timings = work / "results" / "timings" / "test"
    deepen_first = ["e3.deepen.adapt", "bl", "sp", "bl2"]
    for method, task, rule, pool in [("e3.voting", "arc_c", "voting", ["bl", "sp", "bl2"]),
                                     ("e3.mbr", "triviaqa", "mbr", ["bl", "sp", "bl2"]),
                                     ("e3.deepen.adapt+voting-mbr", "arc_c", "voting", deepen_first),
                                     ("e3.deepen.adapt+voting-mbr", "triviaqa", "mbr", deepen_first)]:
        metric = CHOICE if task == "arc_c" else EXACT_MATCH
        cands = [_read(pred / m / f"{task}.parquet") for m in pool]
        times = [_read(timings / m / f"{task}.parquet") for m in pool]
        choices = {p["id"]: p["choices"] for p in _read(work / "resources" / "prompts" / "test" / f"{task}.parquet")}
        expected, expected_times = combine.combine_rows(metric, rule, cands, pool, times, choices)
        assert _read(pred / method / f"{task}.parquet") == expected, method
        got_times = [{k: t[k] for k in ("id", "seconds", "n_tokens")} for t in _read(timings / method / f"{task}.parquet")]
        assert got_times == expected_times, method
    assert not (pred / "e3.voting" / "triviaqa.parquet").exists() and not (pred / "e3.mbr" / "arc_c.parquet").exists()
    assert "Nothing to be done" in snakemake(work, "-n", "--cores", "2").stdout


def test_e2e_scaling_follows_the_dev_ranking(studies_run):
    work = studies_run
    ranking = json.loads((work / "results" / "scaling" / "arc_c" / "ranking.json").read_text())
    assert sorted(ranking["members"]) == ["bl", "bl2", "sp"]
    assert ranking["dev_accuracy"] == sorted(ranking["dev_accuracy"], reverse=True)
    rows = _read(work / "results" / "scaling.parquet")
    assert [(r["k"], r["members"]) for r in rows] == [(k, "+".join(ranking["members"][:k])) for k in (1, 2, 3)]
    best = _read(work / "results" / "scores" / "test" / ranking["members"][0] / "arc_c.parquet")
    assert rows[0]["acc"] == 100.0 * sum(r["correct"] for r in best) / len(best)
    metas = {m: json.loads((work / "resources" / "models" / f"{m}.json").read_text())["fingerprint"]
             for m in ranking["members"]}
    anchors = pq.read_table(work / "resources" / "scaling" / "arc_c" / "k2" / "anchors.parquet")
    assert anchors.schema.metadata[b"fingerprints"].decode().split("\t") == [metas[m] for m in ranking["members"][:2]]
    log = (work / "logs" / "decode" / "test" / "scaling.k3" / "arc_c" / "0-of-1.log").read_text()
    assert f"scaling k=3: {', '.join(ranking['members'])}" in log
    assert (work / "results" / "plots" / "scaling.png").stat().st_size > 0


def test_e2e_sweeps_reuse_the_ensemble_and_eta_0_is_the_main_model(studies_run):
    work = studies_run
    eta = _read(work / "results" / "sweeps" / "eta.parquet")
    assert [(r["value"], r["method"]) for r in eta] == [(0.0, "e3.deepen.avg.eta0"), (0.15, "e3.deepen.avg")]
    steps = _read(work / "results" / "sweeps" / "steps.parquet")
    assert [(r["value"], r["method"]) for r in steps] == [(1.0, "e3.deepen.avg.T1"), (5.0, "e3.deepen.avg")]
    pred = work / "results" / "predictions" / "test"
    main = _read(pred / "bl" / "arc_c.parquet")
    eta0 = _read(pred / "e3.deepen.avg.eta0" / "arc_c.parquet")
    assert [p["choice"] for p in eta0] == [p["choice"] for p in main]
    for png in ("sweep_eta.png", "sweep_steps.png"):
        assert (work / "results" / "plots" / png).stat().st_size > 0
