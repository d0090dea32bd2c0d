"""The prompts stage: one task split -> Parquet prompt rows (few-shot as the paper, ``deepen.eval.task_data``)."""

from __future__ import annotations

import os

from deepen.errors import DeepenError, TaskDataNotFoundError
from deepen.eval.task_data import build_prompts, prompts_table
from deepen.pipeline.io import write_table


def prompts_file(task: str, split: str, out: str | os.PathLike, data_dir: str | None = None, limit: int | None = None,
                 offset: int = 0, hub: bool = False, max_new_tokens: int | None = None) -> int:
    """Prompt rows of ``task`` (few-shot as the paper, ``deepen.eval.task_data``) to Parquet, optionally with a
    shorter budget."""
    try:
        rows = build_prompts(task, split, data_dir=data_dir, limit=limit, offset=offset, hub=hub)
    except TaskDataNotFoundError as exc:
        raise DeepenError(f"{exc}; set data_dir in the config, or hub: true to load the public benchmark") from exc
    if max_new_tokens is not None:
        for row in rows:
            row["max_new_tokens"] = min(row["max_new_tokens"], int(max_new_tokens))
    write_table(prompts_table(rows), out)
    return len(rows)
