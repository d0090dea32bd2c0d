"""What long jobs tell the user on stderr: one-line messages and tqdm progress bars.

Every part of the project reports through these two, so messages look alike (``[deepen] ...``) whether they come
from the library, the command line or a pipeline job's log.
"""

from __future__ import annotations

import sys

from tqdm.auto import tqdm


def log(message: str) -> None:
    """One line on stderr, flushed at once (pipeline jobs send stderr to their log file)."""
    print(f"[deepen] {message}", file=sys.stderr, flush=True)


def bar(total: int | None, desc: str, unit: str = "it", enabled: bool = True, **kwargs) -> tqdm:
    """A tqdm progress bar on stderr: count done of ``total``, rate and ETA. In a log file (not a terminal) it is
    redrawn at most every 10 s, so a long decode leaves a readable trail rather than thousands of lines."""
    interactive = sys.stderr.isatty()
    return tqdm(total=total, desc=f"[deepen] {desc}", unit=unit, file=sys.stderr, disable=not enabled,
                mininterval=0.5 if interactive else 10.0, dynamic_ncols=interactive, **kwargs)
