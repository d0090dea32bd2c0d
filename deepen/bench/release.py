"""The release's own scheme (paper mode: dense relative matrices; every assistant re-prefilled each step) against
ours (fast mode, KV caches) on the same members, anchors, prompt and tokens. Anchors are capped so that the dense
matrices fit."""

from __future__ import annotations

from functools import partial

from deepen import Ensemble
from deepen.bench.speed import token_ids
from deepen.bench.timing import interleaved, log


def run(members, alone_members, *, anchors: int, tokens: int, repeats: int) -> dict:
    """Seconds of the release's scheme and ours, interleaved with each member alone (its own KV cache). Ours runs the
    main model at every step (the assistants only where fusion can change the token), so the release's time over the
    main model's alone is the most a scheme that runs the main model at every step could gain here: the ceiling."""
    ours = Ensemble(members, max_anchors=anchors, min_anchors=min(1000, anchors), progress=False)
    shared = {"anchors": ours.method.anchors, "spaces": ours.method.spaces}
    release = Ensemble(members, mode="paper", sync="reprefill", progress=False, **shared)
    log(f"release: paper mode + re-prefill vs fast mode + KV cache, {len(ours.method.anchors)} anchors, {tokens} tokens")
    runs = {"release": release, "ours": ours} | {f"alone:{m.name}": Ensemble([m], progress=False) for m in alone_members}
    for ens in runs.values():  # warm-up: first-call allocations, lazy initialisation
        token_ids(ens, 2)
    fns = {name: partial(token_ids, ens, tokens) for name, ens in runs.items()}
    s, outputs = interleaved(fns, repeats)
    same = outputs["release"] == outputs["ours"]
    main_alone = s[f"alone:{alone_members[0].name}"]
    return {"anchors": len(ours.method.anchors), "tokens": tokens, "seconds": s, "same_tokens": same,
            "speedup": s["release"] / s["ours"], "main_alone_s": main_alone,
            "ceiling": s["release"] / main_alone}
