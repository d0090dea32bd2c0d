"""Confidence intervals and paired differences (deepen.eval.stats), on hand-checked examples."""

import math

from deepen.eval.stats import mcnemar_p, paired_delta, score_interval


def test_score_interval_of_30_right_of_40():
    interval = score_interval([1] * 30 + [0] * 10)
    assert interval.value == 75.0
    assert (interval.lo, interval.hi) == (62.5, 87.5)
    assert score_interval([1] * 30 + [0] * 10) == interval  # seeded: the same inputs give the same interval


def test_interval_narrows_with_more_questions_and_is_nan_without_any():
    small, large = score_interval([1, 0] * 10), score_interval([1, 0] * 200)
    assert small.hi - small.lo > 3 * (large.hi - large.lo)
    assert math.isnan(score_interval([]).value)


def test_paired_delta_cancels_what_both_get_right():
    a = [1] * 3 + [0] * 12 + [1] * 25
    b = [0] * 3 + [1] * 12 + [1] * 25
    delta = paired_delta(a, b)
    assert delta.value == 100 * 9 / 40
    assert delta.excludes_zero
    same = paired_delta(a, a)
    assert (same.value, same.lo, same.hi) == (0.0, 0.0, 0.0) and not same.excludes_zero


def test_mcnemar_exact_two_sided():
    assert math.isclose(mcnemar_p([1] * 3 + [0] * 12, [0] * 3 + [1] * 12), 0.03515625)
    assert mcnemar_p([1, 0], [1, 0]) == 1.0  # no discordant question
    assert mcnemar_p([1, 0], [0, 1]) == 1.0  # one each way


def test_corpus_statistic_is_recomputed_per_resample():
    values = [1.0, 0.0, 1.0, 1.0]
    mean = score_interval(values)
    custom = score_interval(values, statistic=lambda idx: 100.0 * sum(values[i] for i in idx) / len(idx))
    assert (custom.value, custom.lo, custom.hi) == (mean.value, mean.lo, mean.hi)
