"""Metrics of the evaluation: small pure functions on strings, and a registry saying how each task is scored.

A task names its metric (``deepen.eval.tasks``); a `Metric` says everything the pipeline needs to know about it:

- how one row is scored (``score``: 0/1, or sentence BLEU / 100 for translation);
- how a task's rows aggregate (the mean of the rows, or a corpus-level score: corpus BLEU);
- how an output's final answer is keyed for voting (``answer_key``) and which text MBR compares (``mbr_text``);
- whether the task is multiple choice (answered by the option chosen among the options).

Four metrics cover the tasks:

- ``choice`` (MMLU, ARC-C, PIQA): the predicted option label equals the gold label;
- ``gsm8k``: the last number of the output equals the gold number;
- ``em`` (TriviaQA, NQ): exact match after SQuAD normalisation, max over the gold aliases;
- ``bleu`` (translation): sacreBLEU; the task score is *corpus* BLEU, per row we keep sentence BLEU.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")

# A number: digits, possibly grouped by commas ("1,234", and also "1,00,000" or a slip such as "1,2345": the commas are
# dropped, as in lm-evaluation-harness's GSM8K extraction), with an optional decimal part; or a bare decimal (".5").
# The minus sign only counts when it is not glued to a preceding word, digit or ")", so that "10-2" reads as 10 and 2.
_NUMBER = re.compile(r"(?:(?<![\w)])-)?(?:\d[\d,]*(?:\.\d+)?|\.\d+)")
# The option an unrestricted output gives: a capital letter standing alone at its start, after an optional lead-in
# ("Answer:", "The answer is") and an opening bracket: " B", "B.", "(B)", "Answer: B"; not the B of "Because".
_LETTER = re.compile(r"^\s*(?:(?i:the\s+)?(?i:answer)(?:\s+(?i:is))?\s*[:\-]?\s*)?[(\[]?\s*([A-Z])(?![A-Za-z0-9])")


# -- string metrics ---------------------------------------------------------------------------------------------------


def normalize_answer(s: str) -> str:
    """SQuAD answer normalisation: lower case, drop punctuation, drop articles a/an/the,
    collapse whitespace (the official SQuAD v1.1 evaluation script's order of operations)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def first_line(text: str) -> str:
    """The answer part of a short-answer or translation output: its first line, stripped (generation stops at a
    newline, and anything a decoder emitted past one is not part of the answer)."""
    return text.split("\n", 1)[0].strip()


def exact_match(prediction: str, aliases: str | Sequence[str]) -> float:
    """1.0 if the prediction's first line matches any gold alias after `normalize_answer`, else 0.0."""
    if isinstance(aliases, str):
        aliases = [aliases]
    if not aliases:
        raise ValueError("exact_match needs at least one gold alias")
    pred = normalize_answer(first_line(prediction))
    return float(any(pred == normalize_answer(alias) for alias in aliases))


def token_f1(a: str, b: str) -> float:
    """SQuAD token-level F1 between two texts after `normalize_answer` (symmetric; 0.0 when either is empty)."""
    ta, tb = normalize_answer(a).split(), normalize_answer(b).split()
    common = sum((Counter(ta) & Counter(tb)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(ta), common / len(tb)
    return 2 * precision * recall / (precision + recall)


def last_number(text: str) -> str | None:
    """The last number in ``text`` as a string without its commas, or None if there is none.

    Handles grouped digits ("1,234" -> "1234"; also Indian grouping "1,00,000" -> "100000" and a slip like "1,2345"
    -> "12345": a run of digits and commas is one number), a leading minus ("-5"), decimals ("1,234.5"), a comma or
    period ending a sentence ("42." -> "42", "18," -> "18"). The digits are returned as written otherwise ("18.0"
    stays "18.0"); `gsm8k_correct` compares numerically, so "18.0" and "18" count as equal there.
    """
    matches = [m.replace(",", "") for m in _NUMBER.findall(text)]
    matches = [m for m in matches if m.strip("-")]
    return matches[-1] if matches else None


def as_decimal(number: str | None) -> Decimal | None:
    """A number string as an exact, normalised Decimal ("18.0" and "18" are equal), None when it is not one."""
    if number is None:
        return None
    try:
        return Decimal(number).normalize()
    except InvalidOperation:
        return None


def gsm8k_correct(prediction: str, gold: str | int | float) -> float:
    """1.0 if the last number of ``prediction`` equals the gold number, else 0.0.

    ``gold`` is either a number / number string ("18", 18) or a full gold solution, whose
    last number is taken ("... Therefore, the answer is 18"). Numbers are compared as
    exact decimals, so "18.0" == "18" and "1,000" == "1000".
    """
    gold_text = str(gold)
    gold_number = as_decimal(gold_text.replace(",", "").strip())
    if gold_number is None:
        gold_number = as_decimal(last_number(gold_text))
        if gold_number is None:
            raise ValueError(f"gold answer has no number: {gold_text[-80:]!r}")
    predicted = as_decimal(last_number(prediction))
    return float(predicted is not None and predicted == gold_number)


def extract_choice(text: str, choices: Iterable[str]) -> str | None:
    """The option label an unrestricted greedy output picked: a capital letter standing alone at its start, after an
    optional "Answer:" / "The answer is" and an opening bracket, if it is one of ``choices``; else None.

    " B" -> B, "B." -> B, "(B)" -> B, "Answer: B" -> B, "The answer is C" -> C; "Because" -> None (the B of a word),
    " E" -> None (not an option). Labels are single capital letters in every task here (A-D, A-B); a one-token answer
    such as " A" reads as A even where it would begin a sentence ("A cat ...")."""
    match = _LETTER.match(text)
    return match.group(1) if match and match.group(1) in set(choices) else None


def choice_correct(predicted_letter: str | None, gold_letter: str) -> float:
    """1.0 if the predicted option label equals the gold label (whitespace ignored)."""
    if predicted_letter is None:
        return 0.0
    return float(predicted_letter.strip() == gold_letter.strip())


def sentence_bleu(prediction: str, references: str | Sequence[str]) -> float:
    """sacreBLEU sentence BLEU (0-100, default 13a tokenisation, effective order) of one translation."""
    import sacrebleu

    refs = [references] if isinstance(references, str) else list(references)
    if not refs:
        raise ValueError("sentence_bleu needs at least one reference")
    return min(100.0, float(sacrebleu.sentence_bleu(first_line(prediction), refs).score))


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
    result = metric.corpus_score([first_line(p) for p in predictions], streams)
    return float(result.score), str(metric.get_signature())


def mean_percent(values: Iterable[float | None]) -> float:
    """Mean of per-row scores in percent, rows without a score left out (e.g. [1, 0, 1, 1] -> 75.0); nan if none."""
    values = [v for v in values if v is not None]
    return 100.0 * sum(values) / len(values) if values else float("nan")


# -- the registry -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """How a task is scored.

    Attributes:
        name: the metric's name ("choice", "gsm8k", "em", "bleu").
        row: (output text, gold answers, option labels) -> this row's score in [0, 1] (multiple choice: the option
            label the free output starts with).
        corpus: (outputs, gold answer lists) -> (task score in percent, signature) for a metric that is not the mean
            of its rows (BLEU); None for the mean.
        answer_key: (output text, option labels) -> the final answer as a vote key, None when the output has none.
        mbr_text: output text -> the part MBR compares.
        multiple_choice: answered by the option chosen among the options (``choice``), not by the free text.
        voting / mbr: whether Voting / MBR (the paper's Table 1 rows) are defined for it.
    """

    name: str
    row: Callable[[str, Sequence[str], Sequence[str]], float]
    answer_key: Callable[[str, Sequence[str]], Hashable | None] | None = None
    mbr_text: Callable[[str], str] = str.strip
    corpus: Callable[[Sequence[str], Sequence[Sequence[str]]], tuple[float, str]] | None = None
    multiple_choice: bool = False
    voting: bool = False
    mbr: bool = False


def _letter_key(text: str, choices: Sequence[str]) -> str | None:
    return extract_choice(text, choices or "ABCDEFGHIJ")


def _number_key(text: str, choices: Sequence[str]) -> Decimal | None:
    return as_decimal(last_number(text))


def _short_answer_key(text: str, choices: Sequence[str]) -> str | None:
    return normalize_answer(first_line(text)) or None


CHOICE = Metric("choice", row=lambda text, answers, choices: choice_correct(
    extract_choice(text, choices or string.ascii_uppercase), answers[0]),
    answer_key=_letter_key, multiple_choice=True, voting=True)
GSM8K = Metric("gsm8k", row=lambda text, answers, choices: gsm8k_correct(text, answers[0]), answer_key=_number_key,
               voting=True, mbr=True)
EXACT_MATCH = Metric("em", row=lambda text, answers, choices: exact_match(text, answers),
                     answer_key=_short_answer_key, mbr_text=first_line, mbr=True)
BLEU = Metric("bleu", row=lambda text, answers, choices: sentence_bleu(text, answers) / 100.0, mbr_text=first_line,
              corpus=corpus_bleu)

METRICS: dict[str, Metric] = {m.name: m for m in (CHOICE, GSM8K, EXACT_MATCH, BLEU)}
