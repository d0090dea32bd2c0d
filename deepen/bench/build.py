"""P5: building anchors and relative spaces from loaded members (cold), and a ``snakemake`` re-run of a finished
pipeline with nothing to do (warm)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from deepen import Ensemble
from deepen.bench.timing import timed


def run(members, *, min_anchors: int, snakemake_dir: Path | None) -> dict:
    res = {"cold_s": timed(lambda: Ensemble(members, min_anchors=min_anchors, progress=False))[0]}
    if snakemake_dir is not None and (snakemake_dir / "results" / "summary.md").is_file():
        exe = Path(sys.executable).with_name("snakemake")
        t0 = time.perf_counter()
        proc = subprocess.run([str(exe), "--cores", "2"], cwd=snakemake_dir, capture_output=True, text=True, check=False)
        res["warm_snakemake_s"] = time.perf_counter() - t0
        res["warm_nothing_to_do"] = "Nothing to be done" in proc.stdout + proc.stderr
    return res
