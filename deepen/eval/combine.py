"""Voting and MBR over the members' answers: the paper's Table 1 rows "Voting", "MBR" and "DeePEn+Voting/MBR".

None of them decodes anything: per question they pick one of the *candidates*, the predictions the pipeline already
cached for each member alone (and, for DeePEn+Voting/MBR, for a DeePEn variant of the same ensemble).

Candidates come in *pool order*: the ensemble's members in its order (main model first, the best on dev in the
paper's setup), with the DeePEn output in front for DeePEn+Voting/MBR. Every tie goes to the candidate earliest in
pool order, so ties favour DeePEn, then the main model.

* **Voting** (MMLU, ARC-C, PIQA, GSM8K): plurality vote over the candidates' final answers: the option letter
  (multiple choice: the option chosen among the options; the free-greedy letter is voted separately) or the last
  number of the output (GSM8K, compared as a number: "18.0" = "18"). The winner is the answer with the most votes;
  among answers with equally many, the one whose first supporter comes earliest in pool order. The prediction taken
  is that first supporter's.
* **MBR** (GSM8K, TriviaQA, NQ): minimum Bayes risk selection with utility u = token-level F1 after SQuAD
  normalisation (the SQuAD F1 metric) between two candidates' answer texts (QA: the first line of the output, which is
  what exact match scores; GSM8K: the whole reasoning chain, so MBR differs from voting on the final number). The
  candidate with the highest summed utility to the other candidates wins, ties to the earliest.
* **DeePEn+Voting/MBR**: the DeePEn variant's output joins the pool in front, then voting where the task has voting,
  MBR otherwise (the paper's last Table 1 row: voting on MMLU, ARC-C, GSM8K, PIQA; MBR on TriviaQA and NQ).

A candidate without an answer (no option letter, no number, empty text, a decode error row) abstains: it neither
votes nor gives MBR utility, and is chosen only when every candidate abstains (then the first, which scores as wrong).
With two candidates both rules reduce to the earlier one (a 1-1 vote and a symmetric utility always tie).

Latency of a combined method: the candidates are decoded one after another on one device, so its seconds per
question are the candidates' summed (and its tokens those of the candidate it returns).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence

from deepen.errors import DeepenError
from deepen.eval.metrics import Metric, normalize_answer, token_f1

VOTING, MBR, DEEPEN = "voting", "mbr", "deepen"
RULES = (VOTING, MBR, DEEPEN)


def combiners(metric: Metric) -> tuple[str, ...]:
    """The combination rules defined for a task's metric: a subset of ('voting', 'mbr', 'deepen')."""
    out = [r for r, ok in ((VOTING, metric.voting), (MBR, metric.mbr)) if ok]
    return tuple(out + [DEEPEN]) if out else ()


def deepen_rule(metric: Metric) -> str:
    """The rule DeePEn+Voting/MBR uses for a metric: voting where defined, else MBR."""
    return VOTING if metric.voting else MBR


def vote(answers: Sequence[Hashable | None]) -> int | None:
    """Index of the candidate whose answer wins a plurality vote (None = abstains); None when every one abstains.

    Ties between answers go to the answer given earliest; the index returned is that answer's first supporter.
    Example: ["B", "C", "C", "B"] -> 0 (B and C have 2 votes each; B is given first).
    """
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    best = max(counts.values())
    return next(i for i, a in enumerate(answers) if a is not None and counts[a] == best)


def mbr(texts: Sequence[str | None], utility=token_f1) -> tuple[int | None, float]:
    """(index, expected utility) of the MBR choice among candidate texts (None or empty = abstains).

    Each non-abstaining candidate scores the mean of ``utility`` to the other non-abstaining ones; the highest wins,
    ties to the earliest. A lone candidate wins with utility nan; (None, nan) when every one abstains.
    """
    live = [i for i, t in enumerate(texts) if t is not None and normalize_answer(t)]
    if not live:
        return None, math.nan
    if len(live) == 1:
        return live[0], math.nan
    scores = {i: sum(utility(texts[i], texts[j]) for j in live if j != i) / (len(live) - 1) for i in live}
    best = max(scores.values())
    i = next(i for i in live if scores[i] == best)
    return i, best


