"""Keeping the process's resident memory close to what it holds (the P4 target of ``deepen.bench``).

Two glibc behaviours make a Python process that loads LLMs much larger than its live data:

* freed small allocations stay in malloc's arenas: parsing a 33 MB ``tokenizer.json`` leaves ~200 MB behind;
* the mmap threshold adapts upwards after large frees (up to 32 MB), so the ~12 MB temporaries of every decoding
  step (relative rows, logits) are then carved from the heap and are not returned either.

``release_freed_memory`` hands the first back; ``limit_heap_retention`` pins the threshold at 1 MB so large tensors
are always mmap'ed and unmapped when freed. Both are no-ops outside glibc (macOS, musl, Windows).
"""

from __future__ import annotations

import gc
import sys

_M_MMAP_THRESHOLD = -3  # mallopt parameter number in glibc's malloc.h
_MMAP_THRESHOLD = 1 << 20
_libc = None
_limited = False


def _glibc():
    global _libc
    if _libc is None:
        _libc = False
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                lib = ctypes.CDLL("libc.so.6")
                lib.malloc_trim, lib.mallopt  # glibc only
                _libc = lib
            except (OSError, AttributeError):
                pass
    return _libc or None


def limit_heap_retention() -> None:
    """Serve every allocation >= 1 MB with its own mapping, returned to the OS when freed (once per process)."""
    global _limited
    lib = _glibc()
    if lib is not None and not _limited:
        lib.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
        _limited = True


def release_freed_memory() -> None:
    """Collect garbage and return the heap pages malloc keeps after frees (``malloc_trim``)."""
    gc.collect()
    lib = _glibc()
    if lib is not None:
        lib.malloc_trim(0)
