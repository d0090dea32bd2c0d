"""Writing files and directories so that no fault leaves anything half-written, with the permissions a user expects.

Every writer of the project writes a temporary file or directory next to its target and renames it into place
(``os.replace``), so a process killed at any moment, even with SIGKILL, leaves either the old target or the new one.
Temporaries are named ``.<target name>.<random>.tmp``; ``remove_stale_temporaries`` deletes the ones a killed
process left behind. Python's ``tempfile`` creates its files 0600 and directories 0700; the results of a pipeline on
a cluster's shared file system must be readable by colleagues, so both get the permissions the process's umask
gives an ordinary new file (0644 / 0755 under the usual umask 022).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from pathlib import Path

from deepen.errors import DeepenError

_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}."


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; on success rename it to ``path``, on any failure delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield a fresh temporary directory next to ``path``; on success it replaces ``path`` (an existing ``path`` is
    removed first), on any failure it is deleted. Stale temporaries of ``path`` from killed processes are removed
    first, under a lock held for the whole write, so two processes never build the same directory at once."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with locked(path.parent / f".{path.name}.lock"):
        remove_stale_temporaries(path)
        tmp = Path(tempfile.mkdtemp(prefix=_temporary_prefix(path), suffix=_SUFFIX, dir=path.parent))
        try:
            yield tmp
            mode = 0o777 & ~_umask()
            for sub in [tmp, *(p for p in tmp.rglob("*") if p.is_dir())]:
                os.chmod(sub, mode)
            if path.exists():
                shutil.rmtree(path)
            os.replace(tmp, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def remove_stale_temporaries(path: str | os.PathLike) -> int:
    """Delete the temporaries of ``path`` (files or directories) left by killed writers; returns how many. Call it
    only while holding ``path``'s lock (``atomic_dir`` does), or when no writer of ``path`` can be running."""
    path = Path(path)
    removed = 0
    if not path.parent.is_dir():
        return 0
    for stale in path.parent.glob(f"{_temporary_prefix(path)}*{_SUFFIX}"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
        removed += 1
    return removed


@contextlib.contextmanager
def locked(lock_path: str | os.PathLike):
    """An exclusive advisory lock (``flock``) on ``lock_path`` for the duration of the block."""
    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def check_writable_dir(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a directory this process can create and write in; a DeepenError naming ``what`` otherwise."""
    path = Path(path).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DeepenError(f"{what} {path} cannot be created ({exc.strerror})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise DeepenError(f"{what} {path} is not writable")
    return path
