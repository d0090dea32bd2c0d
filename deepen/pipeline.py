"""The stages of the evaluation pipeline, as plain functions (the Snakemake rules only call these).

Stages and their artifacts (method.md §1-§5; the workflow in ``workflow/`` wires them together):

    materialise   model source -> safetensors directory + ``<model>.json`` (fingerprint, vocabulary size)
    vocabulary    model directory -> Parquet (id, piece, text, bytes, kind)
    anchors       member vocabularies -> Parquet (text, bytes, id_0 .. id_{n-1}; main model first)
    relative      model directory + anchors -> Parquet (anchor unit embeddings + tail clusters: fast mode)
    prompts       task split -> Parquet (id, prompt, answers, choices, max_new_tokens, stop)
    decode        one shard of one (method, task) -> Parquet (id, text, token_ids, choice, stop_reason, seconds)
    gather        shards -> predictions Parquet (no timings: byte-identical for any shard count) + timings Parquet
                  (the `score` rule gathers, then scores)
    score         predictions + prompts -> per-row scores Parquet
    weights       dev scores of the single members -> DeePEn-Adapt weights (JSON)
    summary       scores -> summary Parquet + Table-1-style Markdown; plots -> PNG

Every writer writes a temporary file next to its target and renames it into place (``os.replace``), so a job that is
killed, even with SIGKILL, never leaves a file a later run would trust.

DeePEn-Adapt weights. The paper weights members by their dev-set performance but gives no formula; we use normalised
dev accuracies, w_i = acc_i / sum_j acc_j (uniform when every member scores 0), computed per task.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from deepen.errors import DeepenError

# -- atomic writes ---------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; on success rename it to ``path``, on any failure delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_table(table: pa.Table, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def write_json(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _log(message: str) -> None:
    print(f"[deepen] {message}", file=sys.stderr, flush=True)


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


def _metadata(table: pa.Table, key: bytes, path) -> str:
    value = (table.schema.metadata or {}).get(key)
    if value is None:
        raise DeepenError(f"{path} has no {key.decode()!r} in its metadata (not written by this pipeline); delete it "
                          "and rerun the pipeline")
    return value.decode()


# -- 1. materialise --------------------------------------------------------------------------------------------------


def materialise(source: str, out_dir: str | os.PathLike, meta_path: str | os.PathLike, dtype: str = "auto",
                cache_dir: str | os.PathLike | None = None, trust_remote_code: bool = False) -> dict:
    """Make ``out_dir`` a safetensors checkpoint of ``source`` and write its metadata JSON to ``meta_path``.

    Embedded names and ``.gguf`` files are dequantised once (fp32); local checkpoints and hub ids are loaded and saved
    again (in ``dtype``), so every later stage reads one local directory. The metadata holds the fingerprint (hash of
    vocabulary + input embeddings), the vocabulary size the ensemble uses, and the source.
    """
    from transformers import AutoTokenizer

    from deepen.members import (auto_model_class, embedded_gguf, embedded_name, fingerprint, materialise_gguf,
                                resolve_dtype)

    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    name = embedded_name(source)
    if name is not None or str(source).endswith(".gguf"):
        gguf = embedded_gguf(name, cache_dir) if name else Path(source).expanduser().resolve()
        if not gguf.is_file():
            raise DeepenError(f"GGUF file not found: {gguf}")
        materialise_gguf(gguf, out_dir, name or gguf.stem)
    else:
        t0 = time.perf_counter()
        _log(f"materialising {source} ...")
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
            model = auto_model_class(source, trust_remote_code).from_pretrained(
                source, dtype=resolve_dtype(dtype, "cpu") if dtype != "auto" else "auto",
                trust_remote_code=trust_remote_code)
        except (OSError, ValueError) as exc:
            raise DeepenError(f"cannot load model {source!r}: {str(exc).splitlines()[0]}") from exc
        from deepen.members import check_vocabulary

        check_vocabulary(tokenizer, source)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
        try:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            meta = {"name": out_dir.name, "source": str(source), "fingerprint": fingerprint(tokenizer, model)}
            (tmp / "deepen.json").write_text(json.dumps(meta, indent=2))
            os.replace(tmp, out_dir)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        _log(f"materialised {source} in {time.perf_counter() - t0:.0f} s -> {out_dir}")
    meta = json.loads((out_dir / "deepen.json").read_text())
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(out_dir)
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    record = {"source": str(source), "fingerprint": meta["fingerprint"], "vocab_size": int(text_config.vocab_size),
              "files": file_stamps(out_dir)}
    write_json(record, meta_path)
    return record


def file_stamps(model_dir: str | os.PathLike) -> dict[str, list[int]]:
    """Size and modification time (ns) of every file of a materialised model (hidden files, such as Snakemake's
    ``.snakemake_timestamp``, left out): ``verify_member`` trusts the recorded fingerprint while these are unchanged."""
    root = Path(model_dir)
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts):
            st = p.stat()
            out[str(rel)] = [st.st_size, st.st_mtime_ns]
    return out


def read_meta(meta_path: str | os.PathLike) -> dict:
    return json.loads(Path(meta_path).read_text())


# -- 2. vocabulary ---------------------------------------------------------------------------------------------------


def vocabulary_table(model_dir: str | os.PathLike, meta_path: str | os.PathLike, out: str | os.PathLike) -> int:
    """The member's normalised vocabulary (``deepen.vocabulary``) as Parquet, fingerprint in the metadata."""
    from transformers import AutoTokenizer

    from deepen.vocabulary import normalise_vocabulary

    meta = read_meta(meta_path)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    vocab = normalise_vocabulary(tokenizer, meta["vocab_size"])
    table = vocab.to_table()
    md = dict(table.schema.metadata or {})
    md[b"fingerprint"] = meta["fingerprint"].encode()
    write_table(table.replace_schema_metadata(md), out)
    return len(vocab)


