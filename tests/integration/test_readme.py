"""The README's commands work as written on a checkout: every `snakemake` line as a dry run (a real run would take
minutes to hours), every `deepen generate` line through the command's own argument checks (loading models is what
the real tier tests), every file it names exists."""

from __future__ import annotations

import re
import shlex

import pytest

from deepen.cli import build_parser, check_args
from helpers.pipeline import ROOT, snakemake, workdir

README = (ROOT / "README.md").read_text()


def _commands(tool: str) -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith(f".venv/bin/{tool} ") and "..." not in line]


@pytest.mark.parametrize("line", _commands("snakemake"))
def test_snakemake_lines_plan_their_runs(tmp_path, line):
    args = shlex.split(line)[1:]
    if "--report" in args:  # a report needs a finished run: what it reads is checked by the dry run of the default
        args = [a for a in args if a not in ("--report", "report.html")]
    work = workdir(tmp_path)
    (work / "profiles").symlink_to(ROOT / "profiles")
    proc = snakemake(work, *args, *([] if "-n" in args else ["-n"]))
    assert "Job stats" in proc.stdout or "Nothing to be done" in proc.stdout


@pytest.mark.parametrize("line", _commands("deepen"))
def test_deepen_lines_pass_the_argument_checks(line):
    args = build_parser().parse_args(shlex.split(line)[1:])
    check_args(args)


def test_the_readme_names_files_that_exist():
    named = set(re.findall(r"\]\(((?:docs|data|config)/[^)#]+)", README))
    named |= set(re.findall(r"`((?:config|profiles)/[\w./-]+)`", README))
    assert named and not [p for p in named if not (ROOT / p).exists()]
    assert len(README.splitlines()) <= 150
