"""Files of the pipeline: Parquet tables and JSON written atomically (``deepen.files``), read with clear errors."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from deepen.errors import DeepenError
from deepen.files import atomic_path


def write_table(table: pa.Table, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def write_json(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_text(text: str, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def read_table(path: str | os.PathLike) -> pa.Table:
    """``pq.read_table`` that turns a truncated or corrupt file into one clear DeepenError naming it.

    Every file here is written atomically, so a damaged one was damaged afterwards (a full disk, a copy cut short, a
    hand edit); it is never used: the error says to delete it so that the next run rebuilds it.
    """
    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise DeepenError(f"{path} does not exist; rerun the pipeline") from exc
        raise DeepenError(f"{path} is not a readable Parquet file ({str(exc).splitlines()[0]}): it is truncated or "
                          f"corrupt; delete it and rerun the pipeline, which rebuilds it") from exc


def metadata(table: pa.Table, key: str, path: str | os.PathLike) -> str:
    """The value of ``key`` in a table's metadata; a DeepenError naming the file when it is not there."""
    value = (table.schema.metadata or {}).get(key.encode())
    if value is None:
        raise DeepenError(f"{path} has no {key!r} in its metadata (not written by this pipeline); delete it and rerun "
                          "the pipeline")
    return value.decode()


def with_metadata(table: pa.Table, **values: str) -> pa.Table:
    """``table`` with ``values`` added to its schema metadata."""
    md = dict(table.schema.metadata or {})
    md.update({k.encode(): v.encode() for k, v in values.items()})
    return table.replace_schema_metadata(md)
