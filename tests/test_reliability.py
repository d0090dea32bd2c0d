"""Reliability (issue 6): bad input gets one clear error, faults leave nothing a later run trusts, caches that do not
match their members are refused, long prompts fail per row, and predictions are byte-identical across runs, shard
counts and batch sizes. Everything runs on real files and processes: tiny synthetic members materialised through the
pipeline's own stages, a decode shard killed with SIGKILL, truncated Parquet files, bad configs through `snakemake`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from deepen import DeepenError, load_member, pipeline
from deepen.tasks import TaskError, check_local, write_prompts

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))

sys.path.insert(0, str(Path(__file__).resolve().parent))
import synthetic  # noqa: E402
from test_pipeline import _workdir  # noqa: E402  (a copy of the workflow in a temp dir)

# Short prompts (the synthetic members read 512 tokens at most) in three batches of 3 / 2 / 1 rows at batch size 3.
ROWS = [
    ("r0", "The cat sat on the", ["A", "B"]),
    ("r1", "Hello world, this is a longer prompt about café and naïve people.\nNext line:", []),
    ("r2", "日本 😀 numbers 12 34", []),
    ("r3", "a", []),
    ("r4", "Alice likes the old book because", ["A", "B", "C", "D"]),
    ("r5", "Every morning the quiet river", []),
]
LONG = " ".join(["the small cat sees the old dog"] * 120)  # ~840 words: beyond the 512-token window


def _prompt_rows(rows=ROWS, budget=6):
    return [{"id": i, "task": "synthetic", "prompt": p, "answers": [c[0]] if c else ["x"], "choices": c,
             "max_new_tokens": 1 if c else budget, "stop": ["\n"]} for i, p, c in rows]


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    """Two synthetic members materialised through the pipeline stages: model dirs, metas, anchors, relative caches."""
    tmp = tmp_path_factory.mktemp("rel")
    src = synthetic.build_pair(tmp / "src")
    res = tmp / "resources"
    names = ["bl", "sp"]
    dirs = [str(res / "models" / n) for n in names]
    metas = [str(res / "models" / f"{n}.json") for n in names]
    vocabs = [str(res / "vocabularies" / f"{n}.parquet") for n in names]
    for s, d, m, v in zip(src, dirs, metas, vocabs):
        pipeline.materialise(s, d, m, dtype="float32")
        pipeline.vocabulary_table(d, m, v)
    anchors = str(res / "anchors" / "bl+sp.parquet")
    pipeline.anchors_table(vocabs, names, anchors, min_anchors=50)
    relative = [str(res / "relative" / "bl+sp" / f"{n}.parquet") for n in names]
    for i, (d, m, r) in enumerate(zip(dirs, metas, relative)):
        pipeline.relative_table(d, m, anchors, i, r)
    prompts = tmp / "prompts.parquet"
    write_prompts(_prompt_rows(), prompts)
    return dict(tmp=tmp, src=src, names=names, dirs=dirs, metas=metas, anchors=anchors, relative=relative,
                prompts=str(prompts))


def _ensemble(st, **kw):
    kw = {"eta": 0.5, "steps": 5, **kw}
    return pipeline.load_ensemble(st["dirs"], st["metas"], st["names"], anchors_path=st["anchors"],
                                  relative_paths=st["relative"], dtype="float32", device="cpu", **kw)


def _copy_stages(st, dest: Path) -> dict:
    """A private copy of the resources (tests that damage files must not damage the shared ones)."""
    shutil.copytree(st["tmp"] / "resources", dest)
    old = str(st["tmp"] / "resources")
    return {**st, **{k: [p.replace(old, str(dest)) for p in st[k]] for k in ("dirs", "metas", "relative")},
            "anchors": st["anchors"].replace(old, str(dest))}


def _predictions(shards: list[str], out_dir: Path) -> bytes:
    """The `score` rule's gather: shards -> predictions Parquet (no wall times); its bytes."""
    pred = out_dir / "predictions.parquet"
    pipeline.gather(shards, pred, out_dir / "timings.parquet")
    return pred.read_bytes()


