"""P6: fast mode (plain and certified) against paper mode over an η x T grid, both orders of the members, on prompts
from all six tasks. Each order decodes the prompts once and every member's distribution is recorded at every step;
every fusion setting then decides the same recorded steps, so the cells compare like with like and paper mode's
dense matrices are built once per order. Anchors are capped so that they fit."""

from __future__ import annotations

import torch

from deepen import Ensemble
from deepen.bench.timing import log
from deepen.eval.task_data import build_prompts
from deepen.exactness import certifies
from deepen.fuse import Fuser, FusionConfig
from deepen.relative import RelativeSpace

TASKS = ("mmlu", "arc_c", "gsm8k", "piqa", "triviaqa", "nq")


class Recorder:
    """A method that decides as ``inner`` does and records, at every step, every member's distribution for the rows
    it decided (measurement only: every member then runs every step)."""

    def __init__(self, inner):
        self.inner, self.steps = inner, []
        self.decoding_members, self.main_rolls_back = inner.decoding_members, inner.main_rolls_back
        self.eager_members, self.clock = inner.eager_members, inner.clock

    def step(self, batch, allowed):
        out = self.inner.step(batch, allowed)
        chosen = torch.tensor([p[0].token for p in out.pieces])
        rows = (~torch.isin(chosen, self.inner._eos)).nonzero().squeeze(-1)
        if len(rows):
            self.steps.append([batch.logits(i)[rows].float().clone() for i in range(len(self.inner.members))])
        return out


def record_steps(members, prompts: list[dict], *, anchors: int, tokens: int, batch: int = 4):
    """Decode ``prompts`` with fast mode (η 0.15, T 5) and record every member's logits at each non-EOS step:
    the inputs the agreement grid replays (every fusion setting decides on the same inputs)."""
    ens = Ensemble(members, max_anchors=anchors, min_anchors=min(1000, anchors), progress=False)
    ens.method = Recorder(ens.method)
    for start in range(0, len(prompts), batch):
        part = prompts[start : start + batch]
        ens.generate([r["prompt"] for r in part], max_new_tokens=tokens, stop=[r["stop"] for r in part],
                     batch_size=batch)
    recorder = ens.method
    return recorder.inner, [torch.cat(x) for x in zip(*recorder.steps)]


def agreement_grid(members, prompts: list[dict], *, anchors: int, etas, steps_list, tokens: int, batch: int = 16,
                   variants: dict | None = None, progress=None) -> list[dict]:
    """P6: fast mode against paper mode over an η x T grid, both orders of the members, on task prompts.

    Each order's members read the prompts once (fast mode, η 0.15, T 5) and every member's distribution is recorded
    at each step; then, per (η, T), paper mode, plain fast mode (and each of ``variants``: name -> FusionConfig
    settings, e.g. {"topk 256": {"topk": 256}}) and certified fast mode decide every recorded step, ``batch`` rows at
    a time. Anchors are capped so that paper mode's dense matrices fit (certified mode may fall back to them). Returns
    one record per (order, η, T): steps compared, agreements with paper mode, certified mode's counts, seconds."""
    out = []
    for order in (members, members[::-1]):
        method, logits = record_steps(order, prompts, anchors=anchors, tokens=tokens)
        spaces = method.spaces
        # the certificate needs every cluster's exact envelopes: one pass over every row (its own spaces, so that
        # plain fast mode keeps its sampled cluster means, as it runs by default)
        exact = [RelativeSpace.of_member(m, method.anchors.ids[i], s.vocab_size, exact_tail=True)
                 for i, (m, s) in enumerate(zip(order, spaces))]
        dense = [s.dense() for s in spaces]
        probs = [torch.softmax(lg, -1) for lg in logits]
        for eta in etas:
            for steps in steps_list:
                fusers = {name: Fuser(spaces, FusionConfig(eta=eta, steps=steps, certify=False, **kw))
                          for name, kw in {"paper": {"mode": "paper"}, "fast": {}, **(variants or {})}.items()}
                fusers["certified"] = Fuser(exact, FusionConfig(eta=eta, steps=steps, certify=True),
                                            max_dense_bytes=sum(s.dense_bytes() for s in spaces))
                fusers["paper"]._dense = fusers["certified"]._dense = dense
                chosen = {name: [] for name in fusers}
                for start in range(0, len(logits[0]), batch):
                    part = slice(start, start + batch)
                    for name, fuser in fusers.items():
                        chosen[name].append(fuser.choose(logits[0][part], [p[part] for p in probs])[0])
                chosen = {name: torch.cat(c) for name, c in chosen.items()}
                out.append({"order": [m.name for m in order], "eta": eta, "steps": steps,
                            "compared": len(chosen["paper"]),
                            "agree": {n: int((c == chosen["paper"]).sum()) for n, c in chosen.items() if n != "paper"},
                            "certified_counts": dict(fusers["certified"].counts),
                            "seconds": {n: round(sum(f.clock.values()), 3) for n, f in fusers.items()}})
                if progress:
                    progress(out[-1])
    return out


