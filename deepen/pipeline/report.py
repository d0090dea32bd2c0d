"""Reports: the Table-1-style summary (Parquet + Markdown), its plots, and the studies' curves."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display
import matplotlib.pyplot as plt  # noqa: E402
import pyarrow as pa  # noqa: E402

from deepen.eval.tasks import TASKS  # noqa: E402
from deepen.files import atomic_path  # noqa: E402
from deepen.pipeline.io import read_table, write_table, write_text  # noqa: E402
from deepen.pipeline.schemas import SUMMARY_SCHEMA  # noqa: E402
from deepen.pipeline.score import task_score  # noqa: E402


def task_title(task: str) -> str:
    return TASKS[task].title if task in TASKS else task


def save_figure(fig, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def load_published(path: str | os.PathLike) -> dict[tuple[str, str], dict[str, float]]:
    """Published Table 1 (``setting,method,<task titles>``, '#' comments) -> {(setting, method): {task: score}}."""
    lines = [line for line in Path(path).read_text().splitlines() if line.strip() and not line.startswith("#")]
    out = {}
    for rec in csv.DictReader(lines):
        key = (rec.pop("setting"), rec.pop("method"))
        out[key] = {name: float(rec[task.title]) for name, task in TASKS.items() if rec.get(task.title, "").strip()}
    return out


def summarise(entries: list[dict], published: dict | None = None) -> pa.Table:
    """One summary row per (method, task).

    ``entries``: dicts with method, row (the Table 1 row label), kind ('single' or 'ensemble'), task, published_key
    ((setting, method) in the published table, or None) and either ``scores`` (a per-row score table) or ``path``.
    Delta is against the best single member on the same task. A task's score is `task_score` (translation: the
    corpus BLEU stored with the per-row scores, not their mean).
    """
    rows = []
    for e in entries:
        table = e["scores"] if "scores" in e else read_table(e["path"])
        secs = [s for s in table["seconds"].to_pylist() if s is not None]
        toks = table["n_tokens"].to_pylist()
        pub = None
        if published and e.get("published_key"):
            pub = published.get(tuple(e["published_key"]), {}).get(e["task"])
        acc = task_score(table)
        rows.append({
            "method": e["method"], "row": e["row"], "kind": e["kind"], "task": e["task"], "n": table.num_rows,
            "acc": acc, "acc_free": task_score(table, "correct_free"), "delta": None,
            "seconds": sum(secs) / len(secs) if secs else None, "tokens": sum(toks) / len(toks) if toks else None,
            "published": pub, "ours_minus_published": None if pub is None else acc - pub,
        })
    best = {}
    for r in rows:
        if r["kind"] == "single":
            best[r["task"]] = max(best.get(r["task"], -math.inf), r["acc"])
    for r in rows:
        if r["task"] in best:
            r["delta"] = r["acc"] - best[r["task"]]
    return pa.Table.from_pylist(rows, schema=SUMMARY_SCHEMA)


def _fmt(x, signed: bool = False, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def summary_markdown(table: pa.Table, title: str = "DeePEn results") -> str:
    """Table 1 style: rows = methods, columns = tasks ("acc (Δ vs best single)"), then latency, free accuracy, paper."""
    recs = table.to_pylist()
    tasks = [t for t in TASKS if any(r["task"] == t for r in recs)]
    rows = list(dict.fromkeys(r["row"] for r in sorted(recs, key=lambda r: r["kind"] != "single")))
    cell = {(r["row"], r["task"]): r for r in recs}
    head = "| Method | " + " | ".join(task_title(t) for t in tasks) + " |"
    rule = "|---|" + "---:|" * len(tasks)

    def grid(fn) -> list[str]:
        lines = [head, rule]
        for row in rows:
            vals = [fn(cell[(row, t)]) if (row, t) in cell else "" for t in tasks]
            lines.append(f"| {row} | " + " | ".join(vals) + " |")
        return lines

    out = [f"# {title}", "",
           "Scores in percent: accuracy (MMLU, ARC-C, PIQA: the option letter that scores highest among the options "
           "after fusion; GSM8K: last number), exact match (TriviaQA, NQ) or corpus BLEU (translation, sacreBLEU). "
           "Δ: against the best single member on the same task.", ""]
    out += grid(lambda r: f"{_fmt(r['acc'])}" + ("" if r["kind"] == "single" else f" ({_fmt(r['delta'], True)})"))
    n = {t: max(r["n"] for r in recs if r["task"] == t) for t in tasks}
    out += ["", "Questions per task: " + ", ".join(f"{task_title(t)} {n[t]}" for t in tasks), ""]
    mc = [t for t in tasks if t in ("mmlu", "arc_c", "piqa")]
    if mc:
        out += ["## Multiple choice: unrestricted greedy token", "",
                "Accuracy when the answer is the letter the unrestricted greedy output starts with.", ""]
        out += grid(lambda r: _fmt(r["acc_free"]) if r["task"] in mc else "")
        out.append("")
    out += ["## Latency and length", "", "Mean seconds per question (wall time of its batch / batch rows) and mean "
            "generated tokens.", ""]
    out += grid(lambda r: f"{_fmt(r['seconds'], digits=3)} s / {_fmt(r['tokens'], digits=1)} tok")
    if any(r["published"] is not None for r in recs):
        out += ["", "## Against the paper", "", "Published (Table 1) and ours minus published.", ""]
        out += grid(lambda r: "" if r["published"] is None else
                    f"{_fmt(r['published'])} ({_fmt(r['ours_minus_published'], True)})")
    return "\n".join(out) + "\n"


def write_summary(entries: list[dict], parquet_out: str, markdown_out: str, published_path: str | None = None,
                  title: str = "DeePEn results") -> pa.Table:
    published = load_published(published_path) if published_path else None
    table = summarise(entries, published)
    write_table(table, parquet_out)
    write_text(summary_markdown(table, title), markdown_out)
    return table


def plots(summary_path: str, accuracy_png: str, gain_png: str) -> None:
    """Accuracy per method per task (grouped bars) and ensemble gain over the best single member."""
    recs = read_table(summary_path).to_pylist()
    tasks = [t for t in TASKS if any(r["task"] == t for r in recs)]
    rows = list(dict.fromkeys(r["row"] for r in sorted(recs, key=lambda r: r["kind"] != "single")))
    cell = {(r["row"], r["task"]): r for r in recs}

    def bars(ax, rows_, value):
        width = 0.8 / max(len(rows_), 1)
        for i, row in enumerate(rows_):
            xs = [j + i * width for j, t in enumerate(tasks) if (row, t) in cell]
            ys = [value(cell[(row, t)]) for t in tasks if (row, t) in cell]
            ax.bar(xs, ys, width, label=row)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(tasks))], [task_title(t) for t in tasks])
        ax.legend(fontsize=7)

    for path, rows_, value, ylabel, title in [
        (accuracy_png, rows, lambda r: r["acc"], "score (%)", "Accuracy / EM per method and task"),
        (gain_png, [r for r in rows if any(c["row"] == r and c["kind"] != "single" for c in recs)],
         lambda r: r["delta"] or 0.0, "Δ vs best single (points)", "Ensemble gain over the best single member"),
    ]:
        fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(tasks)), 4))
        bars(ax, rows_, value)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.axhline(0, color="black", linewidth=0.5)
        fig.tight_layout()
        save_figure(fig, path)


def curves(rows: list[dict], x: str, xlabel: str, title: str, png_out: str, annotate: str | None = None) -> None:
    """Two panels, one line per task: score and mean latency per question against ``x``."""
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig, (acc_ax, sec_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for task in tasks:
        pts = [r for r in rows if r["task"] == task]
        xs = [r[x] for r in pts]
        line, = acc_ax.plot(xs, [r["acc"] for r in pts], marker="o", label=task_title(task))
        sec_ax.plot(xs, [r["seconds"] if r["seconds"] is not None else math.nan for r in pts], marker="o",
                    color=line.get_color(), label=task_title(task))
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
    save_figure(fig, png_out)
