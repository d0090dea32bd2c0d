"""Studies around Table 1: scaling with the number of members, and sweeps of η and T.

**Scaling** (the paper's multi-model figure). For each task, the pool's members are ranked by their dev accuracy
alone (the dev decodes the pipeline runs anyway; ties keep the config order), and ensemble k (k = 1..K) holds the
first k of that ranking, the best as main model. k = 1 is the best member alone (its test predictions are reused);
k >= 2 are DeePEn ensembles whose anchors, relative spaces and decodes read the ranking file, so the workflow's DAG is
fixed before any job runs (a dry run lists every job) while the membership follows the dev scores.

**Sweeps**. One configured ensemble, decoded again with each η (at its own T) and each T (at its own η); the point
equal to the ensemble's own settings is its ordinary method, reused. Plots show accuracy and mean latency per
question against η and T.

Everything here reads and writes the pipeline's files; the Snakemake rules only call it. The scaling ensembles'
anchors and relative spaces are built by ``deepen.pipeline.models`` (they load models).
"""

from __future__ import annotations

import math
import os

import pyarrow as pa

from deepen.errors import DeepenError
from deepen.pipeline.io import read_json, read_table, write_json, write_table, write_text
from deepen.eval.stats import score_interval
from deepen.pipeline.plots import curves
from deepen.pipeline.summary import task_title
from deepen.pipeline.schemas import SCALING_SCHEMA, SWEEP_SCHEMA
from deepen.pipeline.score import adapt_weights, dev_accuracies, task_score
from deepen.progress import log

def _mean_of(table: pa.Table, column: str) -> float | None:
    values = [v for v in table[column].to_pylist() if v is not None]
    return sum(values) / len(values) if values else None


# -- ranking ---------------------------------------------------------------------------------------------------------


def rank_members(dev_score_paths: list[str], names: list[str], out: str | os.PathLike) -> list[str]:
    """Order the pool by dev accuracy (descending; ties keep the given order) and write the ranking JSON.

    The JSON holds ``members`` (ranked), ``dev_accuracy`` (percent, same order), ``config_order`` and whether the two
    orders agree; a disagreement is also logged.
    """
    if len(dev_score_paths) != len(names):
        raise DeepenError(f"{len(dev_score_paths)} dev score files for {len(names)} members")
    accs = dev_accuracies(dev_score_paths)
    order = sorted(range(len(names)), key=lambda i: (-accs[i], i))
    ranked = [names[i] for i in order]
    agrees = ranked == list(names)
    write_json({"members": ranked, "dev_accuracy": [accs[i] for i in order], "config_order": list(names),
                "agrees_with_config": agrees,
                "rule": "dev accuracy of each member alone, descending; ties keep the config order"}, out)
    log("ranking by dev accuracy: " + ", ".join(f"{names[i]} {accs[i]:.1f}" for i in order))
    if not agrees:
        log(f"note: the dev ranking differs from the config order ({', '.join(names)})")
    return ranked


def read_ranking(path: str | os.PathLike) -> dict:
    return read_json(path)


def ranked_members(ranking_path: str | os.PathLike, pool: list[str], k: int) -> tuple[list[int], list[float]]:
    """(indices into ``pool`` of the first k ranked members, their DeePEn-Adapt weights: normalised dev accuracies)."""
    ranking = read_ranking(ranking_path)
    members = ranking["members"]
    if sorted(members) != sorted(pool):
        raise DeepenError(f"{ranking_path} ranks {members}, not the scaling pool {pool}; delete it and rerun")
    if not 1 <= k <= len(members):
        raise DeepenError(f"k = {k} is not in 1..{len(members)}")
    return [pool.index(m) for m in members[:k]], adapt_weights(ranking["dev_accuracy"][:k])


# -- tables and plots ------------------------------------------------------------------------------------------------

def _point(path: str) -> dict:
    table = read_table(path)
    corpus = (table.schema.metadata or {}).get(b"score") is not None
    interval = None if corpus else score_interval([c or 0.0 for c in table["correct"].to_pylist()])
    return {"n": table.num_rows, "acc": task_score(table), "acc_lo": interval and interval.lo,
            "acc_hi": interval and interval.hi, "seconds": _mean_of(table, "seconds"),
            "tokens": _mean_of(table, "n_tokens")}


def scaling_results(tasks: dict[str, dict], parquet_out: str, markdown_out: str, png_out: str) -> pa.Table:
    """Accuracy and latency against the number of members.

    ``tasks``: task -> {"ranking": ranking JSON, "singles": {member: test scores}, "ensembles": {k: test scores}}
    (k >= 2). k = 1 reads the top-ranked member's own scores.
    """
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
             "| Task | k | Members | Added (dev acc) | Score [95% interval] | Latency |",
             "|---|---:|---|---|---:|---:|"]
    for r in rows:
        interval = "" if r["acc_lo"] is None else f" [{r['acc_lo']:.1f}, {r['acc_hi']:.1f}]"
        lines.append(f"| {task_title(r['task'])} | {r['k']} | {r['members']} | {r['added']} "
                     f"({r['dev_acc_added']:.1f}) | {r['acc']:.1f}{interval} (n={r['n']}) | {_fmt(r['seconds'])} |")
    write_text("\n".join(lines) + "\n", markdown_out)
    curves(rows, "k", "members in the ensemble (k)", "Accuracy and latency vs number of members", png_out,
            annotate="added")
    return table


def sweep_results(param: str, points: list[dict], parquet_out: str, png_out: str) -> pa.Table:
    """Accuracy and latency against η or T. ``points``: dicts task, value, method, path (test scores)."""
    rows = [{"param": param, "value": float(p["value"]), "task": p["task"], "method": p["method"], **_point(p["path"])}
            for p in sorted(points, key=lambda p: (p["task"], float(p["value"])))]
    table = pa.Table.from_pylist(rows, schema=SWEEP_SCHEMA)
    write_table(table, parquet_out)
    label = {"eta": "relative ensemble learning rate η", "steps": "search steps T"}.get(param, param)
    curves(rows, "value", label, f"Accuracy and latency vs {label}", png_out)
    return table


def _fmt(x) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"
