"""Metrics of the DeePEn evaluation: small pure functions on strings.

Four metrics cover the tasks (see `deepen.tasks`):

- ``"choice"`` (MMLU, ARC-C, PIQA): the predicted option label equals the gold label;
- ``"gsm8k"``: the last number of the output equals the gold number;
- ``"em"`` (TriviaQA, NQ): exact match after SQuAD normalisation, max over the gold aliases;
- ``"bleu"`` (translation): sacreBLEU. The task score is *corpus* BLEU (`corpus_bleu`), which is not the mean of
  per-row scores; per row we keep sentence BLEU (`sentence_bleu`, effective n-gram order) for per-row tables.

`score_row` dispatches on a task's metric (0/1, or sentence BLEU / 100); `accuracy` turns per-row 0/1 scores into
percent.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Sequence
from decimal import Decimal, InvalidOperation

__all__ = [
    "normalize_answer",
    "exact_match",
    "last_number",
    "gsm8k_correct",
    "extract_choice",
    "choice_correct",
    "score_row",
    "accuracy",
    "translation_output",
    "sentence_bleu",
    "corpus_bleu",
]

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")

# A number: either with well-formed thousands groups ("1,234,567.5") or plain ("1234.5", ".5").
# The minus sign only counts when it is not glued to a preceding word, digit or ")", so that
# "10-2" reads as 10 and 2 rather than 10 and -2.
_NUMBER = re.compile(
    r"(?:(?<![\w)])-)?"
    r"(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"(?![\d,]*\d)"  # never stop in the middle of a digit run such as "1,2345"
)


def normalize_answer(s: str) -> str:
    """SQuAD answer normalisation: lower case, drop punctuation, drop articles a/an/the,
    collapse whitespace (the official SQuAD v1.1 evaluation script's order of operations)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def exact_match(prediction: str, aliases: str | Sequence[str]) -> float:
    """1.0 if the prediction matches any gold alias after `normalize_answer`, else 0.0.

    The prediction is first cut at its first newline and stripped: TriviaQA/NQ generations
    stop at "\\n", and anything a decoder emitted past it is not part of the answer.
    """
    if isinstance(aliases, str):
        aliases = [aliases]
    if not aliases:
        raise ValueError("exact_match needs at least one gold alias")
    pred = normalize_answer(prediction.split("\n", 1)[0].strip())
    return float(any(pred == normalize_answer(alias) for alias in aliases))


def last_number(text: str) -> str | None:
    """The last number in ``text`` as a string without thousands commas, or None if there is none.

    Handles thousands separators ("1,234" -> "1234"), a leading minus ("-5"), decimals
    ("1,234.5"), and a sentence-final period ("42." -> "42"). The digits are returned as
    written otherwise ("18.0" stays "18.0"); `gsm8k_correct` compares numerically, so
    "18.0" and "18" count as equal there.
    """
    matches = _NUMBER.findall(text)
    if not matches:
        return None
    return matches[-1].replace(",", "")


def _as_decimal(number: str) -> Decimal | None:
    try:
        return Decimal(number)
    except InvalidOperation:
        return None


def gsm8k_correct(prediction: str, gold: str | int | float) -> float:
    """1.0 if the last number of ``prediction`` equals the gold number, else 0.0.

    ``gold`` is either a number / number string ("18", 18) or a full gold solution, whose
    last number is taken ("... Therefore, the answer is 18"). Numbers are compared as
    exact decimals, so "18.0" == "18" and "1,000" == "1000".
    """
    gold_text = str(gold)
    gold_number = _as_decimal(gold_text.replace(",", "").strip())
    if gold_number is None:
        found = last_number(gold_text)
        if found is None:
            raise ValueError(f"gold answer has no number: {gold_text[-80:]!r}")
        gold_number = _as_decimal(found)
    predicted = last_number(prediction)
    if predicted is None:
        return 0.0
    return float(_as_decimal(predicted) == gold_number)


def extract_choice(text: str, choices: Iterable[str]) -> str | None:
    """The option label an unrestricted greedy output picked: its first non-space
    character if that is one of ``choices`` (e.g. " B" -> "B"), else None.

    Labels are single characters in every task here (A-D, A-B).
    """
    stripped = text.lstrip()
    if not stripped:
        return None
    first = stripped[0]
    return first if first in set(choices) else None


def choice_correct(predicted_letter: str | None, gold_letter: str) -> float:
    """1.0 if the predicted option label equals the gold label (whitespace ignored)."""
    if predicted_letter is None:
        return 0.0
    return float(predicted_letter.strip() == gold_letter.strip())


def translation_output(text: str) -> str:
    """The translation in a generated text: its first line, stripped (decoder-only members stop at a newline, and
    anything after one is not part of the sentence)."""
    return text.split("\n", 1)[0].strip()


def sentence_bleu(prediction: str, references: str | Sequence[str]) -> float:
    """sacreBLEU sentence BLEU (0-100, default 13a tokenisation, effective order) of one translation."""
    import sacrebleu

    refs = [references] if isinstance(references, str) else list(references)
    if not refs:
        raise ValueError("sentence_bleu needs at least one reference")
    return min(100.0, float(sacrebleu.sentence_bleu(translation_output(prediction), refs).score))


def corpus_bleu(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> tuple[float, str]:
    """sacreBLEU corpus BLEU (0-100, default 13a tokenisation) and its signature (for reproducibility).

    ``references[i]`` holds the references of prediction i; every row needs the same number of them.
    """
    import sacrebleu

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} reference lists")
    if not predictions:
        raise ValueError("corpus BLEU of an empty corpus is undefined")
    n_refs = {len(r) for r in references}
    if len(n_refs) != 1 or 0 in n_refs:
        raise ValueError(f"every row needs the same number (>= 1) of references, got {sorted(n_refs)}")
    streams = [list(stream) for stream in zip(*references)]
    metric = sacrebleu.BLEU()
    result = metric.corpus_score([translation_output(p) for p in predictions], streams)
    return float(result.score), str(metric.get_signature())


def score_row(
    task_name: str,
    prediction_text: str,
    answers: Sequence[str],
    choice: str | None = None,
    choices: Sequence[str] | None = None,
) -> float:
    """Score one prediction with the metric of task ``task_name``; returns 0.0 or 1.0 (BLEU: sentence BLEU / 100).

    ``answers`` is the prompt row's gold list (one letter for multiple choice, one number for
    GSM8K, the aliases for QA). For multiple-choice tasks, ``choice`` is the label picked by
    a decoder restricted to the option labels; without it the label is read off
    ``prediction_text`` with `extract_choice` over ``choices`` (default: any capital letter).
    """
    # Imported here because deepen.tasks imports this module (for last_number).
    from deepen.tasks import get_task

    metric = get_task(task_name).metric
    if metric == "choice":
        if choice is None:
            choice = extract_choice(prediction_text, choices or string.ascii_uppercase)
        return choice_correct(choice, answers[0])
    if metric == "gsm8k":
        return gsm8k_correct(prediction_text, answers[0])
    if metric == "em":
        return exact_match(prediction_text, answers)
    if metric == "bleu":
        return sentence_bleu(prediction_text, answers) / 100.0
    raise ValueError(f"task {task_name!r} has unknown metric {metric!r}")


def accuracy(values: Iterable[float]) -> float:
    """Mean of per-row scores in percent (e.g. [1, 0, 1, 1] -> 75.0)."""
    values = list(values)
    if not values:
        raise ValueError("accuracy of an empty list is undefined")
    return 100.0 * sum(values) / len(values)