def arc_accuracy(members, anchors: int, questions: int) -> dict:
    """ARC-Challenge accuracy of fast and paper mode on the same capped anchors (one-token answers)."""
    capped = Ensemble(members, max_anchors=anchors, min_anchors=min(1000, anchors), progress=False)
    rows = build_prompts("arc_c", limit=questions)
    acc = {}
    for mode in ("fast", "paper"):
        e = Ensemble(members, mode=mode, anchors=capped.method.anchors, spaces=capped.method.spaces, progress=False)
        outs = e.generate([r["prompt"] for r in rows], max_new_tokens=1, choices=[r["choices"] for r in rows],
                          batch_size=8)
        acc[mode] = 100 * sum(o.choice == r["answers"][0] for o, r in zip(outs, rows)) / len(rows)
    return acc | {"questions": len(rows)}


def _key(cell: dict) -> tuple:
    return tuple(cell["order"]), cell["eta"], cell["steps"]


def merged(grid: list[dict], previous: dict | None, settings: dict) -> list[dict]:
    """This run's cells plus the cells of ``previous`` (the last run's agreement section) that this run did not redo,
    where both ran with the same ``settings`` (anchors, prompts, tokens): a grid measured over several runs. Every
    cell carries the commit it was measured at."""
    if not previous or any(previous.get(k) != v for k, v in settings.items()):
        return grid
    done = {_key(c) for c in grid}
    kept = [c | {"commit": c.get("commit", previous["meta"]["commit"])} for c in previous["grid"] if _key(c) not in done]
    first = grid[0]["order"] if grid else None
    return sorted(kept + grid, key=lambda c: (c["order"] != first, c["eta"], c["steps"]))


def default_fuser(cell: dict) -> str:
    """The fuser the library's default (``certify="auto"``) runs in ``cell``: plain "fast" or "certified"."""
    return "certified" if certifies("auto", "fast", cell["eta"], cell["steps"]) else "fast"


def summarised(grid: list[dict], settings: dict) -> dict:
    """The grid with each cell's default agreement (that of the fuser ``default_fuser`` names), the worst cell of
    each fuser, and P6: the default's worst cell."""
    grid = [c | {"default_fuser": f, "agree": c["agree"] | {"default": c["agree"][f]}}
            for c in grid for f in [default_fuser(c)]]
    share = {name: min(c["agree"][name] / max(c["compared"], 1) for c in grid) for name in grid[0]["agree"]}
    certified = sum(c["certified_counts"].get("uncertified", 0) == 0 and c["agree"]["certified"] == c["compared"]
                    for c in grid)
    return settings | {"grid": grid, "P6": share["default"], "worst_cell_share": share,
                       "cells_certified_all_agree": certified, "cells": len(grid)}


def run(members, *, anchors: int, per_task: int, tokens: int, etas, steps_list, questions: int, commit: str,
        previous: dict | None = None, progress=None) -> dict:
    """P6 over the grid ``etas`` x ``steps_list``, merged with ``previous``'s cells for the settings this run shares."""
    prompts = [r for t in TASKS for r in build_prompts(t, limit=per_task)]
    log(f"agreement: {len(prompts)} prompts, {tokens} tokens, η {list(etas)} x T {list(steps_list)}, both orders")
    grid = agreement_grid(members, prompts, anchors=anchors, etas=etas, steps_list=steps_list, tokens=tokens,
                          variants={"topk256": {"topk": 256}}, progress=progress)
    settings = {"anchors": anchors, "prompts": len(prompts), "tokens": tokens}
    grid = merged([c | {"commit": commit} for c in grid], previous, settings)
    return summarised(grid, settings) | {"arc_c_accuracy": arc_accuracy(members, anchors, questions)}
