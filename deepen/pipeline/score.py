"""The score stages: gather shards, score predictions, combine candidates (Voting / MBR), DeePEn-Adapt weights.

    gather        shards -> predictions Parquet (no wall times: byte-identical for any shard count) + timings Parquet
    score         predictions + prompts -> per-row scores Parquet (the task's metric, ``deepen.eval.metrics``)
    combine       candidates' cached predictions -> Voting / MBR predictions + timings (``deepen.eval.combine``)
    weights       members' dev scores -> DeePEn-Adapt weights JSON

DeePEn-Adapt weights. The paper weights members by their dev-set performance but gives no formula; we use normalised
dev accuracies, w_i = acc_i / sum_j acc_j (uniform when every member scores 0), computed per task.
"""

from __future__ import annotations

import math
import os

import pyarrow as pa

from deepen.errors import DeepenError
from deepen.eval.combine import combine_rows
from deepen.eval.metrics import choice_correct, mean_percent
from deepen.eval.task_data import read_prompts
from deepen.eval.tasks import get_task
from deepen.pipeline.io import read_table, with_metadata, write_json, write_table
from deepen.pipeline.shards import check_provenance, provenance
from deepen.pipeline.schemas import COMBINED_SCHEMA, PREDICTION_SCHEMA, SCORE_SCHEMA, TIMING_SCHEMA


def gather(shard_paths: list[str], predictions_out: str | os.PathLike, timings_out: str | os.PathLike) -> int:
    """Concatenate shards in order: predictions (no wall times, so identical for any shard count) and timings."""
    tables = [read_table(p) for p in shard_paths]
    table = pa.concat_tables([t.replace_schema_metadata(None) for t in tables])
    write_table(table.select(PREDICTION_SCHEMA.names).cast(PREDICTION_SCHEMA), predictions_out)
    n_tokens = pa.array([len(t) for t in table["token_ids"].to_pylist()], pa.int64())
    timings = pa.table({"id": table["id"], "seconds": table["seconds"], "n_tokens": n_tokens,
                        "ensembled": table["ensembled"]}, schema=TIMING_SCHEMA)
    write_table(timings, timings_out)
    return table.num_rows


def score_job(inputs: dict, settings: dict, predictions_out: str, timings_out: str, scores_out: str,
              task: str) -> float:
    """The score rule: check that every shard was made with this run's settings, members and prompts, gather them,
    score them."""
    expected = provenance(settings, list(inputs["metas"]), inputs["prompts"])
    for shard in inputs["shards"]:
        check_provenance(shard, expected)
    gather(list(inputs["shards"]), predictions_out, timings_out)
    return score(task, inputs["prompts"], predictions_out, timings_out, scores_out)


def score_predictions(task: str, prompts: list[dict], predictions: list[dict],
                      timings: list[dict] | None = None) -> pa.Table:
    """Per-row scores of ``predictions`` against the gold of ``prompts`` (matched by id)."""
    metric = get_task(task).metric
    by_id = {p["id"]: p for p in prompts}
    times = {t["id"]: t for t in (timings or [])}
    if set(by_id) != {p["id"] for p in predictions}:
        raise DeepenError(f"{task}: predictions and prompts hold different ids")
    records = []
    for pred in predictions:
        row = by_id[pred["id"]]
        free = metric.row(pred["text"], row["answers"], row["choices"])
        # multiple choice: the paper's score is the option picked among the options (no pick: wrong)
        correct = choice_correct(pred.get("choice"), row["answers"][0]) if metric.multiple_choice else free
        t = times.get(pred["id"], {})
        records.append({"id": pred["id"], "correct": correct, "correct_free": free, "seconds": t.get("seconds"),
                        "n_tokens": t.get("n_tokens", len(pred.get("token_ids") or [])),
                        "ensembled": t.get("ensembled")})
    return pa.Table.from_pylist(records, schema=SCORE_SCHEMA)


