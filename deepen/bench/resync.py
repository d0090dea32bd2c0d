"""P2: the members read the ensemble's text through their KV caches (``deepen.sync``) instead of re-running every
assistant on the whole sequence each step as the release does. Each member alone, greedy with and without its own
KV cache (transformers' ``generate``), gains what a cache can give on this machine; the ensemble's gain is measured
against that, at growing lengths."""

from __future__ import annotations

from functools import partial

from deepen import Ensemble
from deepen.bench.speed import PROMPT, token_ids
from deepen.bench.timing import interleaved, log


def alone(member, tokens: int, use_cache: bool):
    """The member's own greedy loop, with its KV cache or re-reading the whole sequence each step."""
    ids = member.tokenizer(PROMPT, return_tensors="pt").to(member.device)
    pad = member.tokenizer.pad_token_id
    settings = {"max_new_tokens": tokens, "min_new_tokens": tokens, "do_sample": False, "use_cache": use_cache,
                "pad_token_id": member.tokenizer.eos_token_id if pad is None else pad}
    return lambda: member.model.generate(**ids, **settings)[0, ids["input_ids"].shape[1]:].tolist()


def at_length(pairs: dict[str, tuple], tokens: int, repeats: int) -> dict:
    """Seconds of each (cache, re-prefill) pair, interleaved, and whether both gave the same tokens."""
    fns = {f"{n}:{kind}": make(tokens) for n, pair in pairs.items() for kind, make in zip(("cache", "reprefill"), pair)}
    s, outputs = interleaved(fns, repeats)
    same = {n: outputs[f"{n}:cache"] == outputs[f"{n}:reprefill"] for n in pairs}
    members = [n for n in pairs if n != "ensemble"]
    alone_gain = sum(s[f"{n}:reprefill"] for n in members) / sum(s[f"{n}:cache"] for n in members)
    gain = s["ensemble:reprefill"] / s["ensemble:cache"]
    return {"tokens": tokens, "seconds": s, "same_tokens": same, "ensemble_gain": gain,
            "members_alone_gain": alone_gain, "share_of_members_gain": gain / alone_gain}


def run(members, alone_members, *, lengths: list[int], repeats: int, min_anchors: int) -> dict:
    ens = Ensemble(members, min_anchors=min_anchors, progress=False)
    shared = {"anchors": ens.method.anchors, "spaces": ens.method.spaces}
    reprefill = Ensemble(members, sync="reprefill", progress=False, **shared)
    pairs = {"ensemble": (lambda n: partial(token_ids, ens, n), lambda n: partial(token_ids, reprefill, n))}
    pairs |= {m.name: (lambda n, m=m: alone(m, n, True), lambda n, m=m: alone(m, n, False)) for m in alone_members}
    out = []
    for tokens in lengths:
        log(f"resync: {tokens} tokens, cache vs re-prefill")
        # re-prefill grows with the square of the length: one round at the longest
        out.append(at_length(pairs, tokens, repeats if tokens <= 256 else 1))
    at_256 = next((r for r in out if r["tokens"] == 256), out[-1])
    return {"lengths": out, "P2": at_256["share_of_members_gain"], "P2_tokens": at_256["tokens"]}
