"""Studies around Table 1: scaling with the number of members, and sweeps of η and T.

**Scaling** (the paper's multi-model figure). For each task, the pool's members are ranked by their dev accuracy
alone (the dev decodes the pipeline runs anyway; ties keep the config order), and ensemble k (k = 1..K) holds the
first k of that ranking, the best as main model. k = 1 is the best member alone (its test predictions are reused);
k >= 2 are DeePEn ensembles whose anchors, relative spaces and decodes read the ranking file, so the workflow's DAG is
fixed before any job runs (a dry run lists every job) while the membership follows the dev scores.

**Sweeps**. One configured ensemble, decoded again with each η (at its own T) and each T (at its own η); the point
equal to the ensemble's own settings is its ordinary method, reused. Plots show accuracy and mean latency per
question against η and T.

Everything here reads and writes the pipeline's files (``deepen.pipeline``); the Snakemake rules only call it.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pyarrow as pa

from deepen.errors import DeepenError

__all__ = ["rank_members", "ranked_members", "scaling_anchors", "scaling_relative", "scaling_results",
           "sweep_results", "check_study_config", "study_dev_tasks"]


def _log(message: str) -> None:
    print(f"[deepen] {message}", file=sys.stderr, flush=True)


def _accuracy(path: str | os.PathLike) -> float:
    """The task score of a per-row score file, in percent (corpus BLEU for translation: `pipeline.task_score`)."""
    from deepen.pipeline import read_table, task_score

    return task_score(read_table(path))


def _mean_of(table: pa.Table, column: str) -> float | None:
    values = [v for v in table[column].to_pylist() if v is not None]
    return sum(values) / len(values) if values else None


# -- ranking ---------------------------------------------------------------------------------------------------------


def rank_members(dev_score_paths: list[str], names: list[str], out: str | os.PathLike) -> list[str]:
    """Order the pool by dev accuracy (descending; ties keep the given order) and write the ranking JSON.

    The JSON holds ``members`` (ranked), ``dev_accuracy`` (percent, same order), ``config_order`` and whether the two
    orders agree; a disagreement is also logged.
    """
    from deepen.pipeline import write_json

    if len(dev_score_paths) != len(names):
        raise DeepenError(f"{len(dev_score_paths)} dev score files for {len(names)} members")
    accs = [_accuracy(p) for p in dev_score_paths]
    accs = [0.0 if math.isnan(a) else a for a in accs]
    order = sorted(range(len(names)), key=lambda i: (-accs[i], i))
    ranked = [names[i] for i in order]
    agrees = ranked == list(names)
    write_json({"members": ranked, "dev_accuracy": [accs[i] for i in order], "config_order": list(names),
                "agrees_with_config": agrees,
                "rule": "dev accuracy of each member alone, descending; ties keep the config order"}, out)
    _log("ranking by dev accuracy: " + ", ".join(f"{names[i]} {accs[i]:.1f}" for i in order))
    if not agrees:
        _log(f"note: the dev ranking differs from the config order ({', '.join(names)})")
    return ranked


def read_ranking(path: str | os.PathLike) -> dict:
    return json.loads(Path(path).read_text())


def ranked_members(ranking_path: str | os.PathLike, pool: list[str], k: int) -> tuple[list[int], list[float]]:
    """(indices into ``pool`` of the first k ranked members, their DeePEn-Adapt weights: normalised dev accuracies)."""
    from deepen.pipeline import adapt_weights

    ranking = read_ranking(ranking_path)
    members = ranking["members"]
    if sorted(members) != sorted(pool):
        raise DeepenError(f"{ranking_path} ranks {members}, not the scaling pool {pool}; delete it and rerun")
    if not 1 <= k <= len(members):
        raise DeepenError(f"k = {k} is not in 1..{len(members)}")
    return [pool.index(m) for m in members[:k]], adapt_weights(ranking["dev_accuracy"][:k])


def scaling_anchors(ranking_path: str, vocab_paths: list[str], pool: list[str], k: int, out: str,
                    min_anchors: int = 1000, max_anchors: int | None = None) -> int:
    """Anchors of the scaling ensemble of the first k ranked members (main first)."""
    from deepen.pipeline import anchors_table

    pick, _ = ranked_members(ranking_path, pool, k)
    return anchors_table([vocab_paths[i] for i in pick], [pool[i] for i in pick], out, min_anchors=min_anchors,
                         max_anchors=max_anchors)


def scaling_relative(ranking_path: str, model_dirs: list[str], meta_paths: list[str], pool: list[str], k: int,
                     rank: int, anchors_path: str, out: str) -> int:
    """Relative space of the member at position ``rank`` of the scaling ensemble of the first k ranked members."""
    from deepen.pipeline import relative_table

    pick, _ = ranked_members(ranking_path, pool, k)
    if not 0 <= rank < k:
        raise DeepenError(f"rank {rank} is not in 0..{k - 1}")
    i = pick[rank]
    _log(f"scaling k={k}: member {rank} is {pool[i]}")
    return relative_table(model_dirs[i], meta_paths[i], anchors_path, rank, out)


# -- tables and plots ------------------------------------------------------------------------------------------------

SCALING_SCHEMA = pa.schema([
    ("task", pa.string()), ("k", pa.int64()), ("members", pa.string()), ("added", pa.string()), ("n", pa.int64()),
    ("acc", pa.float64()), ("seconds", pa.float64()), ("tokens", pa.float64()), ("dev_acc_added", pa.float64()),
])
SWEEP_SCHEMA = pa.schema([
    ("param", pa.string()), ("value", pa.float64()), ("task", pa.string()), ("method", pa.string()),
    ("n", pa.int64()), ("acc", pa.float64()), ("seconds", pa.float64()), ("tokens", pa.float64()),
])


def _point(path: str) -> dict:
    from deepen.pipeline import read_table, task_score

    table = read_table(path)
    return {"n": table.num_rows, "acc": task_score(table), "seconds": _mean_of(table, "seconds"),
            "tokens": _mean_of(table, "n_tokens")}


def scaling_results(tasks: dict[str, dict], parquet_out: str, markdown_out: str, png_out: str) -> pa.Table:
    """Accuracy and latency against the number of members.

    ``tasks``: task -> {"ranking": ranking JSON, "singles": {member: test scores}, "ensembles": {k: test scores}}
    (k >= 2). k = 1 reads the top-ranked member's own scores.
    """
    from deepen.pipeline import TASK_TITLES, atomic_path, write_table

    rows = []
    for task, spec in tasks.items():
        ranking = read_ranking(spec["ranking"])
        members, dev = ranking["members"], ranking["dev_accuracy"]
        paths = {1: spec["singles"][members[0]], **{int(k): p for k, p in spec["ensembles"].items()}}
        for k in sorted(paths):
            rows.append({"task": task, "k": k, "members": "+".join(members[:k]), "added": members[k - 1],
                         "dev_acc_added": dev[k - 1], **_point(paths[k])})
    table = pa.Table.from_pylist(rows, schema=SCALING_SCHEMA)
    write_table(table, parquet_out)
    lines = ["# Scaling with the number of members", "",
             "Ensemble k = the first k members by dev accuracy (main model first); k = 1 is the best member alone. "
             "Score in percent; latency in seconds per question.", "",
             "| Task | k | Members | Added (dev acc) | Score | Latency |", "|---|---:|---|---|---:|---:|"]
    for r in rows:
        lines.append(f"| {TASK_TITLES.get(r['task'], r['task'])} | {r['k']} | {r['members']} | {r['added']} "
                     f"({r['dev_acc_added']:.1f}) | {r['acc']:.2f} | {_fmt(r['seconds'])} |")
    with atomic_path(markdown_out) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")
    _curves(rows, "k", "members in the ensemble (k)", "Accuracy and latency vs number of members", png_out,
            annotate="added")
    return table


def sweep_results(param: str, points: list[dict], parquet_out: str, png_out: str) -> pa.Table:
    """Accuracy and latency against η or T. ``points``: dicts task, value, method, path (test scores)."""
    from deepen.pipeline import write_table

    rows = [{"param": param, "value": float(p["value"]), "task": p["task"], "method": p["method"], **_point(p["path"])}
            for p in sorted(points, key=lambda p: (p["task"], float(p["value"])))]
    table = pa.Table.from_pylist(rows, schema=SWEEP_SCHEMA)
    write_table(table, parquet_out)
    label = {"eta": "relative ensemble learning rate η", "steps": "search steps T"}.get(param, param)
    _curves(rows, "value", label, f"Accuracy and latency vs {label}", png_out)
    return table


def _fmt(x) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _curves(rows: list[dict], x: str, xlabel: str, title: str, png_out: str, annotate: str | None = None) -> None:
    """Two panels, one line per task: score and mean latency per question against ``x``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deepen.pipeline import TASK_TITLES, atomic_path

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig, (acc_ax, sec_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for task in tasks:
        pts = [r for r in rows if r["task"] == task]
        xs = [r[x] for r in pts]
        line, = acc_ax.plot(xs, [r["acc"] for r in pts], marker="o", label=TASK_TITLES.get(task, task))
        sec_ax.plot(xs, [r["seconds"] if r["seconds"] is not None else math.nan for r in pts], marker="o",
                    color=line.get_color(), label=TASK_TITLES.get(task, task))
        if annotate:
            for r in pts:
                acc_ax.annotate(r[annotate], (r[x], r["acc"]), textcoords="offset points", xytext=(3, 3), fontsize=7)
    if x == "k":
        for ax in (acc_ax, sec_ax):
            ax.set_xticks(sorted({r["k"] for r in rows}))
    acc_ax.set_ylabel("score (%)")
    sec_ax.set_ylabel("seconds per question")
    for ax in (acc_ax, sec_ax):
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(png_out) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


# -- config ----------------------------------------------------------------------------------------------------------

RESERVED_ENSEMBLE_NAMES = ("scaling",)


def study_dev_tasks(config: dict) -> set[str]:
    """Tasks whose dev split the studies need: scaling ranks members on dev; an Adapt sweep weights them by it."""
    out = set((config.get("scaling") or {}).get("tasks") or [])
    sweeps = config.get("sweeps") or {}
    if sweeps.get("variant", "avg") == "adapt":
        out |= set(sweeps.get("tasks") or [])
    return out


def check_study_config(config: dict) -> None:
    """Semantic checks of ``combine`` (per ensemble), ``scaling`` and ``sweeps``; raises DeepenError with one line."""
    from deepen.combine import RULES

    models, tasks = config.get("models") or {}, config.get("tasks") or {}
    ensembles = {e["name"]: e for e in config.get("ensembles") or []}
    for name, ens in ensembles.items():
        if name in RESERVED_ENSEMBLE_NAMES:
            raise DeepenError(f"config: ensemble name {name!r} is reserved")
        variants = [v if isinstance(v, str) else v["name"] for v in ens.get("variants", ["avg", "adapt"])]
        if set(variants) & set(RULES):
            raise DeepenError(f"config: ensemble {name!r}: variant names {', '.join(RULES)} are reserved")
        combine = ens.get("combine")
        if isinstance(combine, dict) and combine.get("variant") and combine["variant"] not in variants:
            raise DeepenError(f"config: ensemble {name!r}: combine variant {combine['variant']!r} is not among its "
                              f"variants ({', '.join(variants)})")
    scaling = config.get("scaling")
    if scaling:
        pool = scaling.get("members") or list(models)
        for m in pool:
            if m not in models:
                raise DeepenError(f"config: scaling member {m!r} is not among models ({', '.join(models)})")
        if len(pool) < 2 or len(set(pool)) != len(pool):
            raise DeepenError("config: scaling needs at least 2 distinct members")
        if scaling.get("max_members") is not None and scaling["max_members"] > len(pool):
            raise DeepenError(f"config: scaling max_members ({scaling['max_members']}) exceeds the {len(pool)} members")
        for t in scaling.get("tasks") or []:
            if t not in tasks:
                raise DeepenError(f"config: scaling task {t!r} is not among tasks ({', '.join(tasks)})")
    sweeps = config.get("sweeps")
    if sweeps:
        ens = ensembles.get(sweeps.get("ensemble"))
        if ens is None:
            raise DeepenError(f"config: sweeps ensemble {sweeps.get('ensemble')!r} is not among ensembles "
                              f"({', '.join(ensembles)})")
        for t in sweeps.get("tasks") or []:
            if t not in tasks:
                raise DeepenError(f"config: sweeps task {t!r} is not among tasks ({', '.join(tasks)})")
        if not (sweeps.get("eta") or sweeps.get("steps")):
            raise DeepenError("config: sweeps needs eta and/or steps values")
