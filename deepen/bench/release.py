"""The release's own scheme (paper mode: dense relative matrices; every assistant re-prefilled each step) against
ours (fast mode, KV caches) on the same members, anchors, prompt and tokens. Anchors are capped so that the dense
matrices fit."""

from __future__ import annotations

from deepen import Ensemble
from deepen.bench.speed import PROMPT
from deepen.bench.timing import interleaved, log


def run(members, *, anchors: int, tokens: int, repeats: int) -> dict:
    ours = Ensemble(members, max_anchors=anchors, min_anchors=min(1000, anchors), progress=False)
    shared = {"anchors": ours.method.anchors, "spaces": ours.method.spaces}
    release = Ensemble(members, mode="paper", sync="reprefill", progress=False, **shared)
    log(f"release: paper mode + re-prefill vs fast mode + KV cache, {len(ours.method.anchors)} anchors, {tokens} tokens")
    fns = {"release": lambda n=tokens: release.generate([PROMPT], max_new_tokens=n, ignore_eos=True)[0].token_ids,
           "ours": lambda n=tokens: ours.generate([PROMPT], max_new_tokens=n, ignore_eos=True)[0].token_ids}
    for fn in fns.values():  # warm-up: first-call allocations, lazy initialisation
        fn(2)
    s, outputs = interleaved(fns, repeats)
    same = outputs["release"] == outputs["ours"]
    return {"anchors": len(ours.method.anchors), "tokens": tokens, "seconds": s, "same_tokens": same,
            "speedup": s["release"] / s["ours"]}
