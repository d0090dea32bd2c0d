"""Speed: the ensemble's and each peer method's cost per token against the members alone, at batch 1 (P1) and at
the pipeline's batch size (P3), all interleaved in one measurement; and SAFE's share of ensembled tokens."""

from __future__ import annotations

from deepen import Ensemble
from deepen.bench.timing import log, per_token
from deepen.eval.task_data import build_prompts

PROMPT = "Once upon a time, in a small village by the sea,"
PEERS = ("gac", "unite", "safe+deepen")
#: peers that ensemble every step (SAFE skips most): DeePEn's overhead is compared with the cheapest of them
EVERY_STEP = ("gac", "unite")


def story_prompts(n: int) -> list[str]:
    return [PROMPT] if n == 1 else [f"{PROMPT} Story {i}:" for i in range(n)]


def runner(ens: Ensemble, prompts: list[str]):
    return lambda n: ens.generate(prompts, max_new_tokens=n, batch_size=len(prompts), ignore_eos=True)


def methods(members, deepen: Ensemble) -> dict[str, Ensemble]:
    """DeePEn and the peers over the same members (SAFE over DeePEn's own anchors and spaces)."""
    shared = {"anchors": deepen.method.anchors, "spaces": deepen.method.spaces}
    return {"deepen": deepen, "gac": Ensemble(members, method="gac", progress=False),
            "unite": Ensemble(members, method="unite", progress=False),
            "safe+deepen": Ensemble(members, method="safe+deepen", progress=False, **shared)}


def at_batch(alone: dict[str, Ensemble], ensembles: dict[str, Ensemble], batch: int, tokens: int,
             repeats: int) -> dict:
    """Seconds per token per row of every member alone and every method, interleaved; each method's ratio to the
    sum of the members alone."""
    prompts = story_prompts(batch)
    runners = {f"alone:{n}": runner(e, prompts) for n, e in alone.items()}
    runners |= {n: runner(e, prompts) for n, e in ensembles.items()}
    log(f"speed: batch {batch}, {tokens} tokens, {len(runners)} runners interleaved")
    s = {n: t / batch for n, t in per_token(runners, tokens, repeats).items()}
    floor = sum(s[f"alone:{n}"] for n in alone)
    return {"batch": batch, "s_per_token_per_row": s, "members_alone_s": floor,
            "ratio": {n: s[n] / floor for n in ensembles}}


def breakdown(ens: Ensemble, batch: int, tokens: int) -> dict:
    """Milliseconds per step in each part of DeePEn's loop (one run, timings on)."""
    g = ens.generate(story_prompts(batch), max_new_tokens=tokens, batch_size=batch, ignore_eos=True, timings=True)
    steps = max(g[0].timings["steps"], 1)
    parts = ("forward_main", "forward_assistants", "fuse", "relative", "search", "certify", "tokenizer")
    return {k: 1000 * batch * v / steps for k, v in g[0].timings.items() if k in parts}


def safe_share(ens: Ensemble, per_task: int) -> dict:
    """SAFE's share of ensembled tokens on generation tasks (GSM8K, TriviaQA, NQ), greedy, each task's stop."""
    rows = [r for t in ("gsm8k", "triviaqa", "nq") for r in build_prompts(t, limit=per_task)]
    outs = ens.generate([r["prompt"] for r in rows], max_new_tokens=[min(r["max_new_tokens"], 64) for r in rows],
                        stop=[r["stop"] for r in rows], batch_size=8)
    tokens, ensembled = sum(len(o.token_ids) for o in outs), sum(o.ensembled for o in outs)
    return {"tokens": tokens, "ensembled": ensembled, "share": ensembled / max(tokens, 1), "rows": len(rows)}


def run(members, alone_members, *, batch: int, tokens: int, repeats: int, min_anchors: int, quick: bool) -> dict:
    deepen = Ensemble(members, min_anchors=min_anchors, progress=False)
    ensembles = methods(members, deepen)
    alone = {m.name: Ensemble([m], progress=False) for m in alone_members}
    res = {"anchors": len(deepen.method.anchors), "tokens": tokens, "repeats": repeats}
    res["batch_1"] = at_batch(alone, ensembles, 1, tokens, repeats)
    res["batch_n"] = at_batch(alone, ensembles, batch, tokens, repeats)
    res["P1"] = res["batch_1"]["ratio"]["deepen"]
    res["P3"] = res["batch_n"]["ratio"]["deepen"]
    one, many = res["batch_1"]["s_per_token_per_row"], res["batch_n"]["s_per_token_per_row"]
    res["batch_gain"] = {n: one[n] / many[n] for n in one}
    res["breakdown_ms_per_step"] = {"batch_1": breakdown(deepen, 1, tokens), "batch_n": breakdown(deepen, batch, tokens)}
    cheapest = min(res["batch_n"]["ratio"][p] for p in EVERY_STEP)
    res["deepen_vs_cheapest_every_step_peer"] = res["batch_n"]["ratio"]["deepen"] / cheapest
    log("speed: SAFE's share of ensembled tokens on task prompts")
    res["safe_share"] = safe_share(ensembles["safe+deepen"], 2 if quick else 10)
    return res
