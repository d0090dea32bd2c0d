"""The model stages before decoding, each file in, file out: materialise, vocabulary, anchors, relative.

    materialise   model source -> safetensors directory + ``<model>.json`` (fingerprint, vocabulary size, file stamps)
    vocabulary    model directory -> Parquet (id, piece, text, bytes, kind)
    anchors       member vocabularies -> Parquet (text, bytes, id_0 .. id_{n-1}; main model first)
    relative      model directory + anchors -> Parquet (anchor unit embeddings + tail clusters: what fast mode needs)
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoConfig, AutoTokenizer

from deepen.anchors import Anchors, find_anchors
from deepen.embedded import embedded_gguf, embedded_name
from deepen.errors import DeepenError, first_line
from deepen.fingerprint import fingerprint
from deepen.members import auto_model_class, check_vocabulary, load_member, resolve_dtype
from deepen.pipeline.studies import ranked_members
from deepen.pipeline.io import metadata, read_json, read_table, with_metadata, write_json, write_table
from deepen.progress import log
from deepen.relative import RelativeSpace
from deepen.sources import materialise_gguf, save_checkpoint
from deepen.vocabulary import Vocabulary, normalise_vocabulary

# -- materialise -----------------------------------------------------------------------------------------------------


def materialise(source: str, out_dir: str | os.PathLike, meta_path: str | os.PathLike, dtype: str = "auto",
                trust_remote_code: bool = False) -> dict:
    """Make ``out_dir`` a safetensors checkpoint of ``source`` and write its metadata JSON to ``meta_path``.

    Embedded names and ``.gguf`` files are dequantised once (fp32); local checkpoints and hub ids are loaded and saved
    again (in ``dtype``), so every later stage reads one local directory. The metadata holds the fingerprint (hash of
    vocabulary + input embeddings), the vocabulary size the ensemble uses, the source and the files' stamps.
    """
    out_dir = Path(out_dir)
    name = embedded_name(source)
    if name is not None:
        # chunked models are assembled into a temporary directory next to the output, removed afterwards
        with tempfile.TemporaryDirectory(prefix=f".{out_dir.name}.gguf.", dir=out_dir.parent) as scratch:
            materialise_gguf(embedded_gguf(name, Path(scratch)), out_dir, name)
    elif str(source).endswith(".gguf"):
        gguf = Path(source).expanduser().resolve()
        if not gguf.is_file():
            raise DeepenError(f"GGUF file not found: {gguf}")
        materialise_gguf(gguf, out_dir, gguf.stem)
    else:
        t0 = time.perf_counter()
        log(f"materialising {source} ...")
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
            model = auto_model_class(source, trust_remote_code).from_pretrained(
                source, dtype=resolve_dtype(dtype, "cpu") if dtype != "auto" else "auto",
                trust_remote_code=trust_remote_code)
        except (OSError, ValueError) as exc:
            raise DeepenError(f"cannot load model {source!r}: {first_line(exc)}") from exc
        check_vocabulary(tokenizer, source)
        save_checkpoint(model, tokenizer, out_dir, {"name": out_dir.name, "source": str(source)})
        log(f"materialised {source} in {time.perf_counter() - t0:.0f} s -> {out_dir}")
    meta = read_json(out_dir / "deepen.json")
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
    model_dir = model_dir if model_dir is not None else member.source
    if meta.get("files") and file_stamps(model_dir) == meta["files"]:
        member._fingerprint = meta["fingerprint"]
        return
    emb = member.model.get_input_embeddings().weight
    loaded = str(emb.dtype).replace("torch.", "")
    where = f" ({meta_path})" if meta_path else ""
    if emb.dtype == torch.float32 or _stored_dtype(model_dir) == loaded:
        fresh = fingerprint(member.tokenizer, member.model)
        if fresh != meta["fingerprint"]:
            raise DeepenError(f"model {member.name}: its files changed since materialisation (fingerprint {fresh}, "
                              f"recorded {meta['fingerprint']}{where}); delete the materialised model and its "
                              "metadata and rerun the pipeline")
    elif meta.get("vocab_size") is not None and emb.shape[0] < int(meta["vocab_size"]):
        raise DeepenError(f"model {member.name}: {emb.shape[0]} embedding rows, {meta['vocab_size']} recorded"
                          f"{where}; delete the materialised model and its metadata and rerun the pipeline")
    member._fingerprint = meta["fingerprint"]


# -- vocabulary, anchors ---------------------------------------------------------------------------------------------


def vocabulary_table(model_dir: str | os.PathLike, meta_path: str | os.PathLike, out: str | os.PathLike) -> int:
    """The member's normalised vocabulary (``deepen.vocabulary``) as Parquet, fingerprint in the metadata."""
    meta = read_json(meta_path)
    vocab = normalise_vocabulary(AutoTokenizer.from_pretrained(str(model_dir)), meta["vocab_size"])
    write_table(with_metadata(vocab.to_table(), fingerprint=meta["fingerprint"]), out)
    return len(vocab)


