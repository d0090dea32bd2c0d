"""The `deepen generate` command, as a user runs it."""

import json
import subprocess
import sys

import pytest

from deepen.cli import main


def run(*args):
    return subprocess.run([sys.executable, "-m", "deepen", *args], capture_output=True, text=True, timeout=300)


def test_generate_json(pair_dirs):
    res = run("generate", *pair_dirs, "--prompt", "The cat sat on the", "--max-new-tokens", "8",
              "--min-anchors", "50", "--eta", "0.5", "--json", "--timings")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert {"text", "token_ids", "seconds", "members", "timings"} <= set(out)
    assert len(out["token_ids"]) == 8 or out["stop_reason"] == "eos"
    assert out["members"] == ["bytelevel", "sentencepiece"]
    assert out["mode"] == "fast" and out["anchors"] > 50
    assert "[deepen]" in res.stderr  # progress goes to stderr, not into the JSON


def test_bad_input_is_one_clear_line(pair_dirs):
    res = run("generate", *pair_dirs, "--prompt", "x", "--weights", "0.9,0.3", "--min-anchors", "50")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].startswith("deepen: error: weights must sum to 1")
    res = run("generate", "not-a-model!", "--prompt", "x")
    assert res.returncode == 2 and "unknown model" in res.stderr
    res = run("generate", *pair_dirs, "--prompt", "x")  # default minimum of 1000 anchors
    assert res.returncode == 2 and "fewer than the minimum of 1000" in res.stderr


@pytest.mark.parametrize("method, flags", [
    ("gac", ["--gate", "0.9"]), ("unite", ["--top-k", "3"]), ("safe+gac", ["--draft", "2"]), ("safe+unite", []),
    ("safe+deepen", ["--eta", "0.5", "--min-anchors", "50", "--certify"]),
    ("deepen", ["--eta", "0.5", "--min-anchors", "50", "--no-certify"]),
    ("deepen", ["--eta", "0.5", "--min-anchors", "50"]),
])
def test_every_method_takes_its_own_options(pair_dirs, capsys, method, flags):
    status = main(["generate", *pair_dirs, "--prompt", "The cat sat on the", "--max-new-tokens", "4",
                   "--method", method, *flags, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert status == 0 and out["method"] == method and len(out["token_ids"]) in range(1, 5)
    assert ("eta" in out) == method.endswith("deepen")
    if "eta" in out:  # η 0.5, T 5 is certified unless --no-certify says otherwise
        assert out["certified"] == ("--no-certify" not in flags)
    if method == "deepen":  # every fused step of the one prompt is tallied when certified
        assert sum(out["certificate"].values()) == (out["ensembled"] if out["certified"] else 0)


def test_an_option_of_another_method_is_refused(pair_dirs, capsys):
    assert main(["generate", *pair_dirs, "--prompt", "x", "--method", "gac", "--eta", "0.3"]) == 2
    assert "--eta is an option of deepen; --method gac does not take it" in capsys.readouterr().err
