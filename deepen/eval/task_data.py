"""Task data: read a task's split files (or the Hub copy), validate them line by line, and build prompt rows.

`build_prompts` turns a split into prompt rows with this schema (one dict per question; the same columns
`write_prompts` stores in Parquet):

    id              str        stable, e.g. "mmlu/anatomy/00012", "gsm8k/00042", "piqa/dev/00123"
    task            str        registry name: mmlu, arc_c, piqa, gsm8k, triviaqa, nq, flores_en_de, ...
    prompt          str        exact text given to the model (no BOS: the tokenizer adds it)
    answers         list[str]  gold: [letter] for multiple choice, [number] for GSM8K, aliases for QA
    choices         list[str]  option labels for multiple choice (["A","B","C","D"]), [] otherwise
    max_new_tokens  int        1 for multiple choice, 512 GSM8K, 10 TriviaQA/NQ
    stop            list[str]  stop strings ("\\n", or "\\n\\n" for GSM8K)
    source          str|null   what an encoder-decoder member's encoder reads (translation: the source
                               sentence); null = the prompt
    source_lang     str|null   translation: ISO 639-1 code of the source language ("en")
    target_lang     str|null   translation: ISO 639-1 code of the target language ("de")

The data dir defaults to the authors' files shipped with this repository (``data/deepen_splits``, see its
SOURCES.md), or ``$DEEPEN_DATA_DIR``.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from deepen.errors import TaskDataNotFoundError, TaskError
from deepen.eval.tasks import Task, get_task
from deepen.eval.templates import Row, mc_labels


def default_data_dir() -> Path:
    """$DEEPEN_DATA_DIR, else the authors' files shipped with this repository (``data/deepen_splits``)."""
    env = os.environ.get("DEEPEN_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "data" / "deepen_splits"


def _check_jsonl(path: Path, task: Task, demo: bool = False) -> int:
    """Validate a JSONL file line by line (`Task.check_row`: every field the prompt reads, the gold answer); returns
    its number of rows.

    `datasets` reports malformed JSON without the line, and fills a field a row lacks with None (which a template
    would print as "None"), so every line is parsed and checked here first (cheap next to the load) to name
    ``file:line`` in errors.
    """
    count = 0
    with path.open("rb") as lines:
        for lineno, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue  # datasets' JSON reader skips blank lines too
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as err:
                raise TaskError(f"{path}:{lineno}: not UTF-8 ({err.reason})") from None
            except json.JSONDecodeError as err:
                raise TaskError(f"{path}:{lineno}: malformed JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise TaskError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            if task.grouped:
                row.setdefault("subject", path.stem)
            try:
                task.check_row(row, demo)
            except (ValueError, KeyError, TypeError) as err:
                raise TaskError(f"{path}:{lineno}: {err}") from None
            count += 1
    if count == 0:
        raise TaskError(f"{path}: empty split (no rows)")
    return count


def check_local(task: str | Task, split: str, data_dir: str | Path | None = None, hub: bool = False) -> int:
    """Check that ``split`` of ``task`` can be read from ``data_dir`` before any job starts; returns its rows (0 when
    the files are missing and ``hub`` will load the public benchmark instead).

    Raises `TaskDataNotFoundError` naming the path when the files are missing (and ``hub`` is off), and `TaskError`
    naming file and line for a malformed row, a row without a gold answer, or an empty split.
    """
    task = get_task(task)
    root = Path(data_dir if data_dir is not None else default_data_dir())
    path = root / task.path(split)
    if not path.exists():
        if hub:
            return 0
        if not root.is_dir():
            raise TaskDataNotFoundError(f"data directory not found: {root} (set data_dir in the config, or hub: true)")
        raise TaskDataNotFoundError(f"{task.name} {split} data not found: {path} (set data_dir, or hub: true)")
    files = _split_files(task, split, path)
    try:
        return sum(_check_jsonl(f, task, split == "demos") for f in files)
    except PermissionError as err:
        raise TaskError(f"{err.filename}: not readable ({err.strerror})") from None
    except IsADirectoryError as err:
        raise TaskError(f"{err.filename}: is a directory, expected a JSONL file") from None


def task_files(task: str | Task, split: str, data_dir: str | Path | None = None) -> list[Path]:
    """The local files a split's prompts are built from: its own file(s) and its demonstrations' ([] when the split
    is not on disk: the Hub copy is used)."""
    task = get_task(task)
    root = Path(data_dir if data_dir is not None else default_data_dir())
    out = []
    for part in [split] + (["demos"] if task.n_shot and split != "demos" else []):
        path = root / task.path(part)
        if path.exists():
            out += _split_files(task, part, path)
    return out


def _split_files(task: Task, split: str, path: Path) -> list[Path]:
    """The JSONL files of one split: the file itself, or a grouped task's per-subject files."""
    if not task.grouped:
        return [path]
    if not path.is_dir():
        raise TaskDataNotFoundError(f"{task.name} {split}: expected a directory of per-subject JSONL files: {path}")
    files = sorted(path.glob("*.jsonl"))
    if not files:
        raise TaskError(f"{path}: empty split (no *.jsonl files)")
    return files


def _load_local(task: Task, split: str, path: Path) -> list[Row]:
    import datasets  # imported here: importing it takes about a second and only loading needs it

    files = _split_files(task, split, path)
    counts = [_check_jsonl(f, task, split == "demos") for f in files]
    # Split names must be identifiers; subject file names need not be, hence s0, s1, ...
    loaded = datasets.load_dataset("json", data_files={f"s{i}": str(f) for i, f in enumerate(files)})
    rows: list[Row] = []
    for i, (file, count) in enumerate(zip(files, counts)):
        part = loaded[f"s{i}"].to_list()
        if len(part) != count:
            raise RuntimeError(f"{file}: datasets read {len(part)} rows, the file has {count}")
        for index, row in enumerate(part):
            row["index"] = index
            if task.grouped:
                row["subject"] = file.stem
        rows.extend(part)
    if split == "dev" and task.dev_sample is not None:
        keep = sorted(random.Random(task.dev_seed).sample(range(len(rows)), min(task.dev_sample, len(rows))))
        rows = [rows[i] for i in keep]
    return rows


def _load_hub(task: Task, split: str) -> list[Row]:
    import datasets

    spec = dict(task.hub_splits).get(split)
    if task.hub_id is None or task.hub_row is None or spec is None:
        raise TaskError(f"task {task.name!r} has no Hub source for its {split} split")
    if task.hub_configs:  # parallel data stored one config per language: records aligned by position
        parts = [datasets.load_dataset(task.hub_id, config, split=spec, revision=task.hub_revision)
                 for config in task.hub_configs]
        if len({len(p) for p in parts}) != 1:
            raise TaskError(f"{task.hub_id} {spec}: configs {task.hub_configs} differ in length")
        records = [list(aligned) for aligned in zip(*parts)]
    else:
        records = datasets.load_dataset(task.hub_id, task.hub_config, split=spec, revision=task.hub_revision)
    rows = [task.hub_row(record) for record in records]
    where = f"{task.hub_id} ({'+'.join(task.hub_configs) or task.hub_config}) {spec}"
    if not rows:
        raise TaskError(f"{where}: empty split (no rows)")
    for i, row in enumerate(rows):
        try:
            task.check_row(row, split == "demos")
        except (ValueError, KeyError, TypeError) as err:
            raise TaskError(f"{where} row {i}: {err}") from None
    if task.grouped:
        rows.sort(key=lambda row: row["subject"])  # stable: hub order within a subject
        seen: Counter[str] = Counter()
        for row in rows:
            row["index"] = seen[row["subject"]]
            seen[row["subject"]] += 1
    else:
        for i, row in enumerate(rows):
            row["index"] = i
    return rows


def load_rows(
    task: str | Task, split: str = "test", data_dir: str | Path | None = None, hub: bool = False
) -> list[Row]:
    """The rows of one split as dicts, in file order (MMLU: subjects sorted, then file order).

    Each row is the JSON object of its line plus ``index`` (0-based position in its source
    file) and, for grouped tasks, ``subject`` (the file name stem). Local files under
    ``data_dir`` (default `default_data_dir`) are used when present; when they are missing this
    raises `TaskDataNotFoundError` (a FileNotFoundError) naming the path, unless ``hub=True``,
    which loads the Hub copy. Malformed JSON, a row without a gold answer, or an empty split
    raise `TaskError` (a ValueError) naming the file and line.
    """
    task = get_task(task)
    path = Path(data_dir if data_dir is not None else default_data_dir()) / task.path(split)
    if path.exists():
        return _load_local(task, split, path)
    if hub:
        return _load_hub(task, split)
    raise TaskDataNotFoundError(
        f"{task.name} {split} data not found: {path} (set DEEPEN_DATA_DIR, pass data_dir, or use hub=True)"
    )


def _demo_prefixes(task: Task, data_dir: str | Path | None, hub: bool) -> dict[str | None, str]:
    """The concatenated demonstrations, per subject for grouped tasks (key None otherwise)."""
    if task.n_shot == 0:
        return {}
    assert task.demo_template is not None
    groups: dict[str | None, list[Row]] = {}
    for row in load_rows(task, "demos", data_dir, hub):
        groups.setdefault(row.get("subject") if task.grouped else None, []).append(row)
    prefixes = {}
    for key, rows in groups.items():
        if len(rows) < task.n_shot:
            where = f"subject {key!r}" if key is not None else task.path("demos")
            raise TaskError(
                f"{task.name}: {task.n_shot}-shot needs {task.n_shot} demonstrations, {where} has {len(rows)}"
            )
        prefixes[key] = "".join(task.demo_template(row) for row in rows[: task.n_shot])
    return prefixes


def _stratified_order(rows: list[Row]) -> list[Row]:
    # Row i of n in its subject sorts at (i + 1/2) / n: any prefix then holds each subject in
    # proportion to its size, like a proportionally stratified sample. Fractions keep ties exact.
    sizes = Counter(row["subject"] for row in rows)
    return sorted(rows, key=lambda row: (Fraction(2 * row["index"] + 1, 2 * sizes[row["subject"]]), row["subject"]))


def _row_id(task: Task, split: str, row: Row) -> str:
    parts = [task.name]
    if split != "test":
        parts.append(split)
    if task.grouped:
        parts.append(row["subject"])
    parts.append(f"{row['index']:05d}")
    return "/".join(parts)


def build_prompts(
    task: str | Task,
    split: str = "test",
    data_dir: str | Path | None = None,
    limit: int | None = None,
    offset: int = 0,
    hub: bool = False,
) -> list[Row]:
    """Prompt rows (schema in the module docstring) for ``split`` of ``task``.

    Rows come in file order (MMLU: the stratified order of the module docstring); ``offset``
    and ``limit`` then take ``rows[offset : offset + limit]``.
    """
    task = get_task(task)
    if offset < 0 or (limit is not None and limit < 1):
        raise TaskError(f"{task.name}: offset must be >= 0 and limit >= 1, got offset={offset}, limit={limit}")
    rows = load_rows(task, split, data_dir, hub)
    if task.grouped:
        rows = _stratified_order(rows)
    if offset >= len(rows):
        raise TaskError(f"{task.name} {split}: offset {offset} is past the end of its {len(rows)} rows: no question "
                        "would be asked")
    rows = rows[offset : None if limit is None else offset + limit]
    demos = _demo_prefixes(task, data_dir, hub)
    prompts = []
    for row in rows:
        key = row["subject"] if task.grouped else None
        if task.n_shot and key not in demos:
            raise TaskError(f"{task.name}: no demonstrations for subject {key!r}")
        prompts.append(
            {
                "id": _row_id(task, split, row),
                "task": task.name,
                "prompt": task.header + demos.get(key, "") + task.template(row),
                "answers": task.gold(row),
                "choices": mc_labels(row) if task.multiple_choice else [],
                "max_new_tokens": task.max_new_tokens,
                "stop": list(task.stop),
                "source": task.source(row) if task.source else None,
                "source_lang": task.source_lang,
                "target_lang": task.target_lang,
            }
        )
    return prompts


# ---------------------------------------------------------------------------------------------
# Parquet

PROMPT_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("task", pa.string()),
        ("prompt", pa.string()),
        ("answers", pa.list_(pa.string())),
        ("choices", pa.list_(pa.string())),
        ("max_new_tokens", pa.int32()),
        ("stop", pa.list_(pa.string())),
        ("source", pa.string()),
        ("source_lang", pa.string()),
        ("target_lang", pa.string()),
    ]
)
#: Columns a prompt row may leave out (null): only translation rows fill them.
OPTIONAL_COLUMNS = ("source", "source_lang", "target_lang")


def prompts_table(rows: Sequence[Row]) -> pa.Table:
    """Prompt rows as a table with `PROMPT_SCHEMA` (extra keys are dropped, optional ones default to null)."""
    columns = [{name: row[name] if name not in OPTIONAL_COLUMNS else row.get(name) for name in PROMPT_SCHEMA.names}
               for row in rows]
    return pa.Table.from_pylist(columns, schema=PROMPT_SCHEMA)


def write_prompts(rows: Sequence[Row], path: str | Path) -> None:
    """Write prompt rows to a Parquet file (parent directories are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(prompts_table(rows), path)


def read_prompts(path: str | Path) -> list[Row]:
    """Read prompt rows written by `write_prompts`."""
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise TaskError(f"{path} is not a readable Parquet file ({str(err).splitlines()[0]}): delete it and rerun "
                        "the pipeline, which rebuilds it") from err
    for name in OPTIONAL_COLUMNS:  # prompts files written before translation tasks existed
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, pa.string()))
    missing = [name for name in PROMPT_SCHEMA.names if name not in table.column_names]
    if missing:
        raise TaskError(f"{path}: not a prompts file, missing columns {missing}")
    return table.select(PROMPT_SCHEMA.names).cast(PROMPT_SCHEMA).to_pylist()
