"""Where plain fast mode was measured to choose paper mode's token, and so what ``certify="auto"`` (the default) does.

Plain fast mode summarises each member's tail by cluster means (``deepen.fuse``); the agreement grid of the benchmark
(``python -m deepen.bench --only agreement``, docs/performance.md) replays the same recorded steps through paper mode,
plain fast mode and certified fast mode over the sweeps' η x T grid, in both orders of the embedded pair. Plain fast
mode chose paper mode's token on every step at T 1 and at small η with T <= 5, and missed 1 to 3 steps in 58 or 89
elsewhere; certified fast mode missed none. ``certify="auto"`` therefore runs plain fast mode where the grid found
it exact and certifies everywhere else, including every (η, T) the grid did not measure.

Torch-free: the pipeline reads it when it decides which relative caches need the exact tail statistics.
"""

from __future__ import annotations

#: (η, T) at which plain fast mode chose paper mode's token on every recorded step of the agreement grid in both
#: orders of the embedded pair (docs/bench.json, section "agreement"; a unit test keeps the two in step).
MEASURED_EXACT = frozenset({
    (0.05, 1), (0.15, 1), (0.3, 1), (0.5, 1), (1.0, 1),
    (0.05, 3), (0.05, 5),
    (0.15, 5),
})


def certifies(certify, mode: str, eta: float, steps: int) -> bool:
    """Whether fast mode certifies its fused steps under these settings: ``certify`` True / False, or "auto" (only
    outside ``MEASURED_EXACT``). Paper mode and η 0 (the main model alone) never need it."""
    if mode != "fast" or eta == 0:
        return False
    if certify == "auto":
        return (round(float(eta), 6), int(steps)) not in MEASURED_EXACT
    return bool(certify)
