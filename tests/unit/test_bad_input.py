"""Bad input gets one clear error, before any work: bad configs (schema, then the semantic checks), bad data (file and
line named), bad models (the library and the CLI), requests that cannot fit, and prompts too long for a member (an
error row; the other rows decode). In process and through the CLI, on real files; tests/integration runs bad configs
and bad data through Snakemake."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from deepen import DeepenError, Ensemble, load_member
from deepen.errors import TaskError
from deepen.eval.task_data import check_local, write_prompts
from deepen.pipeline.config import check_config, check_data
from deepen.pipeline.decode import decode_shard
from deepen.pipeline.models import materialise
from deepen.pipeline.prompts import prompts_file
from deepen.pipeline.score import score_predictions
from helpers.configs import BAD_CONFIGS, arc_data, default_config, minimal_config, validated
from helpers.stages import LONG, MADE_FROM, ROWS, load_stages_ensemble, prompt_rows


def _cli(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "deepen", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


# -- bad configs: rejected by the schema or check_config ------------------------------------------------------------


@pytest.mark.parametrize("name, edit, message", BAD_CONFIGS, ids=[b[0] for b in BAD_CONFIGS])
def test_bad_config_is_rejected_by_schema_or_check(name, edit, message):
    """What workflow/rules/common.smk runs before building the DAG (validate, then check_config), one edit of the
    default config at a time."""
    config = default_config()
    edit(config)
    with pytest.raises(Exception) as err:
        check_config(validated(config))
    assert message in str(err.value)


def test_default_config_is_accepted():
    """The table's base config passes both checks (so each rejection above is the edit's doing)."""
    check_config(validated(default_config()))


# -- bad data --------------------------------------------------------------------------------------------------------


def test_bad_data_is_found_before_any_job(tmp_path):
    """`check_data` (Snakemake's onstart): a data_dir that is a file is refused; the splits a run reads are checked
    line by line; splits whose prompts exist are not read again."""
    config = minimal_config(tmp_path / "data-file")
    (tmp_path / "data-file").write_text("not a directory")
    with pytest.raises(DeepenError, match="data-file is not a readable directory"):
        check_data(check_config(validated(config)))
    experiment = check_config(validated(minimal_config(arc_data(tmp_path / "ok"))))
    assert check_data(experiment, tmp_path / "prompts") == 6  # test + dev (DeePEn-Adapt), 3 rows each
    for split in ("test", "dev"):
        write_prompts(prompt_rows(), tmp_path / "prompts" / split / "arc_c.parquet")
    (tmp_path / "ok" / "ARC-Challenge" / "test.jsonl").write_text("{broken\n")
    assert check_data(experiment, tmp_path / "prompts") == 0


def test_bad_data_in_the_prompts_stage_names_file_and_line(tmp_path):
    row = json.dumps({"question": "Q?", "A": "a", "B": "b", "answer": "A"})
    data = arc_data(tmp_path / "data", test=row + "\n" + row + "\n[1, 2]\n")
    with pytest.raises(TaskError, match=r"test.jsonl:3: expected a JSON object"):
        check_local("arc_c", "test", data)
    out = tmp_path / "p.parquet"
    with pytest.raises(DeepenError, match=r"test.jsonl:3: expected a JSON object"):
        prompts_file("arc_c", "test", out, data_dir=str(data))
    assert not out.exists() and list(tmp_path.glob("*.tmp")) == []
    with pytest.raises(DeepenError, match="arc_c test data not found"):
        prompts_file("arc_c", "test", out, data_dir=str(tmp_path / "nowhere"))


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


def test_bad_models_are_one_clear_error(tmp_path, pair_dirs, monkeypatch):
    monkeypatch.setenv("DEEPEN_HOME", str(tmp_path / "home"))
    gguf = _gguf(tmp_path / "weird.gguf", "nonsense")
    with pytest.raises(DeepenError, match="cannot read GGUF file .*weird.gguf.*architecture nonsense is not supported"):
        load_member(str(gguf))
    # a checkpoint without tokenizer files, and one whose tokenizer has no ordinary token
    notok = tmp_path / "notok"
    shutil.copytree(pair_dirs[0], notok)
    for f in notok.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens")) or f.name in ("vocab.json", "merges.txt"):
            f.unlink()
    with pytest.raises(DeepenError, match="cannot load the tokenizer of .*notok"):
        load_member(str(notok))
    with pytest.raises(DeepenError, match="cannot load model"):
        materialise(str(notok), tmp_path / "m" / "x", tmp_path / "m" / "x.json")
    empty = tmp_path / "emptyvocab"
    shutil.copytree(pair_dirs[0], empty)
    tj = json.loads((empty / "tokenizer.json").read_text())
    tj["model"]["vocab"], tj["model"]["merges"] = {}, []
    (empty / "tokenizer.json").write_text(json.dumps(tj))
    with pytest.raises(DeepenError, match="has no vocabulary"):
        load_member(str(empty))
    # the same through the CLI: one line, exit status 2, before any decoding
    for args, message in [
        ([str(gguf), pair_dirs[1]], "architecture nonsense is not supported"),
        (["no-such-org/no-such-model", pair_dirs[1]], "cannot load model 'no-such-org/no-such-model'"),
        ([str(empty), pair_dirs[1]], "has no vocabulary"),
        ([*pair_dirs], "fewer than the minimum of 1000"),
        ([*pair_dirs, "--eta", "-1"], "eta must be a finite number >= 0"),
    ]:
        res = _cli("generate", *args, "--prompt", "x", env={"HF_HUB_OFFLINE": "1", "DEEPEN_HOME": str(tmp_path)})
        last = res.stderr.strip().splitlines()[-1]
        assert res.returncode == 2 and last.startswith("deepen: error:") and message in last, (args, res.stderr)


def test_paper_mode_too_big_is_refused_up_front(pair_dirs):
    res = _cli("generate", *pair_dirs, "--prompt", "x", "--min-anchors", "50", "--mode", "paper",
               "--max-dense-gb", "0.0001")
    last = res.stderr.strip().splitlines()[-1]
    assert res.returncode == 2
    assert last.startswith("deepen: error: paper mode needs dense relative matrices of 0.0 GB (bytelevel: ")
    assert "but only 0.0 GB is available; use mode 'fast'" in last
    with pytest.raises(DeepenError, match="paper mode needs dense relative matrices"):
        Ensemble([load_member(d) for d in pair_dirs], mode="paper", min_anchors=50, max_dense_bytes=1000,
                 progress=False)


# -- prompts too long for a member: an error row, the other rows decode ----------------------------------------------


def test_long_prompt_is_a_per_row_error_in_the_pipeline(tmp_path, stages, monkeypatch):
    rows = prompt_rows(ROWS[:2] + [("long", LONG, [])] + ROWS[2:4])
    prompts = tmp_path / "prompts.parquet"
    write_prompts(rows, prompts)
    ens = load_stages_ensemble(stages)
    out = tmp_path / "with-long.parquet"
    assert decode_shard(ens, prompts, 0, 1, out, batch_size=3, made_from=MADE_FROM) == 5
    got = {r["id"]: r for r in pq.read_table(out).to_pylist()}
    assert got["long"]["text"] == "" and got["long"]["token_ids"] == []
    assert got["long"]["stop_reason"].startswith("error: prompt of ")
    assert "exceeds the context window of 512 tokens of bl" in got["long"]["stop_reason"]
    # the other rows decode as they do without the long row
    short = tmp_path / "short.parquet"
    write_prompts([r for r in rows if r["id"] != "long"], short)
    decode_shard(ens, short, 0, 1, tmp_path / "alone.parquet", batch_size=1, made_from=MADE_FROM)
    alone = {r["id"]: r for r in pq.read_table(tmp_path / "alone.parquet").to_pylist()}
    for i in alone:
        assert (got[i]["token_ids"], got[i]["text"]) == (alone[i]["token_ids"], alone[i]["text"]), i
    # a row that only outgrows a window while decoding (pre-check bypassed): its batch is redone row by row
    monkeypatch.setattr("deepen.decoding.context_error", lambda *a, **k: None)
    out2 = tmp_path / "fallback.parquet"
    decode_shard(ens, prompts, 0, 1, out2, batch_size=3, made_from=MADE_FROM)
    got2 = {r["id"]: r for r in pq.read_table(out2).to_pylist()}
    assert got2["long"]["stop_reason"].startswith("error: a sequence of ")
    assert "exceeds the model's context window of 512" in got2["long"]["stop_reason"]
    for i in alone:
        assert got2[i]["token_ids"] == alone[i]["token_ids"], i
    # and the scores count the error row as wrong instead of failing
    table = score_predictions("triviaqa", rows, pq.read_table(out).to_pylist())
    assert table.num_rows == 5


def test_long_prompt_is_a_per_row_error_in_the_cli(pair_dirs):
    res = _cli("generate", *pair_dirs, "--prompt", "The cat sat on the", "--prompt", LONG, "--min-anchors", "50",
               "--max-new-tokens", "4", "--json")
    assert res.returncode == 0, res.stderr
    ok, bad = json.loads(res.stdout)
    assert len(ok["token_ids"]) >= 1 and not ok["stop_reason"].startswith("error")
    assert bad["text"] == "" and bad["stop_reason"].startswith("error: prompt of ")
    assert "deepen: error: prompt 2: prompt of " in res.stderr
    res = _cli("generate", *pair_dirs, "--prompt", LONG, "--min-anchors", "50")
    assert res.returncode == 2 and "exceeds the context window of 512 tokens" in res.stderr
