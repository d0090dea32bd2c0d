"""Figures of the summary and the studies, each number drawn with its 95% interval.

* accuracy: one panel per task, one line per method: the score and its interval (dot and whisker), coloured by method
  family (members alone, DeePEn, GaC, UniTE, SAFE, Voting / MBR), the best member's score as a dashed line;
* gain: the same layout for each ensemble method's paired difference to the best member alone, with the zero line;
* curves (studies): score with its interval, and latency, against k, η or T, one line per task; a study whose points
  cannot show an effect (all scores equal) says so on the figure.
"""

from __future__ import annotations

import math
import os

import matplotlib

matplotlib.use("Agg")  # files only: no display
import matplotlib.pyplot as plt  # noqa: E402

from deepen.eval.tasks import TASKS  # noqa: E402
from deepen.files import atomic_path  # noqa: E402
from deepen.pipeline.io import read_table  # noqa: E402
from deepen.pipeline.summary import task_title  # noqa: E402

#: One colour per method family (tab10 indices), so that no two families share one.
FAMILY_COLOURS = {"single": 7, "deepen": 0, "gac": 2, "unite": 4, "safe": 1, "voting": 5, "mbr": 6, "combine": 8}


def _colour(family: str):
    return plt.get_cmap("tab10")(FAMILY_COLOURS.get(family.split("+")[0], 9))


def save_figure(fig, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def _forest(recs: list[dict], value: str, lo: str, hi: str, xlabel: str, title: str, path: str, reference) -> None:
    tasks = [t for t in TASKS if any(r["task"] == t for r in recs)]
    rows = list(dict.fromkeys(r["row"] for r in recs))
    cols = min(3, len(tasks))
    grid = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(grid, cols, figsize=(4.2 * cols, 0.32 * len(rows) * grid + 1.2), squeeze=False,
                             sharey=True)
    for ax, task in zip(axes.flat, tasks):
        for y, row in enumerate(rows):
            r = next((c for c in recs if c["row"] == row and c["task"] == task), None)
            if r is None or r[value] is None:
                continue
            err = None if r[lo] is None else [[r[value] - r[lo]], [r[hi] - r[value]]]
            ax.errorbar(r[value], y, xerr=err, fmt="o", color=_colour(r["family"]), capsize=2, markersize=4)
        ref = reference(task)
        if ref is not None:
            ax.axvline(ref, color="black", linewidth=0.8, linestyle="--")
        n = max(c["n"] for c in recs if c["task"] == task)
        ax.set_title(f"{task_title(task)} (n={n})", fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    for ax in axes.flat[len(tasks):]:
        ax.axis("off")
    axes[0, 0].set_yticks(range(len(rows)), rows, fontsize=7)
    axes[0, 0].invert_yaxis()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def plots(summary_path: str, accuracy_png: str, gain_png: str) -> None:
    """The summary's scores (and the ensembles' differences to the best member alone) with their intervals."""
    recs = read_table(summary_path).to_pylist()

    def best(task):
        scores = [r["acc"] for r in recs if r["task"] == task and r["kind"] == "single"]
        return max(scores) if scores else None

    _forest(recs, "acc", "acc_lo", "acc_hi", "score (%), 95% interval", "Scores per method and task (dashed: the "
            "best member alone)", accuracy_png, best)
    gains = [r for r in recs if r["kind"] != "single"]
    _forest(gains or recs, "delta", "delta_lo", "delta_hi", "points vs the best member alone, 95% paired interval",
            "Ensemble gain over the best member alone", gain_png, lambda task: 0.0)


def curves(rows: list[dict], x: str, xlabel: str, title: str, png_out: str, annotate: str | None = None) -> None:
    """Two panels, one line per task: score (with its interval) and mean latency per question against ``x``."""
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig, (acc_ax, sec_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for task in tasks:
        pts = [r for r in rows if r["task"] == task]
        xs = [r[x] for r in pts]
        err = [[r["acc"] - r["acc_lo"] for r in pts], [r["acc_hi"] - r["acc"] for r in pts]]
        line = acc_ax.errorbar(xs, [r["acc"] for r in pts], yerr=err, marker="o", capsize=2,
                               label=task_title(task)).lines[0]
        sec_ax.plot(xs, [r["seconds"] if r["seconds"] is not None else math.nan for r in pts], marker="o",
                    color=line.get_color(), label=task_title(task))
        if annotate:
            for r in pts:
                acc_ax.annotate(r[annotate], (r[x], r["acc"]), textcoords="offset points", xytext=(3, 3), fontsize=7)
    flat = {round(r["acc"], 9) for r in rows}
    if len(flat) == 1:
        acc_ax.text(0.5, 0.5, f"every point scores {rows[0]['acc']:.1f}%: with n={max(r['n'] for r in rows)} "
                    "questions\nthis study cannot show an effect", transform=acc_ax.transAxes, ha="center",
                    va="center", fontsize=8, bbox={"facecolor": "white", "alpha": 0.8})
    if x == "k":
        for ax in (acc_ax, sec_ax):
            ax.set_xticks(sorted({r["k"] for r in rows}))
    acc_ax.set_ylabel("score (%), 95% interval")
    sec_ax.set_ylabel("seconds per question")
    for ax in (acc_ax, sec_ax):
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, png_out)
