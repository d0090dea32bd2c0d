"""How certain a score is: bootstrap confidence intervals over questions, and paired differences between methods.

Every summary shows them: a score measured on 40 questions is an estimate, and two methods that differ by 2 points on
the same 40 questions usually cannot be told apart. All resampling is seeded (the same inputs give the same
intervals), percentile bootstrap with ``N_BOOT`` resamples of the questions.

* `score_interval`: a task score (mean of per-question scores, in percent) and its 95% interval.
* `paired_delta`: method B minus method A on the *same* questions: the questions are resampled together, so what both
  get right or wrong cancels out (far narrower than comparing two separate intervals); with 0/1 scores also the
  exact McNemar test (two-sided binomial test on the questions where exactly one of the two is right).
* A corpus-level metric (BLEU) passes ``statistic``: the score of a resample is recomputed from its rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

N_BOOT = 2000
LEVEL = 0.95
SEED = 0


@dataclass(frozen=True)
class Interval:
    """An estimate and its confidence interval (``lo`` <= ``hi``), all in percent (points for a difference)."""

    value: float
    lo: float
    hi: float

    @property
    def excludes_zero(self) -> bool:
        return self.lo > 0 or self.hi < 0


def _percent_mean(rows: np.ndarray, index: np.ndarray) -> np.ndarray:
    return 100.0 * rows[index].mean(axis=-1)


def _resamples(n: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def score_interval(values: Sequence[float], statistic: Callable[[np.ndarray], float] | None = None,
                   n_boot: int = N_BOOT, seed: int = SEED, level: float = LEVEL) -> Interval:
    """The score of per-question ``values`` (0/1, or any score in [0, 1]) in percent, with its bootstrap interval.

    ``statistic`` (indices of the questions -> score in percent) replaces the mean, e.g. corpus BLEU. Example: 30 right
    of 40 gives 75.0 with an interval of about [62.5, 87.5]."""
    rows = np.asarray(values, dtype=float)
    if len(rows) == 0:
        return Interval(math.nan, math.nan, math.nan)
    index = _resamples(len(rows), n_boot, seed)
    if statistic is None:
        value, boots = 100.0 * rows.mean(), _percent_mean(rows, index)
    else:
        value, boots = statistic(np.arange(len(rows))), np.array([statistic(i) for i in index])
    return Interval(float(value), *_quantiles(boots, level))


def paired_delta(a: Sequence[float], b: Sequence[float], statistic: Callable[[np.ndarray, int], float] | None = None,
                 n_boot: int = N_BOOT, seed: int = SEED, level: float = LEVEL) -> Interval:
    """B minus A (points) on the same questions (``a[i]`` and ``b[i]`` score question i), with a paired bootstrap
    interval. ``statistic(indices, which)`` (which = 0 for A, 1 for B) replaces the mean for corpus metrics."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) != len(b):
        raise ValueError(f"paired scores need the same questions: {len(a)} vs {len(b)}")
    if len(a) == 0:
        return Interval(math.nan, math.nan, math.nan)
    index = _resamples(len(a), n_boot, seed)
    if statistic is None:
        value, boots = 100.0 * (b - a).mean(), _percent_mean(b - a, index)
    else:
        whole = np.arange(len(a))
        value = statistic(whole, 1) - statistic(whole, 0)
        boots = np.array([statistic(i, 1) - statistic(i, 0) for i in index])
    return Interval(float(value), *_quantiles(boots, level))


def mcnemar_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Exact two-sided McNemar p-value for paired 0/1 outcomes: under "A and B are equally good", the questions only
    one of them gets right split like fair coin flips. 1.0 when there are none. Example: A right on 3 questions B gets
    wrong and B right on 12 A gets wrong: p = 0.035."""
    a, b = np.asarray(a) > 0.5, np.asarray(b) > 0.5
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(b & ~a))
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n
    return min(1.0, 2.0 * tail)


def _quantiles(boots: np.ndarray, level: float) -> tuple[float, float]:
    alpha = (1 - level) / 2
    lo, hi = np.quantile(boots, [alpha, 1 - alpha])
    return float(lo), float(hi)