def score(task: str, prompts_path: str, predictions_path: str, timings_path: str | None, out: str) -> float:
    """Per-row scores to ``out``; returns the task score in percent.

    For metrics that are not a mean of rows (BLEU: corpus BLEU), the task score is computed over the whole file and
    stored in the table's metadata (``metric``, ``score``, ``score_free``, ``signature``); `task_score` reads it.
    """
    metric = get_task(task).metric
    timings = read_table(timings_path).to_pylist() if timings_path else None
    prompts = read_prompts(prompts_path)
    predictions = read_table(predictions_path).to_pylist()
    table = score_predictions(task, prompts, predictions, timings)
    if metric.corpus is not None:
        gold = {p["id"]: p["answers"] for p in prompts}
        value, signature = metric.corpus([p["text"] for p in predictions], [gold[p["id"]] for p in predictions])
        table = with_metadata(table, metric=metric.name, score=repr(value), score_free=repr(value),
                              signature=signature)
    write_table(table, out)
    return task_score(table)


def task_score(table: pa.Table, column: str = "correct") -> float:
    """The task-level score of a per-row score table, in percent: the corpus-level score stored in its metadata
    (translation: corpus BLEU), else the mean of ``column`` ('correct' or 'correct_free') over the rows."""
    key = b"score" if column == "correct" else b"score_free"
    stored = (table.schema.metadata or {}).get(key)
    return float(stored) if stored is not None else mean_percent(table[column].to_pylist())


def combine_files(task: str, rule: str, prediction_paths: list[str], timing_paths: list[str], names: list[str],
                  prompts_path: str, predictions_out: str, timings_out: str) -> int:
    """Voting / MBR (``deepen.eval.combine.combine_rows``) over cached Parquet files: writes predictions (the
    ``results/predictions`` columns plus ``source`` and ``support``) and timings; scored like any method."""
    choices = {p["id"]: p["choices"] for p in read_prompts(prompts_path)}
    candidates = [read_table(p).to_pylist() for p in prediction_paths]
    timings = [read_table(p).to_pylist() for p in timing_paths] if timing_paths else None
    preds, times = combine_rows(get_task(task).metric, rule, candidates, list(names), timings, choices)
    write_table(pa.Table.from_pylist(preds, schema=COMBINED_SCHEMA), predictions_out)
    write_table(pa.Table.from_pylist(times, schema=TIMING_SCHEMA), timings_out)
    return len(preds)


def adapt_weights(accuracies: list[float]) -> list[float]:
    """Normalised dev accuracies, w_i = acc_i / sum_j acc_j; uniform when all are 0."""
    if any(a < 0 or not math.isfinite(a) for a in accuracies):
        raise DeepenError(f"dev accuracies must be finite and >= 0, got {accuracies}")
    total = sum(accuracies)
    if total == 0:
        return [1.0 / len(accuracies)] * len(accuracies)
    return [a / total for a in accuracies]


def within_best(accuracies: list[float], margin: float = 0.1) -> list[int]:
    """UniTE's member selection: the members whose dev score is within ``margin`` (relative) of the best member's,
    in their order (always the best one). Example: [60, 56, 50] -> [0, 1] (56 >= 0.9 * 60 > 50)."""
    best = max(accuracies)
    return [i for i, a in enumerate(accuracies) if a >= (1 - margin) * best]


def dev_accuracies(score_paths: list[str]) -> list[float]:
    """Each member's dev score in percent (0 where it has none)."""
    accs = [task_score(read_table(p)) for p in score_paths]
    return [0.0 if math.isnan(a) else a for a in accs]


def dev_weights(score_paths: list[str], names: list[str], out: str) -> list[float]:
    """DeePEn-Adapt weights of one ensemble and task from its members' dev scores (members in ensemble order)."""
    accs = dev_accuracies(score_paths)
    weights = adapt_weights(accs)
    write_json({"members": list(names), "dev_accuracy": accs, "weights": weights,
                "rule": "w_i = dev_acc_i / sum_j dev_acc_j (uniform if all 0)"}, out)
    return weights