# -- 3. anchors ------------------------------------------------------------------------------------------------------


def anchors_table(vocab_paths: list[str], names: list[str], out: str | os.PathLike, min_anchors: int = 1000,
                  max_anchors: int | None = None) -> int:
    """Anchors of one ensemble (members in ``names`` order, main first); member fingerprints in the metadata."""
    from deepen.anchors import find_anchors
    from deepen.vocabulary import Vocabulary

    tables = [read_table(p) for p in vocab_paths]
    vocabs = [Vocabulary.from_table(t) for t in tables]
    anchors = find_anchors(vocabs, list(names), min_anchors=min_anchors, max_anchors=max_anchors)
    table = anchors.to_table()
    md = dict(table.schema.metadata or {})
    md[b"fingerprints"] = "\t".join(_metadata(t, b"fingerprint", p) for t, p in zip(tables, vocab_paths)).encode()
    write_table(table.replace_schema_metadata(md), out)
    _log(f"{len(anchors)} anchors for {', '.join(names)}")
    return len(anchors)


# -- 4. relative representations -------------------------------------------------------------------------------------


def relative_table(model_dir: str | os.PathLike, meta_path: str | os.PathLike, anchors_path: str | os.PathLike,
                   member_index: int, out: str | os.PathLike) -> int:
    """Member ``member_index``'s relative space against the ensemble's anchors: what fast mode needs.

    One row per anchor (its unit input embedding, its column of the tail clusters' mean rows and a slice of the
    token -> cluster map: ``RelativeSpace.to_table``); the member's fingerprint goes into the metadata and
    ``decode_shard`` refuses a cache whose fingerprint is not the loaded model's. Paper mode builds its
    dense matrices from this in memory (they do not fit on disk for large vocabularies).
    """
    from deepen.anchors import Anchors
    from deepen.members import load_member
    from deepen.relative import RelativeSpace

    meta = read_meta(meta_path)
    anchors = Anchors.from_table(read_table(anchors_path))
    member = load_member(str(model_dir), dtype="float32", device="cpu")
    verify_member(member, meta, str(meta_path), model_dir)
    space = RelativeSpace.of_member(member, anchors.ids[member_index], meta["vocab_size"])
    table = space.to_table()
    table = table.replace_schema_metadata({b"fingerprint": meta["fingerprint"].encode(),
                                           b"member_index": str(member_index).encode()})
    write_table(table, out)
    return space.n_anchors


# -- 5. prompts ------------------------------------------------------------------------------------------------------


def prompts_file(task: str, split: str, out: str | os.PathLike, data_dir: str | None = None, limit: int | None = None,
                 offset: int = 0, hub: bool = False, max_new_tokens: int | None = None) -> int:
    """Prompt rows of ``task`` (few-shot as the paper, ``deepen.tasks``) to Parquet, optionally with a shorter budget."""
    from deepen.tasks import TaskDataNotFoundError, build_prompts, prompts_table

    try:
        rows = build_prompts(task, split, data_dir=data_dir, limit=limit, offset=offset, hub=hub)
    except TaskDataNotFoundError as exc:
        raise DeepenError(f"{exc}; set data_dir in the config, or hub: true to load the public benchmark") from exc
    if max_new_tokens is not None:
        for row in rows:
            row["max_new_tokens"] = min(row["max_new_tokens"], int(max_new_tokens))
    write_table(prompts_table(rows), out)
    return len(rows)


