"""Bad configs and bad data through `snakemake`: a non-zero exit with the message, before any job starts and before
anything is written (tests/unit/test_bad_input.py checks the same in process)."""

from __future__ import annotations

import json

import pytest
import yaml

from helpers.configs import arc_data, bad_config, default_config, minimal_config
from helpers.pipeline import snakemake, workdir, write_config


@pytest.mark.parametrize("name", ["unknown key", "member not a model"])
def test_snakemake_rejects_bad_config_before_any_job(tmp_path, name):
    """A dry run of the default config with one bad edit."""
    edit, message = bad_config(name)
    work = workdir(tmp_path)
    config = default_config()
    edit(config)
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(work, "-n", "--cores", "1", check=False)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert not (work / "resources").exists()


def test_bad_configs_through_snakemake_start_no_job(tmp_path):
    """The same through `snakemake` (a real run, not a dry run): non-zero exit, the message, nothing written."""
    work = workdir(tmp_path)
    data = arc_data(tmp_path / "data")
    for name in ("wrong type", "main model not a model", "weights sum", "max below min anchors"):
        edit, message = bad_config(name)
        config = minimal_config(data)
        edit(config)
        write_config(work, config)
        proc = snakemake(work, "--cores", "1", check=False, timeout=300)
        assert proc.returncode != 0, name
        assert message in proc.stdout + proc.stderr, (name, proc.stderr[-2000:])
        assert not (work / "resources").exists() and not (work / "results").exists(), name
    # an unknown split is not a config key: a target naming one has no rule
    write_config(work, minimal_config(data))
    proc = snakemake(work, "-n", "--cores", "1", "results/scores/val/bl/arc_c.parquet", check=False, timeout=300)
    assert proc.returncode != 0 and "results/scores/val/bl/arc_c.parquet" in proc.stdout + proc.stderr


def test_bad_data_stops_the_run_before_any_job(tmp_path):
    """onstart (not in dry runs): the task files still to be read exist and parse; the error names file and line."""
    work = workdir(tmp_path)
    row = json.dumps({"question": "Q?", "A": "a", "B": "b", "answer": "A"})
    for case in ["missing dir", "malformed row", "missing gold", "empty split"]:
        data = tmp_path / case.replace(" ", "-")
        if case == "missing dir":
            expected = f"data directory not found: {data}"
        elif case == "malformed row":
            arc_data(data, test=row + '\n{"question": "Q2?", "A": \n' + row + "\n")
            expected = f"{data}/ARC-Challenge/test.jsonl:2: malformed JSON"
        elif case == "missing gold":
            arc_data(data, train=row + "\n" + json.dumps({"question": "Q?", "A": "a", "B": "b"}) + "\n")
            expected = f"{data}/ARC-Challenge/train.jsonl:2: missing gold answer"
        else:
            arc_data(data, test="\n")
            expected = f"{data}/ARC-Challenge/test.jsonl: empty split"
        write_config(work, minimal_config(data))
        if case == "missing dir":
            assert snakemake(work, "-n", "--cores", "1", check=False, timeout=300).returncode == 0  # reads no data
        proc = snakemake(work, "--cores", "1", check=False, timeout=300)
        assert proc.returncode != 0, case
        assert expected in proc.stdout + proc.stderr, (case, proc.stderr[-3000:])
        assert not (work / "resources").exists() and not (work / "logs").exists(), case
