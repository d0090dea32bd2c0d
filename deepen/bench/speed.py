"""Speed: the ensemble's and each peer method's cost per token against the members alone, at batch 1 (P1) and at
the pipeline's batch size (P3), all interleaved in one measurement; and SAFE's share of ensembled tokens."""

from __future__ import annotations

import statistics
from functools import partial

import torch

from deepen import Ensemble
from deepen.bench.timing import log, per_token, timed
from deepen.eval.task_data import build_prompts
from deepen.relative import RelativeSpace, rows_of_cosines

PROMPT = "Once upon a time, in a small village by the sea,"
PEERS = ("gac", "unite", "safe+deepen")
#: peers that ensemble every step (SAFE skips most): DeePEn's overhead is compared with the cheapest of them
EVERY_STEP = ("gac", "unite")


def story_prompts(n: int) -> list[str]:
    return [PROMPT] if n == 1 else [f"{PROMPT} Story {i}:" for i in range(n)]


def runner(ens: Ensemble, prompts: list[str]):
    return lambda n: ens.generate(prompts, max_new_tokens=n, batch_size=len(prompts), ignore_eos=True)


def token_ids(ens: Ensemble, tokens: int) -> list[int]:
    """``ens`` greedy on the bench prompt for ``tokens`` tokens (EOS ignored): its token ids."""
    return ens.generate([PROMPT], max_new_tokens=tokens, ignore_eos=True)[0].token_ids


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


def breakdown(ens: Ensemble, batch: int, tokens: int) -> tuple[dict, list[float]]:
    """Milliseconds per step in each part of DeePEn's loop (one run, timings on), and the relative rows each member
    computed per step (its row cache's misses)."""
    before = [s.rows_computed for s in ens.method.spaces]
    g = ens.generate(story_prompts(batch), max_new_tokens=tokens, batch_size=batch, ignore_eos=True, timings=True)
    steps = max(g[0].timings["steps"], 1)
    parts = ("forward_main", "forward_assistants", "fuse", "relative", "search", "certify", "tokenizer")
    rows = [(s.rows_computed - b) / steps for s, b in zip(ens.method.spaces, before)]
    return {k: 1000 * batch * v / steps for k, v in g[0].timings.items() if k in parts}, rows


def best_row_seconds(space: RelativeSpace, dtype: torch.dtype, rows: int = 512, repeats: int = 3):
    """Seconds per relative row at the best rate this machine computes them (``rows`` rows in one call, the anchors'
    unit embeddings held in ``dtype``; median of ``repeats``), and those rows [rows, |A|] fp32."""
    ids = torch.linspace(0, space.vocab_size - 1, rows, device=space.device).round().long().unique()
    if dtype == torch.float32:  # the library's own path
        compute = partial(space.compute_rows, ids)
    else:
        unit, anchors = space.unit(ids).to(dtype), space.anchor_unit.T.contiguous().to(dtype)
        compute = partial(_rows_in, unit, anchors, space.temperature)
    compute()  # warm-up
    runs = [timed(compute) for _ in range(repeats)]
    return statistics.median(t for t, _ in runs) / len(ids), runs[-1][1]


def _rows_in(unit: torch.Tensor, anchors_t: torch.Tensor, temperature: float) -> torch.Tensor:
    return rows_of_cosines((unit @ anchors_t).float(), temperature)


def row_rates(spaces: list[RelativeSpace]) -> dict:
    """Each member's best ms per relative row, fp32 (the library's path) and from bf16 anchor embeddings (a lever,
    not the default), and how far the bf16 rows stray from the fp32 ones (largest relative deviation)."""
    best = {name: [best_row_seconds(s, dtype) for s in spaces]
            for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16))}
    deviation = max(float(((b16 - f32).abs() / f32).max())
                    for (_, f32), (_, b16) in zip(best["float32"], best["bfloat16"]))
    return {"row_ms": {name: [1000 * t for t, _ in b] for name, b in best.items()},
            "bf16_rows_max_relative_deviation": deviation}


def floor(res: dict) -> dict:
    """DeePEn's ratio (P1, P3) with its fusion replaced by the relative rows it computed per step at the best rate
    (``row_rates``): everything else in its step (forwards as it ran them, tokenizer calls) as measured. A floor for
    this algorithm and kept set on this machine, derived from the run's own figures (``res``: a speed section)."""
    out = {}
    for key in ("batch_1", "batch_n"):
        parts = res["breakdown_ms_per_step"][key]  # ms per step of the whole batch, as are the rows per step
        step = sum(parts.get(p, 0.0) for p in ("forward_main", "forward_assistants", "fuse", "tokenizer"))
        out[key] = {}
        for name, per_row in res["rates"]["row_ms"].items():
            rows_ms = sum(r * ms for r, ms in zip(res["rows_per_step"][key], per_row))
            out[key][name] = res[key]["ratio"]["deepen"] * (step - parts["fuse"] + rows_ms) / step
    return out | {"deepen_vs_cheapest_every_step_peer": out["batch_n"]["float32"] / cheapest_every_step_peer(res)}


def cheapest_every_step_peer(res: dict) -> float:
    """The lowest batch-n ratio among the peers that ensemble every step (a speed section's figures)."""
    return min(res["batch_n"]["ratio"][p] for p in EVERY_STEP)


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
    (ms_1, rows_1), (ms_n, rows_n) = breakdown(deepen, 1, tokens), breakdown(deepen, batch, tokens)
    res["breakdown_ms_per_step"] = {"batch_1": ms_1, "batch_n": ms_n}
    res["deepen_vs_cheapest_every_step_peer"] = res["batch_n"]["ratio"]["deepen"] / cheapest_every_step_peer(res)
    res["rows_per_step"] = {"batch_1": rows_1, "batch_n": rows_n}
    log("speed: relative rows at the best per-row rate, fp32 and bf16 (the floor)")
    res["rates"] = row_rates(deepen.method.spaces)
    res["floor"] = floor(res)
    log("speed: SAFE's share of ensembled tokens on task prompts")
    res["safe_share"] = safe_share(ensembles["safe+deepen"], 2 if quick else 10)
    return res