# -- 6. decode -------------------------------------------------------------------------------------------------------

PREDICTION_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("text", pa.string()),
    ("token_ids", pa.list_(pa.int64())),
    ("choice", pa.string()),
    ("stop_reason", pa.string()),
])
TIMING_SCHEMA = pa.schema([("id", pa.string()), ("seconds", pa.float64()), ("n_tokens", pa.int64())])


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


def _stored_dtype(model_dir: str | os.PathLike) -> str | None:
    """The dtype a checkpoint's weights are stored in (its config.json), e.g. 'float32', None when not recorded."""
    try:
        cfg = json.loads((Path(model_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    text = cfg.get("text_config") or {}
    return cfg.get("dtype") or cfg.get("torch_dtype") or text.get("dtype") or text.get("torch_dtype")


def verify_member(member, meta: dict, meta_path: str = "", model_dir: str | os.PathLike | None = None) -> None:
    """Check that a loaded member is the model its caches were built from: a model or tokenizer changed on disk since
    materialisation is refused, never used.

    Fast path: the model directory's files have the sizes and modification times recorded at materialisation
    (``file_stamps``), so they are the files that were fingerprinted. Otherwise (files touched, copied, edited, or a
    materialisation older than the stamps) the fingerprint (vocabulary + input embeddings, a few seconds for a
    262k-token vocabulary) is recomputed and compared. The embeddings are hashed in fp32, so that is exact when the
    member is loaded in fp32 or in the dtype it is stored in; a member stored in fp32 and loaded in a narrower dtype
    (bf16 on a GPU) is then checked by the number of its embedding rows only.
    """
    import torch

    from deepen.members import fingerprint

    model_dir = model_dir if model_dir is not None else member.source
    if meta.get("files") and file_stamps(model_dir) == meta["files"]:
        member._fingerprint = meta["fingerprint"]
        return
    emb = member.model.get_input_embeddings().weight
    loaded = str(emb.dtype).replace("torch.", "")
    stored = _stored_dtype(model_dir)
    where = f" ({meta_path})" if meta_path else ""
    if emb.dtype == torch.float32 or stored == loaded:
        fresh = fingerprint(member.tokenizer, member.model)
        if fresh != meta["fingerprint"]:
            raise DeepenError(f"model {member.name}: its files changed since materialisation (fingerprint {fresh}, "
                              f"recorded {meta['fingerprint']}{where}); delete the materialised model and its "
                              "metadata and rerun the pipeline")
    elif meta.get("vocab_size") is not None and emb.shape[0] < int(meta["vocab_size"]):
        raise DeepenError(f"model {member.name}: {emb.shape[0]} embedding rows, {meta['vocab_size']} recorded"
                          f"{where}; delete the materialised model and its metadata and rerun the pipeline")
    member._fingerprint = meta["fingerprint"]


def load_ensemble(model_dirs: list[str], meta_paths: list[str], names: list[str], *, weights=None, eta: float = 0.15,
                  steps: int = 5, mode: str = "fast", anchors_path: str | None = None,
                  relative_paths: list[str] | None = None, topk: int = 64, mass: float = 0.999, dtype: str = "auto",
                  device: str = "auto", device_map: str | None = None, trust_remote_code=None):
    """An ``Ensemble`` from materialised members and the cached anchors / relative spaces (fingerprints checked)."""
    from deepen.anchors import Anchors
    from deepen.ensemble import Ensemble
    from deepen.members import load_member
    from deepen.relative import RelativeSpace

    metas = [read_meta(p) for p in meta_paths]
    remote = trust_remote_code or [False] * len(names)
    members = [load_member(str(d), dtype=dtype, device=device, device_map=device_map, name=n, trust_remote_code=r)
               for d, n, r in zip(model_dirs, names, remote)]
    for member, meta, meta_path, model_dir in zip(members, metas, meta_paths, model_dirs):
        verify_member(member, meta, str(meta_path), model_dir)
    if len(members) == 1:
        return Ensemble(members, eta=eta, steps=steps, mode=mode, topk=topk, mass=mass)
    anchors_table_ = read_table(anchors_path)
    recorded = _metadata(anchors_table_, b"fingerprints", anchors_path).split("\t")
    if recorded != [m["fingerprint"] for m in metas]:
        raise DeepenError(f"{anchors_path} was built for other models (fingerprints {recorded}, the members now are "
                          f"{[m['fingerprint'] for m in metas]}); delete it and rerun the pipeline")
    anchors = Anchors.from_table(anchors_table_)
    spaces = []
    for i, (member, meta, path) in enumerate(zip(members, metas, relative_paths)):
        table = read_table(path)
        if _metadata(table, b"fingerprint", path) != meta["fingerprint"]:
            raise DeepenError(f"{path} was built for another version of {member.name}; delete it and rerun the "
                              "pipeline")
        try:
            spaces.append(RelativeSpace.of_member(member, anchors.ids[i], meta["vocab_size"], table=table))
        except (ValueError, KeyError) as exc:
            raise DeepenError(f"{path}: {exc}") from exc
    return Ensemble(members, weights=weights, eta=eta, steps=steps, mode=mode, anchors=anchors, spaces=spaces,
                    min_anchors=1, topk=topk, mass=mass)


def decode_shard(ensemble, prompts_path: str | os.PathLike, shard: int, n_shards: int, out: str | os.PathLike,
                 batch_size: int = 4) -> int:
    """Decode shard ``shard`` of ``n_shards`` of a prompts file with ``ensemble``; write one Parquet atomically.

    A row whose prompt does not fit a member's context window (with the task's budget) is not decoded: it gets an
    *error row* (empty text, no tokens, ``stop_reason`` "error: prompt of N tokens + B new tokens exceeds the context
    window of W tokens of <member>"), scored as wrong, and the other rows of its batch decode normally. Should a row
    still outgrow an assistant's window during decoding (its re-encoding of the continuation is longer than the main
    model's), its batch is decoded again one row at a time and only that row becomes an error row.
    """
    from deepen.members import context_error
    from deepen.sync import ContextWindowError
    from deepen.tasks import read_prompts

    rows = read_prompts(prompts_path)
    mine = shard_rows(len(rows), batch_size, shard, n_shards)
    delay = float(os.environ.get("DEEPEN_DECODE_BATCH_DELAY", "0"))  # test hook: slows jobs down to kill them
    members = ensemble.members if ensemble.fuses else ensemble.members[:1]
    records = []
    starts = list(range(mine.start, mine.stop, batch_size))

    def record(r, g=None, error=None):
        if error is not None:
            _log(f"row {r['id']}: {error}")
            return {"id": r["id"], "text": "", "token_ids": [], "choice": None, "stop_reason": f"error: {error}",
                    "seconds": 0.0}
        return {"id": r["id"], "text": g.text, "token_ids": [int(t) for t in g.token_ids], "choice": g.choice,
                "stop_reason": g.stop_reason, "seconds": float(g.seconds)}

    def generate(batch):
        return ensemble.generate(
            [r["prompt"] for r in batch], max_new_tokens=batch[0]["max_new_tokens"],
            stop=[r["stop"] for r in batch], choices=[r["choices"] or None for r in batch] if any(
                r["choices"] for r in batch) else None,
            batch_size=batch_size, sources=[r.get("source") for r in batch],
            src_lang=[r.get("source_lang") for r in batch], tgt_lang=[r.get("target_lang") for r in batch],
        )

    for b, start in enumerate(starts):
        batch = rows[start : min(start + batch_size, mine.stop)]
        errors = {r["id"]: context_error(members, r["prompt"], r["max_new_tokens"], r.get("source"),
                                         r.get("source_lang"), r.get("target_lang")) for r in batch}
        outs = {}
        # one generate call per budget (a task's rows share one, so this is one call): a row never decodes past its
        # own max_new_tokens because of the rows it is batched with
        for budget in dict.fromkeys(r["max_new_tokens"] for r in batch):
            ok = [r for r in batch if errors[r["id"]] is None and r["max_new_tokens"] == budget]
            if not ok:
                continue
            try:
                outs.update(zip([r["id"] for r in ok], generate(ok)))
            except ContextWindowError:  # some row outgrew a window while decoding: find it, decode the rest alone
                for r in ok:
                    try:
                        outs[r["id"]] = generate([r])[0]
                    except ContextWindowError as exc:
                        errors[r["id"]] = str(exc)
        for r in batch:
            records.append(record(r, outs.get(r["id"]), errors[r["id"]]))
        _log(f"batch {b + 1}/{len(starts)} done ({len(records)} rows)")
        if delay:
            time.sleep(delay)
    schema = PREDICTION_SCHEMA.append(pa.field("seconds", pa.float64()))
    write_table(pa.Table.from_pylist(records, schema=schema), out)
    return len(records)


def gather(shard_paths: list[str], predictions_out: str | os.PathLike, timings_out: str | os.PathLike) -> int:
    """Concatenate shards in order: predictions (no wall times, so identical for any shard count) and timings."""
    tables = [read_table(p) for p in shard_paths]
    table = pa.concat_tables(tables) if tables else PREDICTION_SCHEMA.empty_table()
    write_table(table.select(PREDICTION_SCHEMA.names).cast(PREDICTION_SCHEMA), predictions_out)
    n_tokens = pa.array([len(t) for t in table["token_ids"].to_pylist()], pa.int64())
    timings = pa.table({"id": table["id"], "seconds": table["seconds"], "n_tokens": n_tokens}, schema=TIMING_SCHEMA)
    write_table(timings, timings_out)
    return table.num_rows


# -- 7. score --------------------------------------------------------------------------------------------------------

SCORE_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("correct", pa.float64()),  # the paper's metric (MC: the option chosen among the options after fusion)
    ("correct_free", pa.float64()),  # MC: the letter of the unrestricted greedy output; else = correct
    ("seconds", pa.float64()),
    ("n_tokens", pa.int64()),
])


def score_predictions(task: str, prompts: list[dict], predictions: list[dict],
                      timings: list[dict] | None = None) -> pa.Table:
    """Per-row scores of ``predictions`` against the gold of ``prompts`` (matched by id)."""
    from deepen.scores import choice_correct, score_row
    from deepen.tasks import get_task

    by_id = {p["id"]: p for p in prompts}
    times = {t["id"]: t for t in (timings or [])}
    if set(by_id) != {p["id"] for p in predictions}:
        raise DeepenError(f"{task}: predictions and prompts hold different ids")
    mc = get_task(task).multiple_choice
    records = []
    for pred in predictions:
        row = by_id[pred["id"]]
        free = score_row(task, pred["text"], row["answers"], choice=None, choices=row["choices"])
        correct = choice_correct(pred.get("choice"), row["answers"][0]) if mc else free
        t = times.get(pred["id"], {})
        records.append({"id": pred["id"], "correct": correct, "correct_free": free, "seconds": t.get("seconds"),
                        "n_tokens": t.get("n_tokens", len(pred.get("token_ids") or []))})
    return pa.Table.from_pylist(records, schema=SCORE_SCHEMA)


def score(task: str, prompts_path: str, predictions_path: str, timings_path: str | None, out: str) -> float:
    """Per-row scores to ``out``; returns the task score in percent.

    For metrics that are not a mean of rows (BLEU: corpus BLEU), the task score is computed over the whole file and
    stored in the table's metadata (``metric``, ``score``, ``score_free``, ``signature``); `task_score` reads it.
    """
    from deepen.scores import corpus_bleu
    from deepen.tasks import get_task, read_prompts

    timings = read_table(timings_path).to_pylist() if timings_path else None
    prompts = read_prompts(prompts_path)
    predictions = read_table(predictions_path).to_pylist()
    table = score_predictions(task, prompts, predictions, timings)
    if get_task(task).metric == "bleu":
        gold = {p["id"]: p["answers"] for p in prompts}
        bleu, signature = corpus_bleu([p["text"] for p in predictions], [gold[p["id"]] for p in predictions])
        table = table.replace_schema_metadata({b"metric": b"bleu", b"score": repr(bleu).encode(),
                                               b"score_free": repr(bleu).encode(), b"signature": signature.encode()})
    write_table(table, out)
    return task_score(table)


def task_score(table: pa.Table, column: str = "correct") -> float:
    """The task-level score of a per-row score table, in percent: the corpus-level score stored in its metadata
    (translation: corpus BLEU), else the mean of ``column`` ('correct' or 'correct_free') over the rows."""
    key = b"score" if column == "correct" else b"score_free"
    stored = (table.schema.metadata or {}).get(key)
    return float(stored) if stored is not None else _mean(table[column].to_pylist())


def _mean(values: Iterable[float | None]) -> float:
    values = [v for v in values if v is not None]
    return 100.0 * sum(values) / len(values) if values else float("nan")


# -- DeePEn-Adapt weights ------------------------------------------------------------------------------------------


def adapt_weights(accuracies: list[float]) -> list[float]:
    """Normalised dev accuracies, w_i = acc_i / sum_j acc_j; uniform when all are 0."""
    if any(a < 0 or not math.isfinite(a) for a in accuracies):
        raise DeepenError(f"dev accuracies must be finite and >= 0, got {accuracies}")
    total = sum(accuracies)
    if total == 0:
        return [1.0 / len(accuracies)] * len(accuracies)
    return [a / total for a in accuracies]


def dev_weights(score_paths: list[str], names: list[str], out: str) -> list[float]:
    """DeePEn-Adapt weights of one ensemble and task from its members' dev scores (members in ensemble order)."""
    accs = [task_score(read_table(p)) for p in score_paths]
    accs = [0.0 if math.isnan(a) else a for a in accs]
    weights = adapt_weights(accs)
    write_json({"members": list(names), "dev_accuracy": accs, "weights": weights,
                "rule": "w_i = dev_acc_i / sum_j dev_acc_j (uniform if all 0)"}, out)
    return weights


# -- 8. summary ------------------------------------------------------------------------------------------------------

TASK_TITLES = {"mmlu": "MMLU", "arc_c": "ARC-C", "gsm8k": "GSM8K", "piqa": "PIQA", "triviaqa": "TriviaQA", "nq": "NQ",
               "flores_en_de": "En→De", "flores_de_en": "De→En", "flores_en_ro": "En→Ro", "flores_ro_en": "Ro→En"}
SUMMARY_SCHEMA = pa.schema([
    ("method", pa.string()), ("row", pa.string()), ("kind", pa.string()), ("task", pa.string()), ("n", pa.int64()),
    ("acc", pa.float64()), ("acc_free", pa.float64()), ("delta", pa.float64()), ("seconds", pa.float64()),
    ("tokens", pa.float64()), ("published", pa.float64()), ("ours_minus_published", pa.float64()),
])


def load_published(path: str | os.PathLike) -> dict[tuple[str, str], dict[str, float]]:
    """Published Table 1 (``setting,method,<task titles>``, '#' comments) -> {(setting, method): {task: score}}."""
    import csv

    lines = [line for line in Path(path).read_text().splitlines() if line.strip() and not line.startswith("#")]
    out = {}
    for rec in csv.DictReader(lines):
        key = (rec.pop("setting"), rec.pop("method"))
        out[key] = {task: float(rec[title]) for task, title in TASK_TITLES.items() if rec.get(title, "").strip()}
    return out


def summarise(entries: list[dict], published: dict | None = None) -> pa.Table:
    """One summary row per (method, task).

    ``entries``: dicts with method, row (the Table 1 row label), kind ('single' or 'ensemble'), task, published_key
    ((setting, method) in the published table, or None) and either ``scores`` (a per-row score table) or ``path``.
    Delta is against the best single member on the same task. A task's score is `task_score` (translation: the
    corpus BLEU stored with the per-row scores, not their mean).
    """
    rows = []
    for e in entries:
        table = e["scores"] if "scores" in e else pq.read_table(e["path"])
        secs = [s for s in table["seconds"].to_pylist() if s is not None]
        toks = table["n_tokens"].to_pylist()
        pub = None
        if published and e.get("published_key"):
            pub = published.get(tuple(e["published_key"]), {}).get(e["task"])
        acc = task_score(table)
        rows.append({
            "method": e["method"], "row": e["row"], "kind": e["kind"], "task": e["task"], "n": table.num_rows,
            "acc": acc, "acc_free": task_score(table, "correct_free"), "delta": None,
            "seconds": sum(secs) / len(secs) if secs else None, "tokens": sum(toks) / len(toks) if toks else None,
            "published": pub, "ours_minus_published": None if pub is None else acc - pub,
        })
    best = {}
    for r in rows:
        if r["kind"] == "single":
            best[r["task"]] = max(best.get(r["task"], -math.inf), r["acc"])
    for r in rows:
        if r["task"] in best:
            r["delta"] = r["acc"] - best[r["task"]]
    return pa.Table.from_pylist(rows, schema=SUMMARY_SCHEMA)


def _fmt(x, signed: bool = False, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def summary_markdown(table: pa.Table, title: str = "DeePEn results") -> str:
    """Table 1 style: rows = methods, columns = tasks ("acc (Δ vs best single)"), then latency, free accuracy, paper."""
    recs = table.to_pylist()
    tasks = [t for t in TASK_TITLES if any(r["task"] == t for r in recs)]
    rows = list(dict.fromkeys(r["row"] for r in sorted(recs, key=lambda r: r["kind"] != "single")))
    cell = {(r["row"], r["task"]): r for r in recs}
    head = "| Method | " + " | ".join(TASK_TITLES[t] for t in tasks) + " |"
    rule = "|---|" + "---:|" * len(tasks)

    def grid(fn) -> list[str]:
        lines = [head, rule]
        for row in rows:
            vals = [fn(cell[(row, t)]) if (row, t) in cell else "" for t in tasks]
            lines.append(f"| {row} | " + " | ".join(vals) + " |")
        return lines

    out = [f"# {title}", "",
           "Scores in percent: accuracy (MMLU, ARC-C, PIQA: the option letter that scores highest among the options "
           "after fusion; GSM8K: last number), exact match (TriviaQA, NQ) or corpus BLEU (translation, sacreBLEU). "
           "Δ: against the best single member on the same task.", ""]
    out += grid(lambda r: f"{_fmt(r['acc'])}" + ("" if r["kind"] == "single" else f" ({_fmt(r['delta'], True)})"))
    n = {t: max(r["n"] for r in recs if r["task"] == t) for t in tasks}
    out += ["", "Questions per task: " + ", ".join(f"{TASK_TITLES[t]} {n[t]}" for t in tasks), ""]
    mc = [t for t in tasks if t in ("mmlu", "arc_c", "piqa")]
    if mc:
        out += ["## Multiple choice: unrestricted greedy token", "",
                "Accuracy when the answer is the letter the unrestricted greedy output starts with.", ""]
        out += grid(lambda r: _fmt(r["acc_free"]) if r["task"] in mc else "")
        out.append("")
    out += ["## Latency and length", "", "Mean seconds per question (wall time of its batch / batch rows) and mean "
            "generated tokens.", ""]
    out += grid(lambda r: f"{_fmt(r['seconds'], digits=3)} s / {_fmt(r['tokens'], digits=1)} tok")
    if any(r["published"] is not None for r in recs):
        out += ["", "## Against the paper", "", "Published (Table 1) and ours minus published.", ""]
        out += grid(lambda r: "" if r["published"] is None else
                    f"{_fmt(r['published'])} ({_fmt(r['ours_minus_published'], True)})")
    return "\n".join(out) + "\n"


def write_summary(entries: list[dict], parquet_out: str, markdown_out: str, published_path: str | None = None,
                  title: str = "DeePEn results") -> pa.Table:
    published = load_published(published_path) if published_path else None
    table = summarise(entries, published)
    write_table(table, parquet_out)
    with atomic_path(markdown_out) as tmp:
        Path(tmp).write_text(summary_markdown(table, title))
    return table


def plots(summary_path: str, accuracy_png: str, gain_png: str) -> None:
    """Accuracy per method per task (grouped bars) and ensemble gain over the best single member."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = pq.read_table(summary_path).to_pylist()
    tasks = [t for t in TASK_TITLES if any(r["task"] == t for r in recs)]
    rows = list(dict.fromkeys(r["row"] for r in sorted(recs, key=lambda r: r["kind"] != "single")))
    cell = {(r["row"], r["task"]): r for r in recs}

    def bars(ax, rows_, value):
        width = 0.8 / max(len(rows_), 1)
        for i, row in enumerate(rows_):
            xs = [j + i * width for j, t in enumerate(tasks) if (row, t) in cell]
            ys = [value(cell[(row, t)]) for t in tasks if (row, t) in cell]
            ax.bar(xs, ys, width, label=row)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(tasks))], [TASK_TITLES[t] for t in tasks])
        ax.legend(fontsize=7)

    for path, rows_, value, ylabel, title in [
        (accuracy_png, rows, lambda r: r["acc"], "score (%)", "Accuracy / EM per method and task"),
        (gain_png, [r for r in rows if any(c["row"] == r and c["kind"] != "single" for c in recs)],
         lambda r: r["delta"] or 0.0, "Δ vs best single (points)", "Ensemble gain over the best single member"),
    ]:
        fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(tasks)), 4))
        bars(ax, rows_, value)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.axhline(0, color="black", linewidth=0.5)
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=120)
        plt.close(fig)


# -- config checks (semantic; the JSON schema checks the shapes) -----------------------------------------------------


def check_config(config: dict) -> None:
    """Reject a config that the schema accepts but that makes no sense; raises DeepenError with one line."""
    from deepen.tasks import TASKS

    models = config.get("models") or {}
    tasks = config.get("tasks") or {}
    for t in tasks:
        if t not in TASKS:
            raise DeepenError(f"config: unknown task {t!r}; known tasks: {', '.join(TASKS)}")
    names = set()
    for ens in config.get("ensembles") or []:
        name = ens["name"]
        if name in names or name in models:
            raise DeepenError(f"config: ensemble name {name!r} is used twice (or is also a model key)")
        names.add(name)
        members = ens["members"]
        for m in members:
            if m not in models:
                raise DeepenError(f"config: ensemble {name!r}: member {m!r} is not among models ({', '.join(models)})")
        if len(set(members)) != len(members):
            raise DeepenError(f"config: ensemble {name!r} lists a member twice")
        for t in ens.get("tasks") or []:
            if t not in tasks:
                raise DeepenError(f"config: ensemble {name!r}: task {t!r} is not among tasks ({', '.join(tasks)})")
        if ens.get("eta", 0.15) < 0:
            raise DeepenError(f"config: ensemble {name!r}: eta must be >= 0")
        if ens.get("steps", 5) < 1:
            raise DeepenError(f"config: ensemble {name!r}: steps must be >= 1")
        for v in ens.get("variants") or []:
            if isinstance(v, dict):
                w = v["weights"]
                if len(w) != len(members):
                    raise DeepenError(f"config: ensemble {name!r} variant {v['name']!r}: {len(w)} weights for "
                                      f"{len(members)} members")
                if any(x < 0 for x in w) or abs(sum(w) - 1) > 1e-6:
                    raise DeepenError(f"config: ensemble {name!r} variant {v['name']!r}: weights must be >= 0 and sum "
                                      f"to 1, got {w}")
    for t, spec in tasks.items():
        for key in ("shards", "batch_size"):
            if (spec or {}).get(key, 1) < 1:
                raise DeepenError(f"config: task {t!r}: {key} must be >= 1")
    lo, hi = config.get("min_anchors", 1000), config.get("max_anchors")
    if hi is not None and hi < lo:
        raise DeepenError(f"config: max_anchors ({hi}) is below min_anchors ({lo})")
    from deepen.studies import check_study_config

    check_study_config(config)


def needed_splits(config: dict) -> dict[str, list[str]]:
    """Task -> the data splits a full run reads: test (+ its demonstrations), and dev where DeePEn-Adapt or the
    scaling study's ranking needs it."""
    from deepen.studies import study_dev_tasks
    from deepen.tasks import get_task

    tasks = list(config.get("tasks") or {})
    out = {}
    for t in tasks:
        splits = ["test"]
        for ens in config.get("ensembles") or []:
            if t in (ens.get("tasks") or tasks) and "adapt" in ens.get("variants", ["avg", "adapt"]):
                splits.append("dev")
                break
        if "dev" not in splits and t in study_dev_tasks(config):
            splits.append("dev")
        if get_task(t).n_shot:
            splits.append("demos")
        out[t] = splits
    return out


def check_data(config: dict, prompts_dir: str | os.PathLike = "resources/prompts") -> int:
    """Before any job starts: every task split whose prompts are still to be built is readable under ``data_dir``.

    Runs the line-by-line validation of ``deepen.tasks`` (malformed JSON, missing gold, empty split: the error names
    file and line), so a bad data file stops the run up front rather than in its prompts job. Splits whose prompts
    file already exists are not read again. Returns the number of rows checked.
    """
    from deepen.tasks import check_local

    data_dir = config.get("data_dir", "data/deepen_splits")
    hub = bool(config.get("hub", False))
    root = Path(data_dir)
    if root.exists() and (not root.is_dir() or not os.access(root, os.R_OK | os.X_OK)):
        raise DeepenError(f"config: data_dir {data_dir} is not a readable directory")
    checked = 0
    for task, splits in needed_splits(config).items():
        built = [Path(prompts_dir) / s / f"{task}.parquet" for s in ("test", "dev") if s in splits]
        if all(p.is_file() for p in built):
            continue
        for split in splits:
            checked += check_local(task, split, data_dir, hub=hub)
    return checked
