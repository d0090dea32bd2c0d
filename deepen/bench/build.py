"""P5: building anchors and relative spaces from loaded members (cold), and a ``snakemake`` re-run of a finished
pipeline with nothing to do (warm)."""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

from deepen import Ensemble
from deepen.bench.timing import timed


def run(members, *, min_anchors: int, snakemake_dir: Path | None, repeats: int) -> dict:
    """P5: the cold build once; the warm re-run ``repeats`` times (median)."""
    res = {"cold_s": timed(lambda: Ensemble(members, min_anchors=min_anchors, progress=False))[0]}
    if snakemake_dir is not None and (snakemake_dir / "results" / "summary.md").is_file():
        exe = Path(sys.executable).with_name("snakemake")
        runs = [timed(lambda: subprocess.run([str(exe), "--cores", "2"], cwd=snakemake_dir, capture_output=True,
                                             text=True, check=False)) for _ in range(repeats)]
        res["warm_snakemake_s"] = statistics.median(t for t, _ in runs)
        res["warm_nothing_to_do"] = all("Nothing to be done" in p.stdout + p.stderr for _, p in runs)
    return res
