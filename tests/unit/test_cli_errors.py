"""The command line ends with one line `deepen: error: ...` and exit status 2 for every bad input, never a traceback,
and decodes the good prompts of a request that also has bad ones."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from deepen.embedded import EMBEDDED, part_paths


def _cli(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "deepen", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})


def _one_error_line(res, message):
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert lines[-1].startswith("deepen: error:") and message in lines[-1], lines[-1]


@pytest.mark.parametrize("args, message", [
    (["--max-dense-gb", "nan"], "--max-dense-gb must be a finite number > 0, got nan"),
    (["--max-dense-gb", "inf"], "--max-dense-gb must be a finite number > 0, got inf"),
    (["--device", "bogus"], "unknown device 'bogus'"),
    (["--method", "blend"], "unknown method 'blend'"),
], ids=["dense-nan", "dense-inf", "device-bogus", "method-unknown"])
def test_bad_settings_are_refused_before_loading(pair_dirs, args, message):
    _one_error_line(_cli("generate", *pair_dirs, "--prompt", "x", *args), message)


def test_cuda_without_a_gpu(pair_dirs):
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible here")
    _one_error_line(_cli("generate", *pair_dirs, "--prompt", "x", "--device", "cuda"), "no CUDA GPU is visible")


def test_the_same_member_twice(pair_dirs):
    _one_error_line(_cli("generate", pair_dirs[0], pair_dirs[0], "--prompt", "x"), "a member is listed twice")


def test_a_cache_dir_that_cannot_be_created(pair_dirs):
    _one_error_line(_cli("generate", "smollm2-135m", pair_dirs[1], "--prompt", "x", "--cache-dir", "/dev/null/x"),
                    "cache directory /dev/null/x cannot be created")


def test_a_truncated_gguf(tmp_path):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(part_paths(EMBEDDED["smollm2-135m"])[0].read_bytes()[:1024])
    _one_error_line(_cli("generate", str(cut), "smollm2-135m", "--prompt", "x", env={"DEEPEN_HOME": str(tmp_path)}),
                    f"cannot read GGUF file {cut}")


def test_checkpoints_that_need_remote_code_or_pickles_are_refused(pair_dirs, tmp_path):
    remote = tmp_path / "remote"
    shutil.copytree(pair_dirs[0], remote)
    config = json.loads((remote / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "configuration_x.XConfig", "AutoModelForCausalLM": "modeling_x.XModel"}
    (remote / "config.json").write_text(json.dumps(config))
    _one_error_line(_cli("generate", str(remote), pair_dirs[1], "--prompt", "x"), "remote")
    pickled = tmp_path / "pickled"
    shutil.copytree(pair_dirs[0], pickled)
    from safetensors.torch import load_file

    weights = load_file(str(pickled / "model.safetensors"))
    (pickled / "model.safetensors").unlink()
    weights["evil"] = _Evil()  # a pickle that would run code when loaded: torch loads weights only, and refuses it
    torch.save(weights, pickled / "pytorch_model.bin")
    res = _cli("generate", str(pickled), pair_dirs[1], "--prompt", "x")
    _one_error_line(res, "cannot load model")
    assert "pwned" not in res.stdout


class _Evil:
    def __reduce__(self):
        return print, ("pwned",)


def test_a_cap_below_the_minimum_says_the_cap_did_it(pair_dirs):
    res = _cli("generate", *pair_dirs, "--prompt", "x", "--max-anchors", "1", "--min-anchors", "10")
    _one_error_line(res, "max_anchors 1 keeps 1 of the")


def test_one_bad_prompt_does_not_lose_the_others(pair_dirs):
    res = subprocess.run([sys.executable, "-m", "deepen", "generate", *pair_dirs, "--min-anchors", "50",
                          "--prompt", os.fsdecode(b"Hello \xff\xfe world"), "--prompt", "normal prompt",
                          "--max-new-tokens", "3", "--json"], capture_output=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert b"deepen: error: prompt 1: prompt is not valid text" in res.stderr
    out = json.loads(res.stdout)
    assert out[0]["stop_reason"].startswith("error") and out[1]["stop_reason"] != "error" and out[1]["token_ids"]
