"""Timing on a shared machine: every timed region ends on the device, and the two sides of a ratio are measured
one right after the other, round after round."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

import torch

_START = time.perf_counter()


def log(msg: str) -> None:
    print(f"[bench {time.perf_counter() - _START:7.1f} s] {msg}", file=sys.stderr, flush=True)


def sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """Seconds ``fn`` took, ending on the device, and what it returned."""
    sync()
    t0 = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - t0, out


def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> tuple[dict[str, float], dict[str, object]]:
    """Median seconds of each of ``fns``, run in turn ``repeats`` rounds, and what each returned in the last round
    (the outputs the callers compare: no untimed run just to check them, which at 1,024 tokens costs an hour)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    outputs: dict[str, object] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            seconds, outputs[name] = timed(fn)
            times[name].append(seconds)
    return {name: statistics.median(t) for name, t in times.items()}, outputs


def per_token(runners: dict[str, Callable[[int], object]], tokens: int, repeats: int) -> dict[str, float]:
    """Median seconds per decoding step after the first of each runner (``runner(n)`` generates ``n`` tokens):
    (t(tokens) - t(1)) / (tokens - 1) per round, the runners interleaved within each round."""
    for run in runners.values():  # warm-up: first-call allocations, lazy initialisation
        run(2)
    steps: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            (t_n, _), (t_1, _) = timed(lambda run=run: run(tokens)), timed(lambda run=run: run(1))
            steps[name].append((t_n - t_1) / (tokens - 1))
    return {name: statistics.median(s) for name, s in steps.items()}
