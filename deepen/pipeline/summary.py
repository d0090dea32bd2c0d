"""The summary: a Table-1-style table of every method on every task, with how certain each number is.

Per (method, task): the score with its 95% bootstrap interval over questions, the number of questions it rests on,
the difference to the best member alone on the same questions (paired bootstrap interval and McNemar's exact test,
``deepen.eval.stats``), latency, generated tokens and the share of generated tokens the members decided together
(GaC's gate, SAFE's checks and DeePEn fast mode's skip rule all decide that). Written as Parquet (every number) and
Markdown (the tables a reader looks at), with the published numbers beside ours where the config gives them.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import pyarrow as pa

from deepen.eval.stats import mcnemar_p, paired_delta, score_interval
from deepen.eval.tasks import TASKS
from deepen.pipeline.io import read_json, read_table, write_table, write_text
from deepen.pipeline.schemas import SUMMARY_SCHEMA
from deepen.pipeline.score import task_score


def task_title(task: str) -> str:
    return TASKS[task].title if task in TASKS else task


def load_published(path: str | os.PathLike) -> dict[tuple[str, str], dict[str, float]]:
    """Published Table 1 (``setting,method,<task titles>``, '#' comments) -> {(setting, method): {task: score}}."""
    lines = [line for line in Path(path).read_text().splitlines() if line.strip() and not line.startswith("#")]
    out = {}
    for rec in csv.DictReader(lines):
        key = (rec.pop("setting"), rec.pop("method"))
        out[key] = {name: float(rec[task.title]) for name, task in TASKS.items() if rec.get(task.title, "").strip()}
    return out


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _row(e: dict, table: pa.Table, published: dict | None) -> dict:
    correct = table["correct"].to_pylist()
    corpus = (table.schema.metadata or {}).get(b"score") is not None
    interval = None if corpus else score_interval([c or 0.0 for c in correct])
    tokens, together = table["n_tokens"].to_pylist(), table["ensembled"].to_pylist()
    counted = [(n, k) for n, k in zip(tokens, together) if n is not None and k is not None]
    pub = published.get(tuple(e["published_key"]), {}).get(e["task"]) if published and e.get("published_key") \
        else None
    acc = task_score(table)
    return {
        "method": e["method"], "row": e["row"], "kind": e["kind"], "family": e.get("family", e["kind"]),
        "task": e["task"], "n": table.num_rows, "acc": acc, "acc_lo": interval and interval.lo,
        "acc_hi": interval and interval.hi, "acc_free": task_score(table, "correct_free"),
        "seconds": _mean(table["seconds"].to_pylist()), "tokens": _mean(tokens),
        "ensembled": 100.0 * sum(k for _, k in counted) / max(sum(n for n, _ in counted), 1) if counted else None,
        "published": pub, "ours_minus_published": None if pub is None else acc - pub,
        "eta_dev": read_json(e["tuning"])["eta"] if e.get("tuning") else None,
        "_scores": dict(zip(table["id"].to_pylist(), correct)), "_corpus": corpus,
    }


def _add_deltas(rows: list[dict]) -> None:
    """Each row's paired difference to the best single member of its task (same questions)."""
    best = {}
    for r in rows:
        if r["kind"] == "single" and (r["task"] not in best or r["acc"] > best[r["task"]]["acc"]):
            best[r["task"]] = r
    for r in rows:
        ref = best.get(r["task"])
        if ref is None:
            continue
        r["best_single"], r["delta"] = ref["row"], r["acc"] - ref["acc"]
        ids = [i for i in ref["_scores"] if i in r["_scores"]]
        if r["_corpus"] or not ids:
            continue
        a, b = [ref["_scores"][i] or 0.0 for i in ids], [r["_scores"][i] or 0.0 for i in ids]
        delta = paired_delta(a, b)
        r.update(delta_lo=delta.lo, delta_hi=delta.hi, delta_p=mcnemar_p(a, b), significant=delta.excludes_zero)


def summarise(entries: list[dict], published: dict | None = None) -> pa.Table:
    """One summary row per (method, task).

    ``entries``: dicts with method, row (the Table 1 row label), kind ('single', 'ensemble', 'combine'), family, task,
    published_key ((setting, method) in the published table, or None) and either ``scores`` (a per-row score table)
    or ``path``. A task's score is `task_score` (translation: the corpus BLEU stored with the per-row scores; no
    interval is computed for a corpus-level score)."""
    rows = [_row(e, e["scores"] if "scores" in e else read_table(e["path"]), published) for e in entries]
    _add_deltas(rows)
    return pa.Table.from_pylist([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows],
                                schema=SUMMARY_SCHEMA)


