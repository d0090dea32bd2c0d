"""Faults leave nothing a later run trusts: a decode shard killed with SIGKILL leaves no output (and its rerun gives
the uninterrupted run's bytes), caches that are truncated or do not match their members are refused naming the file,
a model changed on disk since materialisation is detected, and predictions are byte-identical across runs, shard
counts and batch sizes. On real files and processes: the synthetic pair materialised through the pipeline's own
stages (the `stages` fixture), a decode process killed with SIGKILL, truncated Parquet files. (Killing a whole
Snakemake run is in test_pipeline_e2e.py.)"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from deepen import DeepenError
from deepen.pipeline.decode import decode_shard, load_ensemble
from deepen.pipeline.models import anchors_table, file_stamps, relative_table
from deepen.pipeline.score import gather
from helpers.stages import MADE_FROM, ROWS, copy_stages, load_stages_ensemble, predictions

PYTHON = sys.executable

# A decode job as its own process. With a delay, it announces each batch it has decoded on stderr and then sleeps (so
# that it can be killed between batches, its rows so far only in memory).
DECODE = textwrap.dedent("""
    import json, sys, time, torch
    torch.set_num_threads(1)
    from deepen import ensemble
    from deepen.pipeline.decode import decode_shard, load_ensemble
    a = json.loads(sys.argv[1])
    if a["delay"]:
        decode_rows, done = ensemble.Ensemble._decode_rows, [0]

        def slow(self, rows, *args, **kwargs):
            out = decode_rows(self, rows, *args, **kwargs)
            done[0] += 1
            print(f"[test] batch {done[0]} done ({len(rows)} rows)", file=sys.stderr, flush=True)
            time.sleep(a["delay"])
            return out

        ensemble.Ensemble._decode_rows = slow
    ens = load_ensemble(a["dirs"], a["metas"], a["names"], method="deepen", options={"eta": 0.5},
                        anchors_path=a["anchors"], relative_paths=a["relative"], dtype="float32")
    decode_shard(ens, a["prompts"], a["shard"], a["n"], a["out"], batch_size=a["batch"], made_from=a["made_from"])
