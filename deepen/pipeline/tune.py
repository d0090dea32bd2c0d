"""The tune stage: a DeePEn method's η chosen on the dev split, per task, as a user would choose it.

The job loads the ensemble once, decodes the task's dev questions at each η of the ensemble's ``tune_eta``, scores
them with the task's metric and keeps the best; ties go to the η closest to the ensemble's own (fixed) η, then to
the smaller. The tuned method's test decode reads the choice (``deepen.pipeline.decode``)."""

from __future__ import annotations

from deepen.eval.task_data import read_prompts
from deepen.pipeline.decode import decode_rows, ensemble_for
from deepen.pipeline.io import write_json
from deepen.pipeline.score import score_predictions, task_score
from deepen.pipeline.shards import watch_parent
from deepen.progress import log


def choose_eta(scores: dict[float, float], fixed: float) -> float:
    """The η with the best dev score; ties: the closest to ``fixed``, then the smaller."""
    best = max(scores.values())
    return min((eta for eta, s in scores.items() if s == best), key=lambda eta: (abs(eta - fixed), eta))


def tune_job(inputs: dict, settings: dict, task: str, out: str) -> float:
    """The tune rule: dev scores at every η of ``settings["tune_eta"]`` and the chosen η, as JSON."""
    watch_parent()
    rows = read_prompts(inputs["prompts"])
    ensemble = ensemble_for(inputs, settings)
    scores = {}
    for eta in settings["tune_eta"]:
        records = decode_rows(ensemble.with_options(eta=eta), rows, settings["batch_size"])
        scores[eta] = task_score(score_predictions(task, rows, records))
        log(f"{task} dev, η {eta:g}: {scores[eta]:.2f} ({len(rows)} questions)")
    fixed = settings["options"]["eta"]
    chosen = choose_eta(scores, fixed)
    write_json({"task": task, "eta": chosen, "dev_score": {f"{eta:g}": s for eta, s in scores.items()},
                "questions": len(rows), "fixed_eta": fixed,
                "rule": "best dev score; ties: the η closest to the fixed one, then the smaller"}, out)
    return chosen
