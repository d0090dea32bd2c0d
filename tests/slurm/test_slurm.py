"""The pipeline on a real one-node SLURM cluster through profiles/slurm (marked `slurm`).

tools/slurm-cluster installs (Debian packages) and starts munged, slurmctld and slurmd on this machine, with one fake
GPU. A reduced slice of the embedded default on the synthetic pair of tests/helpers/synthetic.py (one task in two
shards, both members alone and their DeePEn-Avg ensemble, decode jobs given `--set-resources decode:gpu=1`) then runs
twice: `snakemake --profile
profiles/slurm` and a plain local `snakemake --cores 2` in another directory. The decode shards must have run as
SLURM jobs that were given the GPU, the light rules inside Snakemake, and the predictions must be byte-identical to
the local run's. The cluster is stopped afterwards (by the PIDs in its pid files) unless it was already running.

Skips where SLURM cannot be had (not root, no apt-get); under CI (CI=true, set by .ci/run) it fails instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "tools" / "slurm-cluster"
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
DATA_DIR = ROOT / "data" / "deepen_splits"  # shipped with the repository
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

from helpers import synthetic

def test_paper_config_through_slurm_profile_dry_run(tmp_path):
    """config/paper.yaml through the GPU profile for SLURM unchanged (dry run, no cluster needed): one decode job per
    (method, task, shard), each asking for its GPU and its members' memory; preparation jobs ask for memory and CPUs.
    (That the light rules are not submitted is checked on the real cluster below: a dry run does not mark local
    rules.) A decode job's GPU is not configuration: config/paper.yaml runs with `--profile profiles/slurm-gpu`."""
    config = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    work = _workdir(tmp_path / "w", yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))
    # A dry run caps threads at --cores (default 1 for -n); a real cluster run has no such cap.
    proc = subprocess.run([SNAKEMAKE, "-n", "--cores", "64", "--profile", "profiles/slurm-gpu", "--configfile",
                           "config/paper.yaml"], cwd=work, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    jobs = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", proc.stdout):
        m = re.match(r"(local)?rule (\w+):", block.strip())
        out = re.search(r"^\s+output: (\S+)", block, re.M)
        if m and out:
            res = dict(re.findall(r"(\w+)=([^,\s]+)", re.search(r"resources: (.*)", block).group(1)))
            threads = re.search(r"threads: (\d+)", block)
            jobs[out.group(1).rstrip(",")] = (m.group(2), bool(m.group(1)), res, int(threads.group(1)) if threads else 1)
    rule, local, res, _ = jobs["results/decode/test/mmlu-top4.deepen.adapt/mmlu/7-of-8.parquet"]
    assert rule == "decode" and not local
    assert res["gpu"] == "1"  # a GPU per decode job
    members = ["yi", "mistral", "skywork", "internlm"]
    assert int(res["mem_mb"]) == sum(config["models"][m]["mem_mb"] for m in members)
    n_decode = sum(r == "decode" for r, *_ in jobs.values())
    expected = sum(t.get("shards", 1) for t in config["tasks"].values())  # per method: shards of its task
    assert n_decode > expected
    for out, (rule, local, res, threads) in jobs.items():
        if rule in ("materialise", "relative"):
            assert not local and threads == 2 and int(res["mem_mb"]) >= 16000, (out, res, threads)


def _unavailable(reason: str):
    """Skip outside CI; in CI the cluster test must run, so fail."""
    if IN_CI:
        pytest.fail(f"CI must run the SLURM test, but {reason}")
    pytest.skip(reason)


def _cluster(cmd: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLUSTER), cmd], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def slurm_cluster():
    if os.geteuid() != 0:
        _unavailable("SLURM needs root here (it starts munged, slurmctld and slurmd, writes /etc/slurm)")
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        _unavailable("SLURM is not installed and there is no apt-get to install it")
    was_running = _cluster("status").returncode == 0
    t0 = time.perf_counter()
    proc = _cluster("start")  # installs the Debian packages first when they are missing
    if proc.returncode != 0:
        _cluster("stop")
        _unavailable(f"the local SLURM cluster did not start:\n{proc.stderr[-3000:]}")
    print(f"SLURM cluster up in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    yield
    if not was_running:
        stop = _cluster("stop")
        assert stop.returncode == 0, stop.stderr
        state = os.environ.get("DEEPEN_SLURM_STATE", "/var/lib/deepen-slurm")
        for pidfile in ("slurmctld.pid", "slurmd.pid", "munge/munged.pid"):
            assert not Path(state, pidfile).exists(), f"{pidfile} left behind"


def _workdir(path: Path, config: dict) -> Path:
    path.mkdir()
    shutil.copy(ROOT / "Snakefile", path / "Snakefile")
    for d in ("workflow", "config", "profiles"):
        shutil.copytree(ROOT / d, path / d)
    (path / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _run(work: Path, args: list[str], timeout: float) -> str:
    """snakemake in its own process group; killed (with its SLURM jobs cancelled by the plugin) on timeout."""
    proc = subprocess.Popen([SNAKEMAKE, *args], cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)  # the slurm plugin scancels its jobs on SIGINT
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        raise AssertionError(f"snakemake {' '.join(args)} timed out after {timeout:.0f} s:\n{out[-6000:]}")
    if proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{out[-6000:]}")
    return out


def _trivia_data(path: Path) -> Path:
    """A TriviaQA directory in the authors' layout, so the test needs no data files: the first rows of the real ones
    where they are here, a few made-up questions otherwise."""
    files = {"wikipedia-test-6000.jsonl": 4, "wikipedia-dev-1900.jsonl": 2, "wikipedia-demon-all_sample5_seed42.jsonl": 5}
    made_up = [("What is the capital of France?", "Paris"), ("Which planet is known as the red planet?", "Mars"),
               ("Who wrote Hamlet?", "William Shakespeare"), ("What is the largest ocean on Earth?", "Pacific"),
               ("How many legs does a spider have?", "Eight")]
    (path / "TriviaQA").mkdir(parents=True)
    for name, n in files.items():
        real = DATA_DIR / "TriviaQA" / name
        if real.is_file():
            lines = real.read_text().splitlines()[:n]
        else:
            demos = "demon" in name
            lines = [json.dumps({"question": q, "answer": a if demos else [a]}) for q, a in made_up[:n]]
        (path / "TriviaQA" / name).write_text("\n".join(lines) + "\n")
    return path


def _scontrol_job(jobid: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "-o", "show", "job", jobid], capture_output=True, text=True).stdout
    return dict(kv.split("=", 1) for kv in out.split() if "=" in kv)


@pytest.mark.slurm
def test_pipeline_through_slurm_profile_matches_local_run(slurm_cluster, tmp_path):
    data_dir = _trivia_data(tmp_path / "data")
    a = synthetic.build_member(tmp_path / "models", "bytelevel", seed=0, hidden_size=32, name="bytelevel",
                               max_position_embeddings=4096)
    b = synthetic.build_member(tmp_path / "models", "sentencepiece", seed=1, hidden_size=48, name="sentencepiece",
                               max_position_embeddings=4096)
    config = {
        "title": "synthetic on SLURM",
        "data_dir": str(data_dir),
        "min_anchors": 50,
        "models": {"bl": {"source": a, "mem_mb": 500}, "sp": {"source": b, "mem_mb": 500}},
        "tasks": {"triviaqa": {"limit": 4, "batch_size": 2, "shards": 2, "max_new_tokens": 6}},
        "ensembles": [{"name": "bl+sp", "members": ["bl", "sp"], "eta": 0.15, "steps": 5, "methods": ["deepen.avg"]}],
    }
    local = _workdir(tmp_path / "local", config)
    cluster = _workdir(tmp_path / "slurm", config)

    # The local reference runs alongside the cluster run.
    t0 = time.perf_counter()
    local_proc = subprocess.Popen([SNAKEMAKE, "--cores", "2"], cwd=local, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out = _run(cluster, ["--profile", "profiles/slurm", "--retries", "0",
                             # every decode job asks SLURM for a (fake) GPU; preparation jobs for one CPU
                             "--set-resources", "decode:gpu=1", "--set-threads", "materialise=1", "relative=1",
                             # no slurmdbd here, hence no sacct; and poll every few seconds, not after 40 s
                             "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2"],
                   timeout=480)
        print(f"pipeline through SLURM: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        local_out, _ = local_proc.communicate(timeout=300)
    finally:
        if local_proc.poll() is None:
            os.killpg(local_proc.pid, signal.SIGKILL)
            local_proc.wait()
    assert local_proc.returncode == 0, local_out[-6000:]

    # Every non-local job went through sbatch; the light rules ran inside Snakemake.
    submitted = dict(re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", out))
    decode_outputs = sorted(p.relative_to(cluster).as_posix() for p in (cluster / "results/decode").rglob("*.parquet"))
    assert len(decode_outputs) == 3 * 2, decode_outputs  # bl, sp, bl+sp.deepen.avg x 2 shards
    assert len(submitted) == 2 + 2 + 1 + 2 + 1 + 6, out[-6000:]  # materialise vocabulary anchors relative prompts decode
    slurm_logs = cluster / "logs" / "slurm"
    assert {p.name for p in slurm_logs.iterdir()} == {f"rule_{r}" for r in ("materialise", "vocabulary", "anchors",
                                                                             "relative", "prompts", "decode")}
    # Each decode shard ran inside its own SLURM job, which SLURM gave the GPU it asked for.
    jobids = set()
    for out_path in decode_outputs:
        log = (cluster / out_path.replace("results/", "logs/", 1)).with_suffix(".log").read_text()
        m = re.search(r"\[deepen\] SLURM job (\d+) on \S+, CUDA_VISIBLE_DEVICES=(\S*)", log)
        assert m, f"{out_path}: no SLURM job in its log:\n{log[-2000:]}"
        jobid, cuda = m.groups()
        assert jobid in submitted.values() and cuda != ""
        jobids.add(jobid)
        info = _scontrol_job(jobid)  # finished jobs stay visible for MinJobAge (300 s)
        if info:
            assert info["JobState"] == "COMPLETED", info
            assert "gpu" in info.get("TresPerJob", "") + info.get("TresPerNode", ""), info
        assert any((slurm_logs / "rule_decode").rglob(f"{jobid}.log")), jobid  # the sbatch log, kept
    assert len(jobids) == len(decode_outputs)

    # Same predictions, byte for byte, and the same table (bar wall times).
    preds = sorted(p.relative_to(local) for p in (local / "results/predictions").rglob("*.parquet"))
    assert len(preds) == 3
    assert preds == sorted(p.relative_to(cluster) for p in (cluster / "results/predictions").rglob("*.parquet"))
    for p in preds:
        assert (cluster / p).read_bytes() == (local / p).read_bytes(), p
    drop = {"seconds"}
    ours, ref = (pq.read_table(w / "results/summary.parquet") for w in (cluster, local))
    keep = [c for c in ref.column_names if c not in drop]
    assert ours.select(keep).to_pylist() == ref.select(keep).to_pylist()
    assert (cluster / "results/plots/accuracy.png").stat().st_size > 0
