"""P4: peak memory of a fresh process generating with the ensemble (fast mode, all anchors) against the members'
weights, beside the floor: the same kind of process running each member alone."""

from __future__ import annotations

import subprocess
import sys

from deepen.bench.speed import PROMPT
from deepen.ensemble import Ensemble


def weights_bytes(members) -> int:
    return sum(p.numel() * p.element_size() for m in members for p in m.model.parameters())


def peak_of_generate(sources: list[str], tokens: int, *, alone: bool, min_anchors: int, device: str,
                     dtype: str) -> int:
    """Bytes: on CPU the process's peak resident set (VmHWM: ru_maxrss would carry the parent's across fork + exec),
    on a GPU the peak of ``torch.cuda.max_memory_allocated``."""
    run = (f"for m in members: Ensemble([m], progress=False).generate([{PROMPT!r}], max_new_tokens={tokens})\n"
           if alone else
           f"Ensemble(members, progress=False, min_anchors={min_anchors}).generate([{PROMPT!r}], "
           f"max_new_tokens={tokens}, ignore_eos=True)\n")
    peak = ("print(torch.cuda.max_memory_allocated() // 1024)\n" if device.startswith("cuda") else
            "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
            "      if os.path.exists('/proc/self/status') else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)\n")
    code = ("import os, resource, torch\nfrom deepen import Ensemble, load_member\n"
            f"members = [load_member(s, device={device!r}, dtype={dtype!r}) for s in {sources!r}]\n" + run + peak)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) * 1024


def run(members, *, tokens: int, min_anchors: int, device: str, dtype: str) -> dict:
    sources = [m.source for m in members]
    weights = weights_bytes(members)
    peak = peak_of_generate(sources, tokens, alone=False, min_anchors=min_anchors, device=device, dtype=dtype)
    floor = peak_of_generate(sources, tokens, alone=True, min_anchors=min_anchors, device=device, dtype=dtype)
    spaces = Ensemble(members, min_anchors=min_anchors, progress=False).method.spaces
    return {"memory": "cuda max_memory_allocated" if device.startswith("cuda") else "resident set",
            "peak_bytes": peak, "weights_bytes": weights, "P4": peak / weights, "members_alone_peak_bytes": floor,
            "members_alone_ratio": floor / weights, "release_dense_bytes": sum(s.dense_bytes() for s in spaces)}