""")


def _decode_proc(st, out: Path, shard=0, n=1, batch=1, delay=None) -> subprocess.Popen:
    args = {k: st[k] for k in ("dirs", "metas", "names", "anchors", "relative", "prompts")}
    args.update(shard=shard, n=n, out=str(out), batch=batch, delay=delay or 0, made_from=MADE_FROM)
    return subprocess.Popen([PYTHON, "-c", DECODE, json.dumps(args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


# -- killed jobs -----------------------------------------------------------------------------------------------------


def test_decode_shard_killed_with_sigkill_leaves_nothing_and_rerun_is_identical(tmp_path, stages):
    ref, out = tmp_path / "ref" / "0-of-1.parquet", tmp_path / "run" / "0-of-1.parquet"
    # uninterrupted reference and the run we kill start together (2 cores)
    reference = _decode_proc(stages, ref)
    victim = _decode_proc(stages, out, delay=60)
    lines = []
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            line = victim.stderr.readline()
            lines.append(line)
            if "[test] batch 1 " in line or not line:
                break
        assert any("[test] batch 1 done (1 rows)" in x for x in lines), "".join(lines)
        time.sleep(0.5)  # it is now sleeping between batches (1 of 6), its rows so far only in memory
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait()
    assert victim.returncode == -signal.SIGKILL
    assert reference.wait(timeout=180) == 0, reference.stderr.read()
    # nothing half-written, not even a temporary: at most the killed job's claim on the shard (and its lock file),
    # which the next job for the shard takes over
    claim = {f".{out.name}.claim", f".{out.name}.lock"}
    assert not out.parent.exists() or {p.name for p in out.parent.iterdir()} <= claim
    rerun = _decode_proc(stages, out)
    assert rerun.wait(timeout=180) == 0, rerun.stderr.read()
    assert predictions([str(out)], tmp_path / "run") == predictions([str(ref)], tmp_path / "ref")
    assert pq.read_table(out).num_rows == len(ROWS)


# -- stale or damaged caches -----------------------------------------------------------------------------------------


def test_truncated_or_stale_caches_are_refused_naming_the_file(tmp_path, stages):
    st = copy_stages(stages, tmp_path / "resources")
    load_stages_ensemble(st)  # intact copy loads
    for path in (st["anchors"], st["relative"][1]):
        data = Path(path).read_bytes()
        Path(path).write_bytes(data[: len(data) // 2])  # a copy cut short
        expected = re.escape(path) + r" is not a readable Parquet file .*truncated or corrupt; delete"
        with pytest.raises(DeepenError, match=expected):
            load_stages_ensemble(st)
        Path(path).write_bytes(data)
    # the score stage too
    shard = tmp_path / "shard.parquet"
    decode_shard(load_stages_ensemble(st, eta=0.0), st["prompts"], 0, 1, shard, batch_size=3, made_from=MADE_FROM)
    shard.write_bytes(shard.read_bytes()[:-20])
    with pytest.raises(DeepenError, match="shard.parquet is not a readable Parquet file"):
        gather([str(shard)], tmp_path / "p.parquet", tmp_path / "t.parquet")
    # an anchors file built for other members (the pair in the other order)
    other = tmp_path / "other.parquet"
    anchors_table([str(tmp_path / "resources/vocabularies/sp.parquet"),
                   str(tmp_path / "resources/vocabularies/bl.parquet")], ["sp", "bl"], other, min_anchors=50)
    with pytest.raises(DeepenError, match="was built for other models"):
        load_ensemble(st["dirs"], st["metas"], st["names"], options={"eta": 0.5}, anchors_path=str(other),
                      relative_paths=st["relative"], dtype="float32")
    with pytest.raises(DeepenError, match="sp.parquet was built for another version of bl"):
        load_ensemble(st["dirs"], st["metas"], st["names"], options={"eta": 0.5}, anchors_path=st["anchors"],
                      relative_paths=st["relative"][::-1], dtype="float32")


def test_changed_tokenizer_or_weights_are_detected(tmp_path, stages):
    import torch
    from safetensors.torch import load_file, save_file

    st = copy_stages(stages, tmp_path / "resources")
    model_dir = Path(st["dirs"][1])
    tj_path = model_dir / "tokenizer.json"
    meta = json.loads(Path(st["metas"][1]).read_text())
    assert meta["files"] == file_stamps(model_dir)  # the copy kept sizes and times: the fast path
    os.utime(model_dir / "config.json")  # touched, same content: the fingerprint is recomputed and still matches
    load_stages_ensemble(st)
    original = tj_path.read_text()
    tj = json.loads(original)
    vocab = tj["model"]["vocab"]
    a, b = sorted(vocab, key=vocab.get)[300:302]
    vocab[a], vocab[b] = vocab[b], vocab[a]  # two pieces swap ids: same files, same sizes, another tokenizer
    tj_path.write_text(json.dumps(tj, ensure_ascii=False))
    with pytest.raises(DeepenError, match="model sp: its files changed since materialisation"):
        load_stages_ensemble(st)
    with pytest.raises(DeepenError, match="its files changed"):  # the relative stage checks too
        relative_table(st["dirs"][1], st["metas"][1], st["anchors"], 1, tmp_path / "r.parquet")
    tj_path.write_text(original)
    weights = model_dir / "model.safetensors"
    tensors = load_file(weights)
    key = next(k for k in tensors if "embed_tokens" in k)
    tensors[key] = tensors[key].clone()
    tensors[key][7] += torch.ones_like(tensors[key][7]) * 1e-3
    save_file(tensors, weights, metadata={"format": "pt"})
    with pytest.raises(DeepenError, match="model sp: its files changed since materialisation"):
        load_stages_ensemble(st)


# -- determinism -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("eta", [0.0, 0.5], ids=["single", "ensemble"])
def test_predictions_are_byte_identical_across_runs_shards_and_batch_sizes(tmp_path, stages, eta):
    ens = load_stages_ensemble(stages, eta=eta)
    results = {}
    for run, (n_shards, batch) in enumerate([(1, 1), (1, 1), (3, 1), (1, 3), (2, 3), (1, 4)]):
        d = tmp_path / f"run{run}"
        shards = [str(d / f"{s}-of-{n_shards}.parquet") for s in range(n_shards)]
        for s, path in enumerate(shards):
            decode_shard(ens, stages["prompts"], s, n_shards, path, batch_size=batch, made_from=MADE_FROM)
        results[(run, n_shards, batch)] = predictions(shards, d)
    first = next(iter(results.values()))
    assert all(v == first for v in results.values()), [k for k, v in results.items() if v != first]
    assert pq.read_table(tmp_path / "run0" / "predictions.parquet").num_rows == len(ROWS)