def _cli(*args, env=None, timeout=300):
    return subprocess.run([PYTHON, "-m", "deepen", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


# -- bad config: rejected by the schema or check_config, through snakemake, before any job starts --------------------


def _snakemake(work: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([SNAKEMAKE, *args], cwd=work, capture_output=True, text=True, timeout=300)


def _config(data_dir: Path, models: dict | None = None) -> dict:
    return {
        "data_dir": str(data_dir),
        "min_anchors": 50,
        "models": models or {"bl": {"source": "/nonexistent/bl"}, "sp": {"source": "/nonexistent/sp"}},
        "tasks": {"arc_c": {"limit": 2, "dev_limit": 2}},
        "ensembles": [{"name": "bl+sp", "members": ["bl", "sp"]}],
    }


def _arc_data(root: Path, test: str | None = None, train: str | None = None) -> Path:
    row = {"question": "Which is a planet?", "A": "Mars", "B": "Moon", "C": "Sun", "D": "Io", "answer": "A"}
    good = "\n".join(json.dumps(dict(row, question=f"Q{i}?")) for i in range(3)) + "\n"
    (root / "ARC-Challenge").mkdir(parents=True)
    (root / "ARC-Challenge" / "test.jsonl").write_text(good if test is None else test)
    (root / "ARC-Challenge" / "train.jsonl").write_text(good if train is None else train)
    return root


BAD_CONFIGS = [
    ("unknown key", lambda c: c.update(colour="blue"), "colour"),
    ("wrong type", lambda c: c["tasks"]["arc_c"].update(limit="ten"), "ten"),
    ("no members", lambda c: c["ensembles"][0].pop("members"), "members"),
    ("main model not a model", lambda c: c["ensembles"][0].update(members=["xx", "bl"]), "'xx' is not among models"),
    ("weights length", lambda c: c["ensembles"][0].update(variants=[{"name": "w", "weights": [1.0]}]),
     "1 weights for 2 members"),
    ("negative weight", lambda c: c["ensembles"][0].update(variants=[{"name": "w", "weights": [1.5, -0.5]}]), "-0.5"),
    ("weights sum", lambda c: c["ensembles"][0].update(variants=[{"name": "w", "weights": [0.5, 0.6]}]), "sum to 1"),
    ("eta < 0", lambda c: c["ensembles"][0].update(eta=-1), "eta"),
    ("steps < 1", lambda c: c["ensembles"][0].update(steps=0), "steps"),
    ("shards < 1", lambda c: c["tasks"]["arc_c"].update(shards=0), "shards"),
    ("unknown task", lambda c: c["tasks"].update(boolq={}), "boolq"),
    ("ensemble task not configured", lambda c: c["ensembles"][0].update(tasks=["gsm8k"]), "gsm8k"),
    ("max below min anchors", lambda c: c.update(max_anchors=10), "max_anchors (10) is below min_anchors (50)"),
]


@pytest.mark.parametrize("name, edit, message", BAD_CONFIGS, ids=[b[0] for b in BAD_CONFIGS])
def test_bad_config_is_rejected_by_schema_or_check(tmp_path, name, edit, message):
    """What common.smk runs before building the DAG (validate + check_config), one config at a time."""
    from snakemake.utils import validate

    config = _config(tmp_path)
    edit(config)
    with pytest.raises(Exception) as err:
        validate(config, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
        pipeline.check_config(config)
    assert message in str(err.value)


def test_bad_configs_through_snakemake_start_no_job(tmp_path):
    """The same through `snakemake` (a real run, not a dry run): non-zero exit, the message, nothing written."""
    work = _workdir(tmp_path)
    data = _arc_data(tmp_path / "data")
    for name, edit, message in [BAD_CONFIGS[i] for i in (1, 3, 6, 12)]:
        config = _config(data)
        edit(config)
        (work / "config" / "config.yaml").write_text(yaml.safe_dump(config))
        proc = _snakemake(work, "--cores", "1")
        assert proc.returncode != 0, name
        assert message in proc.stdout + proc.stderr, (name, proc.stderr[-2000:])
        assert not (work / "resources").exists() and not (work / "results").exists(), name
    # an unknown split is not a config key: a target naming one has no rule
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(_config(data)))
    proc = _snakemake(work, "-n", "--cores", "1", "results/scores/val/bl/arc_c.parquet")
    assert proc.returncode != 0 and "results/scores/val/bl/arc_c.parquet" in proc.stdout + proc.stderr


def test_bad_data_stops_the_run_before_any_job(tmp_path):
    """onstart (not in dry runs): the task files still to be read exist and parse; the error names file and line."""
    work = _workdir(tmp_path)
    row = json.dumps({"question": "Q?", "A": "a", "B": "b", "answer": "A"})
    for case in ["missing dir", "malformed row", "missing gold", "empty split"]:
        data = tmp_path / case.replace(" ", "-")
        if case == "missing dir":
            expected = f"data directory not found: {data}"
        elif case == "malformed row":
            _arc_data(data, test=row + '\n{"question": "Q2?", "A": \n' + row + "\n")
            expected = f"{data}/ARC-Challenge/test.jsonl:2: malformed JSON"
        elif case == "missing gold":
            _arc_data(data, train=row + "\n" + json.dumps({"question": "Q?", "A": "a", "B": "b"}) + "\n")
            expected = f"{data}/ARC-Challenge/train.jsonl:2: missing gold answer"
        else:
            _arc_data(data, test="\n")
            expected = f"{data}/ARC-Challenge/test.jsonl: empty split"
        (work / "config" / "config.yaml").write_text(yaml.safe_dump(_config(data)))
        if case == "missing dir":
            assert _snakemake(work, "-n", "--cores", "1").returncode == 0  # a dry run reads no data
        proc = _snakemake(work, "--cores", "1")
        assert proc.returncode != 0, case
        assert expected in proc.stdout + proc.stderr, (case, proc.stderr[-3000:])
        assert not (work / "resources").exists() and not (work / "logs").exists(), case
    # the same check in process: a data_dir that is a file; splits whose prompts exist are not read again
    config = _config(tmp_path / "data-file")
    (tmp_path / "data-file").write_text("not a directory")
    with pytest.raises(DeepenError, match="data-file is not a readable directory"):
        pipeline.check_data(config)
    config = _config(_arc_data(tmp_path / "ok"))
    assert pipeline.check_data(config, tmp_path / "prompts") == 6  # test + dev (DeePEn-Adapt), 3 rows each
    for split in ("test", "dev"):
        write_prompts(_prompt_rows(), tmp_path / "prompts" / split / "arc_c.parquet")
    (tmp_path / "ok" / "ARC-Challenge" / "test.jsonl").write_text("{broken\n")
    assert pipeline.check_data(config, tmp_path / "prompts") == 0


def test_bad_data_in_the_prompts_stage_names_file_and_line(tmp_path):
    row = json.dumps({"question": "Q?", "A": "a", "B": "b", "answer": "A"})
    data = _arc_data(tmp_path / "data", test=row + "\n" + row + "\n[1, 2]\n")
    with pytest.raises(TaskError, match=r"test.jsonl:3: expected a JSON object"):
        check_local("arc_c", "test", data)
    out = tmp_path / "p.parquet"
    with pytest.raises(DeepenError, match=r"test.jsonl:3: expected a JSON object"):
        pipeline.prompts_file("arc_c", "test", out, data_dir=str(data))
    assert not out.exists() and list(tmp_path.glob("*.tmp")) == []
    with pytest.raises(DeepenError, match="arc_c test data not found"):
        pipeline.prompts_file("arc_c", "test", out, data_dir=str(tmp_path / "nowhere"))


# -- bad models ------------------------------------------------------------------------------------------------------


def _gguf(path: Path, arch: str) -> Path:
    import numpy as np
    from gguf import GGUFWriter

    w = GGUFWriter(str(path), arch)
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_bad_models_are_one_clear_error(tmp_path, stages, monkeypatch):
    monkeypatch.setenv("DEEPEN_HOME", str(tmp_path / "home"))
    gguf = _gguf(tmp_path / "weird.gguf", "nonsense")
    with pytest.raises(DeepenError, match="cannot load GGUF file .*weird.gguf.*architecture nonsense is not supported"):
        load_member(str(gguf))
    # a checkpoint without tokenizer files, and one whose tokenizer has no ordinary token
    notok = tmp_path / "notok"
    shutil.copytree(stages["src"][0], notok)
    for f in notok.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens")) or f.name in ("vocab.json", "merges.txt"):
            f.unlink()
    with pytest.raises(DeepenError, match="cannot load the tokenizer of .*notok"):
        load_member(str(notok))
    with pytest.raises(DeepenError, match="cannot load model"):
        pipeline.materialise(str(notok), tmp_path / "m" / "x", tmp_path / "m" / "x.json")
    empty = tmp_path / "emptyvocab"
    shutil.copytree(stages["src"][0], empty)
    tj = json.loads((empty / "tokenizer.json").read_text())
    tj["model"]["vocab"], tj["model"]["merges"] = {}, []
    (empty / "tokenizer.json").write_text(json.dumps(tj))
    with pytest.raises(DeepenError, match="has no vocabulary"):
        load_member(str(empty))
    # the same through the CLI: one line, exit status 2, before any decoding
    for args, message in [
        ([str(gguf), stages["src"][1]], "architecture nonsense is not supported"),
        (["no-such-org/no-such-model", stages["src"][1]], "cannot load model 'no-such-org/no-such-model'"),
        ([str(empty), stages["src"][1]], "has no vocabulary"),
        ([*stages["src"]], "fewer than the minimum of 1000"),
        ([*stages["src"], "--eta", "-1"], "eta must be a finite number >= 0"),
    ]:
        res = _cli("generate", *args, "--prompt", "x", env={"HF_HUB_OFFLINE": "1", "DEEPEN_HOME": str(tmp_path)})
        last = res.stderr.strip().splitlines()[-1]
        assert res.returncode == 2 and last.startswith("deepen: error:") and message in last, (args, res.stderr)


# -- faults ----------------------------------------------------------------------------------------------------------

DECODE = textwrap.dedent("""
    import json, sys, torch
    torch.set_num_threads(1)
    from deepen import pipeline
    a = json.loads(sys.argv[1])
    ens = pipeline.load_ensemble(a["dirs"], a["metas"], a["names"], anchors_path=a["anchors"],
                                 relative_paths=a["relative"], eta=0.5, dtype="float32", device="cpu")
    pipeline.decode_shard(ens, a["prompts"], a["shard"], a["n"], a["out"], batch_size=a["batch"])
""")


def _decode_proc(st, out: Path, shard=0, n=1, batch=1, delay=None) -> subprocess.Popen:
    args = {k: st[k] for k in ("dirs", "metas", "names", "anchors", "relative", "prompts")}
    args.update(shard=shard, n=n, out=str(out), batch=batch)
    env = {**os.environ, "DEEPEN_DECODE_BATCH_DELAY": str(delay or 0)}
    return subprocess.Popen([PYTHON, "-c", DECODE, json.dumps(args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env)


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
            if "batch 1/" in line or not line:
                break
        assert any("batch 1/6 done" in x for x in lines), "".join(lines)
        time.sleep(0.5)  # it is now sleeping between batches, its rows so far only in memory
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait()
    assert victim.returncode == -signal.SIGKILL
    assert reference.wait(timeout=180) == 0, reference.stderr.read()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []  # nothing half-written, not even a temporary
    rerun = _decode_proc(stages, out)
    assert rerun.wait(timeout=180) == 0, rerun.stderr.read()
    assert _predictions([str(out)], tmp_path / "run") == _predictions([str(ref)], tmp_path / "ref")
    assert pq.read_table(out).num_rows == len(ROWS)


def test_truncated_or_stale_caches_are_refused_naming_the_file(tmp_path, stages):
    st = _copy_stages(stages, tmp_path / "resources")
    _ensemble(st)  # intact copy loads
    for path in (st["anchors"], st["relative"][1]):
        data = Path(path).read_bytes()
        Path(path).write_bytes(data[: len(data) // 2])  # a copy cut short
        expected = re.escape(path) + r" is not a readable Parquet file .*truncated or corrupt; delete"
        with pytest.raises(DeepenError, match=expected):
            _ensemble(st)
        Path(path).write_bytes(data)
    # the score stage too
    shard = tmp_path / "shard.parquet"
    pipeline.decode_shard(_ensemble(st, eta=0.0), st["prompts"], 0, 1, shard, batch_size=3)
    shard.write_bytes(shard.read_bytes()[:-20])
    with pytest.raises(DeepenError, match="shard.parquet is not a readable Parquet file"):
        pipeline.gather([str(shard)], tmp_path / "p.parquet", tmp_path / "t.parquet")
    # an anchors file built for other members (the pair in the other order)
    other = tmp_path / "other.parquet"
    pipeline.anchors_table([str(tmp_path / "resources/vocabularies/sp.parquet"),
                            str(tmp_path / "resources/vocabularies/bl.parquet")], ["sp", "bl"], other, min_anchors=50)
    with pytest.raises(DeepenError, match="was built for other models"):
        pipeline.load_ensemble(st["dirs"], st["metas"], st["names"], anchors_path=str(other),
                               relative_paths=st["relative"], dtype="float32", device="cpu")
    with pytest.raises(DeepenError, match="sp.parquet was built for another version of bl"):
        pipeline.load_ensemble(st["dirs"], st["metas"], st["names"], anchors_path=st["anchors"],
                               relative_paths=st["relative"][::-1], dtype="float32", device="cpu")


def test_changed_tokenizer_or_weights_are_detected(tmp_path, stages):
    import torch
    from safetensors.torch import load_file, save_file

    st = _copy_stages(stages, tmp_path / "resources")
    model_dir = Path(st["dirs"][1])
    tj_path = model_dir / "tokenizer.json"
    meta = json.loads(Path(st["metas"][1]).read_text())
    assert meta["files"] == pipeline.file_stamps(model_dir)  # the copy kept sizes and times: the fast path
    os.utime(model_dir / "config.json")  # touched, same content: the fingerprint is recomputed and still matches
    _ensemble(st)
    original = tj_path.read_text()
    tj = json.loads(original)
    vocab = tj["model"]["vocab"]
    a, b = sorted(vocab, key=vocab.get)[300:302]
    vocab[a], vocab[b] = vocab[b], vocab[a]  # two pieces swap ids: same files, same sizes, another tokenizer
    tj_path.write_text(json.dumps(tj, ensure_ascii=False))
    with pytest.raises(DeepenError, match="model sp: its files changed since materialisation"):
        _ensemble(st)
    with pytest.raises(DeepenError, match="its files changed"):  # the relative stage checks too
        pipeline.relative_table(st["dirs"][1], st["metas"][1], st["anchors"], 1, tmp_path / "r.parquet")
    tj_path.write_text(original)
    weights = model_dir / "model.safetensors"
    tensors = load_file(weights)
    key = next(k for k in tensors if "embed_tokens" in k)
    tensors[key] = tensors[key].clone()
    tensors[key][7] += torch.ones_like(tensors[key][7]) * 1e-3
    save_file(tensors, weights, metadata={"format": "pt"})
    with pytest.raises(DeepenError, match="model sp: its files changed since materialisation"):
        _ensemble(st)


def test_paper_mode_too_big_is_refused_up_front(stages):
    res = _cli("generate", *stages["src"], "--prompt", "x", "--min-anchors", "50", "--mode", "paper",
               "--max-dense-gb", "0.0001")
    last = res.stderr.strip().splitlines()[-1]
    assert res.returncode == 2
    assert last.startswith("deepen: error: paper mode needs dense relative matrices of 0.0 GB (bytelevel: ")
    assert "but only 0.0 GB is available; use mode 'fast'" in last
    with pytest.raises(DeepenError, match="paper mode needs dense relative matrices"):
        from deepen import Ensemble

        Ensemble([load_member(d) for d in stages["src"]], mode="paper", min_anchors=50, max_dense_bytes=1000,
                 progress=False)


def test_long_prompt_is_a_per_row_error_in_the_pipeline(tmp_path, stages, monkeypatch):
    rows = _prompt_rows(ROWS[:2] + [("long", LONG, [])] + ROWS[2:4])
    prompts = tmp_path / "prompts.parquet"
    write_prompts(rows, prompts)
    ens = _ensemble(stages)
    out = tmp_path / "with-long.parquet"
    assert pipeline.decode_shard(ens, prompts, 0, 1, out, batch_size=3) == 5
    got = {r["id"]: r for r in pq.read_table(out).to_pylist()}
    assert got["long"]["text"] == "" and got["long"]["token_ids"] == []
    assert got["long"]["stop_reason"].startswith("error: prompt of ")
    assert "exceeds the context window of 512 tokens of bl" in got["long"]["stop_reason"]
    # the other rows decode as they do without the long row
    short = tmp_path / "short.parquet"
    write_prompts([r for r in rows if r["id"] != "long"], short)
    pipeline.decode_shard(ens, short, 0, 1, tmp_path / "alone.parquet", batch_size=1)
    alone = {r["id"]: r for r in pq.read_table(tmp_path / "alone.parquet").to_pylist()}
    for i in alone:
        assert (got[i]["token_ids"], got[i]["text"]) == (alone[i]["token_ids"], alone[i]["text"]), i
    # a row that only outgrows a window while decoding (pre-check bypassed): its batch is redone row by row
    monkeypatch.setattr("deepen.members.context_error", lambda *a, **k: None)
    out2 = tmp_path / "fallback.parquet"
    pipeline.decode_shard(ens, prompts, 0, 1, out2, batch_size=3)
    got2 = {r["id"]: r for r in pq.read_table(out2).to_pylist()}
    assert got2["long"]["stop_reason"].startswith("error: a sequence of ")
    assert "exceeds the model's context window of 512" in got2["long"]["stop_reason"]
    for i in alone:
        assert got2[i]["token_ids"] == alone[i]["token_ids"], i
    # and the scores count the error row as wrong instead of failing
    table = pipeline.score_predictions("triviaqa", rows, pq.read_table(out).to_pylist())
    assert table.num_rows == 5


def test_long_prompt_is_a_per_row_error_in_the_cli(stages):
    res = _cli("generate", *stages["src"], "--prompt", "The cat sat on the", "--prompt", LONG, "--min-anchors", "50",
               "--max-new-tokens", "4", "--json")
    assert res.returncode == 0, res.stderr
    ok, bad = json.loads(res.stdout)
    assert len(ok["token_ids"]) >= 1 and not ok["stop_reason"].startswith("error")
    assert bad["text"] == "" and bad["stop_reason"].startswith("error: prompt of ")
    assert "deepen: error: prompt 2: prompt of " in res.stderr
    res = _cli("generate", *stages["src"], "--prompt", LONG, "--min-anchors", "50")
    assert res.returncode == 2 and "exceeds the context window of 512 tokens" in res.stderr


# -- determinism -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("eta", [0.0, 0.5], ids=["single", "ensemble"])
def test_predictions_are_byte_identical_across_runs_shards_and_batch_sizes(tmp_path, stages, eta):
    ens = _ensemble(stages, eta=eta)
    results = {}
    for run, (n_shards, batch) in enumerate([(1, 1), (1, 1), (3, 1), (1, 3), (2, 3), (1, 4)]):
        d = tmp_path / f"run{run}"
        shards = [str(d / f"{s}-of-{n_shards}.parquet") for s in range(n_shards)]
        for s, path in enumerate(shards):
            pipeline.decode_shard(ens, stages["prompts"], s, n_shards, path, batch_size=batch)
        results[(run, n_shards, batch)] = _predictions(shards, d)
    first = next(iter(results.values()))
    assert all(v == first for v in results.values()), [k for k, v in results.items() if v != first]
    assert pq.read_table(tmp_path / "run0" / "predictions.parquet").num_rows == len(ROWS)