def anchors_table(vocab_paths: list[str], names: list[str], out: str | os.PathLike, min_anchors: int = 1000,
                  max_anchors: int | None = None) -> int:
    """Anchors of one ensemble (members in ``names`` order, main first); member fingerprints in the metadata."""
    tables = [read_table(p) for p in vocab_paths]
    anchors = find_anchors([Vocabulary.from_table(t) for t in tables], list(names), min_anchors=min_anchors,
                           max_anchors=max_anchors)
    prints = "\t".join(metadata(t, "fingerprint", p) for t, p in zip(tables, vocab_paths))
    write_table(with_metadata(anchors.to_table(), fingerprints=prints), out)
    log(f"{len(anchors)} anchors for {', '.join(names)}")
    return len(anchors)


# -- relative representations ----------------------------------------------------------------------------------------


def relative_table(model_dir: str | os.PathLike, meta_path: str | os.PathLike, anchors_path: str | os.PathLike,
                   member_index: int, out: str | os.PathLike, exact_tail: bool = False) -> int:
    """Member ``member_index``'s relative space against the ensemble's anchors: what fast mode needs.

    One row per anchor (its unit input embedding, its column of the tail clusters' mean rows and a slice of the
    token -> cluster map: ``RelativeSpace.to_table``); the member's fingerprint goes into the metadata and the decode
    stage refuses a cache whose fingerprint is not the loaded model's. Paper mode builds its dense matrices from this
    in memory (they do not fit on disk for large vocabularies). ``exact_tail``: every token's row once, for certified
    fast mode (``RelativeSpace``: exact cluster means and their envelopes).
    """
    meta = read_json(meta_path)
    anchors = Anchors.from_table(read_table(anchors_path))
    member = load_member(str(model_dir), dtype="float32", device="cpu")
    verify_member(member, meta, str(meta_path), model_dir)
    log(f"relative space of {member.name}: {meta['vocab_size']:,} tokens against {len(anchors):,} anchors")
    space = RelativeSpace.of_member(member, anchors.ids[member_index], meta["vocab_size"], exact_tail=exact_tail)
    table = with_metadata(space.to_table(progress=True), fingerprint=meta["fingerprint"],
                          member_index=str(member_index))
    write_table(table, out)
    return space.n_anchors


# -- the scaling study's ensembles (the first k members of a dev ranking) ----------------------------------------


def scaling_anchors(ranking_path: str, vocab_paths: list[str], pool: list[str], k: int, out: str,
                    min_anchors: int = 1000, max_anchors: int | None = None) -> int:
    """Anchors of the scaling ensemble of the first k ranked members (main first)."""
    pick, _ = ranked_members(ranking_path, pool, k)
    return anchors_table([vocab_paths[i] for i in pick], [pool[i] for i in pick], out, min_anchors=min_anchors,
                         max_anchors=max_anchors)


def scaling_relative(ranking_path: str, model_dirs: list[str], meta_paths: list[str], pool: list[str], k: int,
                     rank: int, anchors_path: str, out: str, exact_tail: bool = False) -> int:
    """Relative space of the member at position ``rank`` of the scaling ensemble of the first k ranked members."""
    pick, _ = ranked_members(ranking_path, pool, k)
    if not 0 <= rank < k:
        raise DeepenError(f"rank {rank} is not in 0..{k - 1}")
    i = pick[rank]
    log(f"scaling k={k}: member {rank} is {pool[i]}")
    return relative_table(model_dirs[i], meta_paths[i], anchors_path, rank, out, exact_tail)
