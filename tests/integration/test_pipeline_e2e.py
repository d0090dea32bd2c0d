"""A tiny end-to-end run of the Snakemake pipeline on synthetic models: the second run does nothing, an eta change
reruns only its ensemble, a killed decode leaves nothing trusted, and 1 vs k shards give identical predictions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from helpers import synthetic
from helpers.pipeline import (BATCH_DONE, DATA_DIR, SNAKEMAKE, planned_jobs, slow_decode_env, snakemake, workdir,
                              write_config)


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    # The pair of tests/helpers/synthetic.py, with a context long enough for 5-shot TriviaQA prompts.
    a = synthetic.build_member(tmp / "models", "bytelevel", seed=0, hidden_size=32, name="bytelevel",
                               max_position_embeddings=4096)
    b = synthetic.build_member(tmp / "models", "sentencepiece", seed=1, hidden_size=48, name="sentencepiece",
                               max_position_embeddings=4096)
    work = workdir(tmp)
    config = {
        "title": "synthetic",
        "data_dir": str(DATA_DIR),
        "min_anchors": 50,
        "models": {"bl": {"source": a, "mem_mb": 500}, "sp": {"source": b, "mem_mb": 500}},
        "tasks": {
            "arc_c": {"limit": 4, "dev_limit": 4, "batch_size": 2},
            "triviaqa": {"limit": 6, "dev_limit": 3, "batch_size": 2, "shards": 2, "max_new_tokens": 6},
        },
        "ensembles": [
            {"name": "bl+sp", "members": ["bl", "sp"], "eta": 0.15, "steps": 5},
            {"name": "sp+bl", "members": ["sp", "bl"], "eta": 0.15, "steps": 5},
        ],
    }
    write_config(work, config)
    t0 = time.perf_counter()
    snakemake(work, "--cores", "2")
    print(f"cold synthetic run: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return work, config


def test_e2e_summary_and_second_run_does_nothing(e2e):
    work, _ = e2e
    md = (work / "results" / "summary.md").read_text()
    for row in ["bl", "sp", "bl+sp DeePEn-Avg", "bl+sp DeePEn-Adapt", "sp+bl DeePEn-Avg", "sp+bl DeePEn-Adapt"]:
        assert f"| {row} |" in md
    assert "ARC-C" in md and "TriviaQA" in md
    for png in ["accuracy.png", "gain.png"]:
        assert (work / "results" / "plots" / png).stat().st_size > 0
    preds = pq.read_table(work / "results/predictions/test/bl+sp.deepen.avg/arc_c.parquet").to_pylist()
    assert len(preds) == 4 and all(p["choice"] in "ABCD" for p in preds)
    weights = json.loads((work / "results/weights/bl+sp/arc_c.json").read_text())
    assert sum(weights["weights"]) == pytest.approx(1.0)
    assert pq.read_table(work / "resources/anchors/bl+sp.parquet").column_names[:4] == ["text", "bytes", "id_0", "id_1"]
    proc = snakemake(work, "-n", "--cores", "2")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_e2e_eta_change_reruns_only_that_ensemble_and_killed_decode_is_not_trusted(e2e, tmp_path):
    work, config = e2e
    config["ensembles"][0]["eta"] = 0.3
    write_config(work, config)
    jobs = planned_jobs(snakemake(work, "-n", "--cores", "2").stdout)
    rules = {r for r, _ in jobs}
    # η 0.3, T 5 is certified by default (certify auto): that ensemble's relative caches gain the exact tail
    assert rules == {"relative", "decode", "score", "summary", "plots", "all"}, rules
    assert sorted(out for r, out in jobs if r == "relative") == [f"resources/relative/bl+sp/{m}.parquet"
                                                                  for m in ("bl", "sp")]
    for rule, out in jobs:
        if rule in ("decode", "score"):
            assert "/bl+sp.deepen.avg/" in out or "/bl+sp.deepen.adapt/" in out, out
    assert sum(r == "decode" for r, _ in jobs) == 2 * (1 + 2)  # arc_c 1 shard + triviaqa 2 shards, Avg and Adapt

    # Kill the whole run (SIGKILL) while a decode job is halfway through its batches (slowed down from the test side).
    target = work / "results/decode/test/bl+sp.deepen.avg/triviaqa/0-of-2.parquet"
    log = work / "logs/decode/test/bl+sp.deepen.avg/triviaqa/0-of-2.log"
    first_batch = BATCH_DONE.format(n=1, rows=2)
    old = target.read_bytes()  # the eta 0.15 output: stale (its params changed) but complete
    proc = subprocess.Popen([SNAKEMAKE, "--cores", "1", str(target.relative_to(work))], cwd=work,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, **slow_decode_env(tmp_path / "slow", 60)})
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (log.is_file() and first_batch in log.read_text()):
            time.sleep(0.5)
        assert log.is_file() and first_batch in log.read_text(), "decode job never got going"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # Nothing half-written took the target's place (atomic rename), and the next run redoes the job.
    assert not target.exists() or target.read_bytes() == old
    snakemake(work, "--unlock")
    jobs = planned_jobs(snakemake(work, "-n", "--cores", "2", "--rerun-incomplete").stdout)
    assert ("decode", str(target.relative_to(work))) in jobs
    snakemake(work, "--cores", "2", "--rerun-incomplete")
    assert target.exists() and target.read_bytes() != old
    assert "Nothing to be done" in snakemake(work, "-n", "--cores", "2").stdout


def test_e2e_one_shard_and_k_shards_give_identical_predictions(e2e):
    work, config = e2e
    methods = ["bl", "sp", "bl+sp.deepen.avg", "sp+bl.deepen.adapt"]
    before = {m: (work / f"results/predictions/test/{m}/triviaqa.parquet").read_bytes() for m in methods}
    assert pq.read_table(work / "results/predictions/test/bl/triviaqa.parquet").num_rows == 6
    config["tasks"]["triviaqa"]["shards"] = 1
    write_config(work, config)
    snakemake(work, "--cores", "2")
    assert (work / "results/decode/test/bl/triviaqa/0-of-1.parquet").exists()
    for m in methods:
        after = (work / f"results/predictions/test/{m}/triviaqa.parquet").read_bytes()
        assert after == before[m], m


def _children_running(pid: int, marker: str) -> list[int]:
    """Processes descended from ``pid`` whose command line contains ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = open(f"/proc/{entry}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
            stat = open(f"/proc/{entry}/stat").read()
        except OSError:
            continue
        parent = int(stat[stat.rindex(")") + 2:].split()[1])
        if marker in cmd and (parent == pid or pid in _ancestors(parent)):
            found.append(int(entry))
    return found


def _ancestors(pid: int) -> list[int]:
    out = []
    while pid > 1:
        out.append(pid)
        try:
            stat = open(f"/proc/{pid}/stat").read()
        except OSError:
            break
        pid = int(stat[stat.rindex(")") + 2:].split()[1])
    return out


def test_e2e_a_decode_orphaned_by_a_killed_snakemake_stops_and_its_stale_result_is_never_scored(e2e, tmp_path):
    """Snakemake SIGKILLed mid-decode leaves its job running (parent PID 1): the job stops by itself; the η then
    changes and the run is redone; a shard that an older job still wrote would be refused by score."""
    work, config = e2e
    target = work / "results/decode/test/sp+bl.deepen.avg/arc_c/0-of-1.parquet"
    log = work / "logs/decode/test/sp+bl.deepen.avg/arc_c/0-of-1.log"
    config["ensembles"][1]["eta"] = 0.3  # a new setting, so that the shard is decoded again
    write_config(work, config)
    proc = subprocess.Popen([SNAKEMAKE, "--cores", "1", str(target.relative_to(work))], cwd=work,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, **slow_decode_env(tmp_path / "slow", 40)})
    deadline = time.time() + 180
    while time.time() < deadline and not (log.is_file() and BATCH_DONE.format(n=1, rows=2) in log.read_text()):
        time.sleep(0.5)
    jobs = _children_running(proc.pid, "decode.py")
    assert jobs, "the decode job never got going"
    os.kill(proc.pid, signal.SIGKILL)  # Snakemake alone: its job is orphaned
    proc.wait()
    deadline = time.time() + 30
    while time.time() < deadline and any(os.path.exists(f"/proc/{pid}") for pid in jobs):
        time.sleep(0.5)
    assert not any(os.path.exists(f"/proc/{pid}") for pid in jobs), "the orphaned decode job kept running"
    assert "is gone: stopping" in log.read_text()
    assert not target.exists()  # it wrote nothing
    config["ensembles"][1]["eta"] = 5.0
    write_config(work, config)
    snakemake(work, "--unlock")
    snakemake(work, "--cores", "2", "--rerun-incomplete")
    shard = pq.read_table(target)
    made_from = json.loads(shard.schema.metadata[b"provenance"])
    assert made_from["settings"]["options"]["eta"] == 5.0
    # an older job's shard slipped in after all (say on a cluster, where no watch applies): score refuses it
    old = dict(made_from, settings={**made_from["settings"], "options": {**made_from["settings"]["options"],
                                                                         "eta": 0.15}})
    pq.write_table(shard.replace_schema_metadata({b"provenance": json.dumps(old, sort_keys=True).encode()}), target)
    res = snakemake(work, "--cores", "2", check=False)
    assert res.returncode != 0 and not target.exists()
    assert "made with other settings" in (work / "logs/score/test/sp+bl.deepen.avg/arc_c.log").read_text()
    # Snakemake does not redo jobs for a missing intermediate file while the summary built from the good shard
    # stands, so ask for the score itself: the shard is decoded again
    snakemake(work, "--cores", "2", "results/scores/test/sp+bl.deepen.avg/arc_c.parquet")
    assert json.loads(pq.read_table(target).schema.metadata[b"provenance"])["settings"]["options"]["eta"] == 5.0
