"""Tests of deepen.eval.metrics on hand-checked examples."""

from __future__ import annotations

import math

import pytest

from deepen.eval.metrics import (
    choice_correct,
    exact_match,
    extract_choice,
    gsm8k_correct,
    last_number,
    mean_percent,
    normalize_answer,
)
from deepen.eval.tasks import get_task
from deepen.pipeline.score import score_predictions


def score_row(task: str, text: str, answers: list[str], choices=()) -> float:
    """One row scored with the metric of ``task`` (the free output: a multiple-choice row reads its letter)."""
    return get_task(task).metric.row(text, answers, list(choices))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The Beatles", "beatles"),
        ("  A  Tale of Two   Cities! ", "tale of two cities"),
        ("U.S.A.", "usa"),
        ("an apple, the end", "apple end"),
        ("Theatre", "theatre"),  # "the" only as a whole word
        ("", ""),
    ],
)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


def test_exact_match():
    assert exact_match("The Beatles", ["beatles"]) == 1.0
    assert exact_match(" Sunset Boulevard\nQuestion: next", ["Sunset Blvd", "Sunset Boulevard"]) == 1.0
    assert exact_match("Paris, France", ["Paris"]) == 0.0
    assert exact_match("paris.", "Paris") == 1.0  # a single alias string
    assert exact_match("\nParis", ["Paris"]) == 0.0  # empty first line: nothing answered
    with pytest.raises(ValueError):
        exact_match("x", [])


@pytest.mark.parametrize(
    "text, expected",
    [
        ("so 1,234.5 apples.", "1234.5"),
        ("The answer is 42.", "42"),
        ("Therefore, the answer is 18", "18"),
        ("it costs $1,000,000 in total", "1000000"),
        ("the change is -5 degrees", "-5"),
        ("10-2 = 8", "8"),
        ("from 3 to 7-3", "3"),  # "-" glued to a digit is a minus operator, not a sign
        ("18.0", "18.0"),
        ("0.5 or .25", ".25"),
        ("items 1, 2, 3", "3"),
        ("the total is 1,00,000 rupees", "100000"),  # Indian grouping: one number
        ("typed as 1,2345", "12345"),  # a slip in the grouping: still one number, not 2345
        ("he paid 18, then left", "18"),
        ("no numbers here", None),
        ("", None),
    ],
)
def test_last_number(text, expected):
    assert last_number(text) == expected


def test_gsm8k_correct():
    assert gsm8k_correct(" She makes 9 * 2 = $18.\nThe answer is 18", "18") == 1.0
    assert gsm8k_correct("The answer is 18.0", "18") == 1.0  # compared as numbers
    assert gsm8k_correct("The answer is 1,000", 1000) == 1.0
    assert gsm8k_correct("The answer is 17", "Janet sells 9 eggs.\nTherefore, the answer is 18") == 0.0
    assert gsm8k_correct("9 * 2 = 18\nThe answer is 18", "Janet sells 9 eggs.\nTherefore, the answer is 18") == 1.0
    assert gsm8k_correct("I don't know", "18") == 0.0
    assert gsm8k_correct("The answer is -3", "-3") == 1.0
    with pytest.raises(ValueError):
        gsm8k_correct("18", "no number")


def test_choices():
    assert extract_choice(" B", ["A", "B", "C", "D"]) == "B"
    assert extract_choice("C. because", "ABCD") == "C"
    assert extract_choice(" E", ["A", "B", "C", "D"]) is None
    assert extract_choice(" The answer is A", ["A", "B"]) == "A"  # after a lead-in
    assert extract_choice("Answer: B", "ABCD") == "B"
    assert extract_choice("(B) the moon", "ABCD") == "B"
    assert extract_choice("Because it is", "ABCD") is None  # the B of a word is not an answer
    assert extract_choice("A cat sat", "ABCD") == "A"  # a standalone A reads as the option (documented)
    assert extract_choice("   ", "AB") is None
    assert choice_correct("B", "B") == 1.0
    assert choice_correct(" B", "B") == 1.0
    assert choice_correct("A", "B") == 0.0
    assert choice_correct(None, "B") == 0.0


def test_score_row_dispatch():
    assert score_row("mmlu", " D", ["D"]) == 1.0
    # a restricted decoder's pick wins: the paper's score of a multiple-choice row is the option it chose
    row = score_predictions("mmlu", [{"id": "q", "answers": ["C"], "choices": list("ABCD")}],
                            [{"id": "q", "text": " D", "choice": "C", "token_ids": [1]}]).to_pylist()[0]
    assert row["correct"] == 1.0 and row["correct_free"] == 0.0
    assert score_row("piqa", " C", ["A"], choices=["A", "B"]) == 0.0
    assert score_row("arc_c", "B", ["B"]) == 1.0
    assert score_row("gsm8k", "3 + 4 = 7\nThe answer is 7", ["7"]) == 1.0
    assert score_row("triviaqa", " The Beatles\n", ["Beatles", "Fab Four"]) == 1.0
    assert score_row("nq", " December 1972", ["14 December 1972 UTC", "December 1972"]) == 1.0
    assert score_row("nq", " 1972", ["December 1972"]) == 0.0
    with pytest.raises(ValueError, match="unknown task"):
        score_row("squad", "x", ["x"])


def test_mean_percent():
    assert mean_percent([1.0, 0.0, 1.0, 1.0]) == 75.0
    assert mean_percent(x for x in [1.0]) == 100.0
    assert math.isnan(mean_percent([]))  # no rows, no score (not 0)
