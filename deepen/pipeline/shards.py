"""Shards of a decode, and the guards that keep a job of an earlier run from passing off its output as current.

A shard's metadata carries its *provenance*: the method's settings, the members' fingerprints and the prompts file's
digest. The score stage refuses a shard whose provenance is not the current one, so a shard written by a job of an
earlier run (one that outlived a killed Snakemake and finished late) is never scored. Two more guards keep such a job
from doing harm: it stops when the Snakemake that started it is gone (`watch_parent`, local runs), and it writes its
shard only while it still holds the shard's *claim* (`claim` / `write_claimed`): a newer job for the same shard takes
the claim over, and the older one then discards its output.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import threading
import time
import uuid
from pathlib import Path

import pyarrow as pa

from deepen.errors import DeepenError
from deepen.files import atomic_path, locked
from deepen.pipeline.io import metadata, read_json, read_table, write_table
from deepen.progress import log


def shard_rows(n_rows: int, batch_size: int, shard: int, n_shards: int) -> range:
    """The rows of shard ``shard`` of ``n_shards``: whole global batches, contiguous.

    Batch b holds rows [b*B, (b+1)*B) whatever the shard count, so each row is decoded in the same batch (same padding,
    same arithmetic) with 1 or k shards, which makes their predictions identical.
    """
    if not 0 <= shard < n_shards:
        raise DeepenError(f"shard {shard} is not in 0..{n_shards - 1}")
    n_batches = math.ceil(n_rows / batch_size)
    first = shard * n_batches // n_shards
    last = (shard + 1) * n_batches // n_shards
    return range(min(first * batch_size, n_rows), min(last * batch_size, n_rows))


def file_digest(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def provenance(settings: dict, meta_paths: list[str], prompts_path: str) -> dict:
    """What a shard is made from: the method's settings, the members' fingerprints, the prompts file's digest."""
    return {"settings": settings, "fingerprints": [read_json(p)["fingerprint"] for p in meta_paths],
            "prompts_sha256": file_digest(prompts_path)}


def check_provenance(shard_path: str, expected: dict) -> None:
    """Refuse (and delete) a shard that was not made from ``expected``: a job of an earlier run wrote it."""
    found = json.loads(metadata(read_table(shard_path), "provenance", shard_path))
    if found == expected:
        return
    what = [k for k in expected if found.get(k) != expected[k]]
    Path(shard_path).unlink(missing_ok=True)
    raise DeepenError(f"{shard_path} was made with other {' and '.join(what)} than this run's (a decode job of an "
                      "earlier run, e.g. one that outlived a killed Snakemake, wrote it late); it is deleted, and the "
                      "next run decodes it again")


# -- guards against a job that outlived its run ----------------------------------------------------------------------


def _claim_path(out: Path) -> Path:
    return out.parent / f".{out.name}.claim"


@contextlib.contextmanager
def claim(out: str | os.PathLike):
    """Take ``out``'s claim for this job: a fresh token, replacing any older job's; yields the token. On exit the claim
    is dropped if this job still holds it."""
    out, token = Path(out), uuid.uuid4().hex
    path = _claim_path(out)
    with locked(path.with_suffix(".lock")), atomic_path(path) as tmp:
        tmp.write_text(token)
    try:
        yield token
    finally:
        with locked(path.with_suffix(".lock")):
            if path.is_file() and path.read_text() == token:
                path.unlink()


def write_claimed(table: pa.Table, out: str | os.PathLike, token: str) -> None:
    """Write ``table`` to ``out`` if this job (``token``) still holds the shard's claim; otherwise a newer job has
    taken the shard over, and this job's output is stale: discard it."""
    out = Path(out)
    path = _claim_path(out)
    with locked(path.with_suffix(".lock")):
        holder = path.read_text() if path.is_file() else None
        if holder != token:
            raise DeepenError(f"{out}: a newer job has taken this shard over; this job's output (from an earlier run) "
                              "is discarded")
        write_table(table, out)


def _ancestor_snakemake() -> tuple[int, str] | None:
    """(pid, start time) of the nearest ancestor process that is Snakemake, from /proc (None where there is none)."""
    pid = os.getppid()
    while pid > 1:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        fields = stat[stat.rindex(")") + 2:].split()
        if b"snakemake" in cmdline:
            return pid, fields[19]  # field 22 of stat: the process's start time
        pid = int(fields[1])
    return None


def watch_parent(interval: float = 2.0) -> None:
    """Stop this process when the Snakemake that started it is gone (a killed Snakemake leaves its jobs running;
    their results would be stale). Does nothing where no Snakemake ancestor is found."""
    found = _ancestor_snakemake()
    if found is None:
        return
    pid, started = found

    def alive() -> bool:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        return stat[stat.rindex(")") + 2:].split()[19] == started

    def watch() -> None:
        while alive():
            time.sleep(interval)
        log(f"the Snakemake process that started this job (pid {pid}) is gone: stopping")
        os._exit(3)

    threading.Thread(target=watch, name="watch-snakemake", daemon=True).start()
