"""P5: building anchors and relative spaces from loaded members (cold), and a ``snakemake`` re-run of a finished
pipeline with nothing to do (warm). Where a SLURM client is installed, the warm figure includes the Snakemake SLURM
executor plugin's probe at start-up (``scontrol show config``, 10 s timeout): the section times that probe on its own
too, so that a machine whose controller is down shows what the re-run costs without it."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from deepen import Ensemble
from deepen.bench.timing import timed

SLURM_PROBE = ["scontrol", "show", "config"]
SLURM_PROBE_TIMEOUT_S = 10  # the plugin's own timeout


def slurm_probe_s() -> float | None:
    """Seconds the SLURM plugin's start-up probe takes on this machine (None: no ``scontrol`` on PATH, no probe)."""
    exe = shutil.which(SLURM_PROBE[0])
    if exe is None:
        return None

    def probe():
        try:
            subprocess.run([exe, *SLURM_PROBE[1:]], capture_output=True, timeout=SLURM_PROBE_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            pass  # the plugin gives up here too

    return timed(probe)[0]


def run(members, *, min_anchors: int, snakemake_dir: Path | None, repeats: int) -> dict:
    """P5: the cold build once; the warm re-run ``repeats`` times (median), and the SLURM probe's share of it."""
    res = {"cold_s": timed(lambda: Ensemble(members, min_anchors=min_anchors, progress=False))[0]}
    if snakemake_dir is not None and (snakemake_dir / "results" / "summary.md").is_file():
        exe = Path(sys.executable).with_name("snakemake")
        runs = [timed(lambda: subprocess.run([str(exe), "--cores", "2"], cwd=snakemake_dir, capture_output=True,
                                             text=True, check=False)) for _ in range(repeats)]
        res["warm_snakemake_s"] = statistics.median(t for t, _ in runs)
        res["warm_nothing_to_do"] = all("Nothing to be done" in p.stdout + p.stderr for _, p in runs)
        probe = slurm_probe_s()
        if probe is not None:
            res["slurm_probe_s"] = probe
            res["warm_without_probe_s"] = res["warm_snakemake_s"] - probe
    return res