def _fmt(x, signed: bool = False, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def _score_cell(r: dict) -> str:
    if r["acc_lo"] is None:
        return _fmt(r["acc"])
    return f"{_fmt(r['acc'])} [{_fmt(r['acc_lo'])}, {_fmt(r['acc_hi'])}]"


def _delta_cell(r: dict) -> str:
    if r["kind"] == "single" or r["delta"] is None:
        return ""
    if r["delta_lo"] is None:
        return _fmt(r["delta"], True)
    text = f"{_fmt(r['delta'], True)} [{_fmt(r['delta_lo'], True)}, {_fmt(r['delta_hi'], True)}] p={r['delta_p']:.2g}"
    return f"**{text}**" if r["significant"] else text


def _cost_cell(r: dict) -> str:
    ensembled = "" if r["ensembled"] is None or r["kind"] == "single" else f" · {_fmt(r['ensembled'], digits=0)}% ens."
    return f"{_fmt(r['seconds'], digits=2)} s · {_fmt(r['tokens'])} tok{ensembled}"


def summary_markdown(table: pa.Table, title: str = "DeePEn results") -> str:
    """Table 1 style: rows = methods, columns = tasks; scores, differences to the best member, the free-letter
    reading, cost, and the paper's numbers."""
    recs = table.to_pylist()
    tasks = [t for t in TASKS if any(r["task"] == t for r in recs)]
    rows = list(dict.fromkeys(r["row"] for r in sorted(recs, key=lambda r: r["kind"] != "single")))
    cell = {(r["row"], r["task"]): r for r in recs}
    n = {t: max(r["n"] for r in recs if r["task"] == t) for t in tasks}

    def grid(fn, which=rows) -> list[str]:
        lines = ["| Method | " + " | ".join(f"{task_title(t)} (n={n[t]})" for t in tasks) + " |",
                 "|---|" + "---:|" * len(tasks)]
        for row in which:
            lines.append(f"| {row} | " + " | ".join(fn(cell[(row, t)]) if (row, t) in cell else "" for t in tasks)
                         + " |")
        return lines

    out = [f"# {title}", "",
           "Scores in percent: accuracy (MMLU, ARC-C, PIQA: the option that scores highest among the options; GSM8K: "
           "the last number), exact match (TriviaQA, NQ) or corpus BLEU (translation). In brackets: the 95% "
           "bootstrap interval over the n questions of the task (2,000 seeded resamples). A difference smaller than "
           "these intervals is not evidence of anything.", ""]
    out += grid(_score_cell)
    ensembles = [row for row in rows if any(c["row"] == row and c["kind"] != "single" for c in recs)]
    if ensembles:
        out += ["", "## Against the best member alone", "",
                "Points gained over the best member alone on the same questions (which member: the single row with "
                "the highest score on that task), with the 95% paired bootstrap interval and McNemar's exact p; "
                "**bold**: the interval excludes 0.", ""]
        out += grid(_delta_cell, ensembles)
    mc = [t for t in tasks if TASKS[t].multiple_choice]
    if mc:
        out += ["", "## Multiple choice: unrestricted greedy token", "",
                "Accuracy when the answer is the letter the unrestricted greedy output gives.", ""]
        out += grid(lambda r: _fmt(r["acc_free"]) if r["task"] in mc else "")
    out += ["", "## Cost", "", "Mean seconds per question (wall time of its batch / batch rows), mean generated "
            "tokens, and the share of generated tokens the members decided together (the rest: the main model "
            "alone, by the method's own rule).", ""]
    out += grid(_cost_cell)
    tuned = [row for row in rows if any(c["row"] == row and c["eta_dev"] is not None for c in recs)]
    if tuned:
        out += ["", "## η chosen on the dev split", "", "The η each tuned method decoded the test questions with: the "
                "best dev score among the ensemble's tune_eta (results/tuning/ holds every η's dev score).", ""]
        out += grid(lambda r: _fmt(r["eta_dev"], digits=2), tuned)
    if any(r["published"] is not None for r in recs):
        out += ["", "## Against the paper", "", "Published (Table 1) and ours minus published.", ""]
        out += grid(lambda r: "" if r["published"] is None else
                    f"{_fmt(r['published'], digits=2)} ({_fmt(r['ours_minus_published'], True, 2)})")
    return "\n".join(out) + "\n"


def write_summary(entries: list[dict], parquet_out: str, markdown_out: str, published_path: str | None = None,
                  title: str = "DeePEn results") -> pa.Table:
    published = load_published(published_path) if published_path else None
    table = summarise(entries, published)
    write_table(table, parquet_out)
    write_text(summary_markdown(table, title), markdown_out)
    return table
