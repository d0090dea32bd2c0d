"""Guards against silent wrong results and half-written files: shard provenance and claims, atomic files with the
umask's permissions, stale temporaries, task data checked field by field, rows that cannot be decoded."""

import json
import os
import stat

import pyarrow as pa
import pytest

from deepen import Ensemble
from deepen.errors import DeepenError, TaskError
from deepen.eval.task_data import build_prompts, check_local
from deepen.files import atomic_dir, atomic_path
from deepen.pipeline.io import read_table, with_metadata, write_table
from deepen.pipeline.shards import check_provenance, claim, write_claimed
from helpers.configs import arc_data


def _shard(path, made_from):
    write_table(with_metadata(pa.table({"id": ["a"]}), provenance=json.dumps(made_from, sort_keys=True)), path)


def test_a_shard_made_with_other_settings_is_refused_and_deleted(tmp_path):
    path = tmp_path / "0-of-1.parquet"
    current = {"settings": {"eta": 5.0}, "fingerprints": ["f"], "prompts_sha256": "p"}
    _shard(path, current)
    check_provenance(str(path), current)  # the current run's shard passes
    _shard(path, dict(current, settings={"eta": 0.15}))
    with pytest.raises(DeepenError, match="made with other settings"):
        check_provenance(str(path), current)
    assert not path.exists()  # the next run decodes it again


def test_an_older_job_cannot_replace_the_shard_a_newer_one_claimed(tmp_path):
    out = tmp_path / "0-of-1.parquet"
    with claim(out) as old:
        with claim(out) as new:  # a newer job for the same shard starts while the old one still runs
            write_claimed(pa.table({"v": ["new"]}), out, new)
        with pytest.raises(DeepenError, match="newer job"):
            write_claimed(pa.table({"v": ["old"]}), out, old)
    assert read_table(out)["v"].to_pylist() == ["new"]
    assert not any(p.name.endswith(".claim") for p in tmp_path.iterdir())


def test_written_files_and_directories_get_the_umasks_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "f.txt") as tmp:
            tmp.write_text("x")
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "inner").mkdir()
            (tmp / "inner" / "g").write_text("y")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "d" / "inner").stat().st_mode) == 0o755


def test_a_killed_writers_temporaries_are_removed_by_the_next_one(tmp_path):
    stale_dir = tmp_path / ".model.abc123.tmp"
    stale_dir.mkdir()
    (stale_dir / "model.safetensors").write_bytes(b"0" * 1000)
    stale_file = tmp_path / ".model.def456.tmp"
    stale_file.write_text("half")
    with atomic_dir(tmp_path / "model") as tmp:
        (tmp / "config.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model.lock", "model"]


def test_a_row_missing_a_field_its_prompt_reads_names_file_and_line(tmp_path):
    row = {"A": "Mars", "B": "Moon", "C": "Sun", "D": "Io", "answer": "A"}
    data = arc_data(tmp_path, test=json.dumps(dict(row, question="Q?")) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(TaskError, match=r"test.jsonl:2: field 'question' is missing or empty"):
        check_local("arc_c", "test", data)
    with pytest.raises(TaskError, match="question"):
        build_prompts("arc_c", "test", data_dir=data)


def test_an_empty_selection_is_an_error_naming_the_task(tmp_path):
    data = arc_data(tmp_path)
    with pytest.raises(TaskError, match="arc_c test: offset 3 is past the end of its 3 rows"):
        build_prompts("arc_c", "test", data_dir=data, offset=3)
    with pytest.raises(TaskError, match="arc_c"):
        build_prompts("arc_c", "test", data_dir=data, limit=0)


def test_a_prompt_that_is_not_text_becomes_an_error_row_and_the_others_decode(pair):
    ens = Ensemble(list(pair), eta=0.5, min_anchors=10, progress=False)
    bad = "Hello \udcff\udcfe world"  # what argv decoding makes of the bytes ff fe
    out = ens.generate(["normal prompt", bad, "another one"], max_new_tokens=4, batch_size=2)
    assert out[1].stop_reason.startswith("error: prompt is not valid text") and out[1].token_ids == []
    alone = ens.generate(["normal prompt", "another one"], max_new_tokens=4, batch_size=1)
    assert [o.token_ids for o in (out[0], out[2])] == [o.token_ids for o in alone]
