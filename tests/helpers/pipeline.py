"""Running the Snakemake pipeline from tests: a copy of the workflow in a temporary directory, `snakemake` on it, and
readers of what a (dry) run prints."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
DATA_DIR = ROOT / "data" / "deepen_splits"  # shipped with the repository


def workdir(tmp_path: Path) -> Path:
    """A copy of the workflow (Snakefile, workflow/, config/) in ``tmp_path/work``."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(ROOT / "Snakefile", work / "Snakefile")
    shutil.copytree(ROOT / "workflow", work / "workflow")
    shutil.copytree(ROOT / "config", work / "config")
    return work


def snakemake(work: Path, *args: str, env: dict | None = None, check: bool = True,
              timeout: float | None = None) -> subprocess.CompletedProcess:
    """``snakemake *args`` in ``work``; with ``check``, a failure raises an AssertionError showing its output."""
    proc = subprocess.run([SNAKEMAKE, *args], cwd=work, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def write_config(work: Path, config: dict) -> None:
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def job_stats(output: str) -> dict[str, int]:
    """Rule -> number of jobs, from the "Job stats" table of a (dry) run."""
    block = output.split("Job stats:")[-1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", block, re.M) if m.group(1) != "total"}


def planned_jobs(output: str) -> list[tuple[str, str]]:
    """(rule, output) of each job a dry run lists."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        m = re.match(r"(?:local)?rule (\w+):", block.strip())
        if m:
            out = re.search(r"^\s+output: (.*)$", block, re.M)
            jobs.append((m.group(1), out.group(1) if out else ""))
    return jobs


# -- slow decode jobs, from the test side ----------------------------------------------------------------------------

BATCH_DONE = "[test] batch {n} done ({rows} rows)"

_SITECUSTOMIZE = textwrap.dedent('''
    """Test hook (tests/helpers/pipeline.py): once deepen.ensemble is imported, every batch that
    Ensemble._decode_rows decodes is followed by a line on stderr and a sleep of {delay} s."""
    import importlib.abc
    import importlib.util
    import sys
    import time

    DELAY = {delay!r}


    def _patch(module):
        decode_rows = module.Ensemble._decode_rows
        done = [0]

        def slow(self, rows, *args, **kwargs):
            out = decode_rows(self, rows, *args, **kwargs)
            done[0] += 1
            print({message!r}.format(n=done[0], rows=len(rows)), file=sys.stderr, flush=True)
            time.sleep(DELAY)
            return out

        module.Ensemble._decode_rows = slow


    class _Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name != "deepen.ensemble":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            exec_module = spec.loader.exec_module

            def exec_and_patch(module):
                exec_module(module)
                _patch(module)

            spec.loader.exec_module = exec_and_patch
            return spec


    sys.meta_path.insert(0, _Finder())
''')


def slow_decode_env(directory: Path, delay: float) -> dict[str, str]:
    """Environment for a subprocess (Snakemake and its jobs inherit it) whose decodes sleep ``delay`` seconds after
    each batch and print ``BATCH_DONE`` on stderr (a job's log): a ``sitecustomize.py`` in ``directory``, put first on
    PYTHONPATH, patches ``deepen.ensemble.Ensemble._decode_rows`` when that module is imported."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(_SITECUSTOMIZE.format(delay=float(delay), message=BATCH_DONE))
    path = os.pathsep.join([str(directory), *filter(None, [os.environ.get("PYTHONPATH")])])
    return {"PYTHONPATH": path}