# -- one combined prediction per question ----------------------------------------------------------------------------


def _abstains(pred: dict) -> bool:
    return (pred.get("stop_reason") or "").startswith("error")


def combine_rows(metric: Metric, rule: str, candidates: list[list[dict]], names: list[str],
                 timings: list[list[dict]] | None = None, choices: dict[str, Sequence[str]] | None = None
                 ) -> tuple[list[dict], list[dict]]:
    """Combined predictions and timings of one task.

    ``candidates``: one prediction list per candidate (pool order; rows id, text, token_ids, choice, stop_reason, as
    ``results/predictions``), all over the same ids; ``names``: the candidates' method names; ``timings``: their
    per-row timings (id, seconds, n_tokens) or None; ``choices``: id -> option labels (multiple choice).
    ``rule``: 'voting' or 'mbr'. Returns (predictions with two extra columns, ``source`` = the candidate whose answer is
    scored and ``support`` = its share of the votes or its expected utility; timings with summed seconds).

    Multiple choice votes twice: over the restricted ``choice`` (the paper's metric) and over the free-greedy letter of
    ``text`` (``acc_free``); the text returned is the first supporter's of the free vote.
    """
    if rule not in (VOTING, MBR):
        raise DeepenError(f"unknown combination rule {rule!r}")
    if rule == VOTING and not metric.voting or rule == MBR and not metric.mbr:
        raise DeepenError(f"{rule} is not defined for metric {metric.name!r}")
    if len(candidates) != len(names) or not candidates:
        raise DeepenError(f"{len(candidates)} candidate files for {len(names)} names")
    by_id = [{p["id"]: p for p in preds} for preds in candidates]
    ids = [p["id"] for p in candidates[0]]
    for name, rows in zip(names, by_id):
        if set(rows) != set(ids):
            raise DeepenError(f"candidate {name} holds other question ids than {names[0]}")
    times = [{t["id"]: t for t in ts} for ts in timings] if timings else None
    preds, out_times = [], []
    for qid in ids:
        pool = [rows[qid] for rows in by_id]
        labels = (choices or {}).get(qid) or ()
        if rule == VOTING:
            texts = [None if _abstains(p) else p["text"] for p in pool]
            keys = [None if t is None else metric.answer_key(t, labels) for t in texts]
            i = vote(keys)
            support = None if i is None else sum(k == keys[i] for k in keys) / len(pool)
            picked = pool[0] if i is None else pool[i]
            source = names[0 if i is None else i]
            choice = picked.get("choice")
            if metric.multiple_choice:  # the paper's metric votes on the restricted choice; `text` carries the free vote
                c = vote([None if _abstains(p) else p.get("choice") for p in pool])
                choice = None if c is None else pool[c]["choice"]
                source = names[0 if c is None else c]
                support = None if c is None else sum(p.get("choice") == choice for p in pool) / len(pool)
        else:
            i, support = mbr([None if _abstains(p) else metric.mbr_text(p["text"]) for p in pool])
            picked, source = (pool[0], names[0]) if i is None else (pool[i], names[i])
            choice = picked.get("choice")
            support = None if math.isnan(support) else support
        preds.append({"id": qid, "text": picked["text"], "token_ids": list(picked.get("token_ids") or []),
                      "choice": choice, "stop_reason": picked.get("stop_reason"), "source": source,
                      "support": support})
        if times is not None:
            secs = [t.get(qid, {}).get("seconds") for t in times]
            out_times.append({"id": qid, "seconds": None if any(s is None for s in secs) else float(sum(secs)),
                              "n_tokens": len(picked.get("token_ids") or [])})
    return preds, out_times
