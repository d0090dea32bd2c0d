"""The decode stage: one shard of one (method, task) -> Parquet, with what produced it in its metadata
(``deepen.pipeline.shards``: provenance, the claim on the shard, the watch on the Snakemake that started the job)."""

from __future__ import annotations

import json
import os
import socket

import pyarrow as pa

from deepen.anchors import Anchors
from deepen.ensemble import Ensemble
from deepen.errors import DeepenError
from deepen.eval.task_data import read_prompts
from deepen.members import load_member
from deepen.pipeline.io import metadata, read_json, read_table, with_metadata
from deepen.pipeline.models import verify_member
from deepen.pipeline.schemas import SHARD_SCHEMA
from deepen.pipeline.score import dev_accuracies, within_best
from deepen.pipeline.shards import claim, provenance, shard_rows, watch_parent, write_claimed
from deepen.pipeline.studies import ranked_members
from deepen.progress import log
from deepen.relative import RelativeSpace


def decode_job(inputs: dict, settings: dict, shard: int, n_shards: int, out: str) -> int:
    """The decode rule: the method of ``settings`` (``Experiment.decode_settings``) over the members of ``inputs``
    (``Experiment.decode_inputs``), on shard ``shard`` of ``n_shards`` of the prompts."""
    watch_parent()
    if os.environ.get("SLURM_JOB_ID"):  # which cluster job ran this shard, and the GPUs SLURM gave it
        log(f"SLURM job {os.environ['SLURM_JOB_ID']} on {socket.gethostname()}, "
            f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')}")
    ensemble = ensemble_for(inputs, settings)
    made_from = provenance(settings, list(inputs["metas"]), inputs["prompts"])
    return decode_shard(ensemble, inputs["prompts"], shard, n_shards, out, settings["batch_size"], made_from)


def ensemble_for(inputs: dict, settings: dict) -> Ensemble:
    """The ensemble a decode job runs: its members (the scaling study's first k, UniTE's selection), their weights
    (DeePEn-Adapt's from dev) and η (chosen on dev for a tuned method), over the cached anchors and relative spaces."""
    members = {"names": list(settings["members"]), "models": list(inputs["models"]), "metas": list(inputs["metas"]),
               "remote": list(settings["trust_remote_code"])}
    weights = settings["weights"]
    if "weights" in inputs:  # DeePEn-Adapt: normalised dev accuracies
        weights = read_json(inputs["weights"])["weights"]
        log(f"dev weights {weights}")
    if "ranking" in inputs:  # scaling study: the first k members of the pool by dev accuracy
        pick, dev_weights = ranked_members(inputs["ranking"], members["names"], settings["top_k"])
        members = {k: [v[i] for i in pick] for k, v in members.items()}
        weights = dev_weights if weights == "adapt" else None
        log(f"scaling k={settings['top_k']}: {', '.join(members['names'])} (weights {weights or 'uniform'})")
    options = dict(settings["options"], weights=None if isinstance(weights, str) else weights)
    if options.pop("select", False):
        members, options["weights"] = _selected(inputs, members, options["weights"])
    if "tuning" in inputs:
        options["eta"] = read_json(inputs["tuning"])["eta"]
        log(f"η chosen on dev: {options['eta']}")
    return load_ensemble(members["models"], members["metas"], members["names"], method=settings["method"],
                         options=options, anchors_path=inputs.get("anchors"),
                         relative_paths=list(inputs.get("relative", [])), dtype=settings["dtype"],
                         device_map=settings["device_map"], trust_remote_code=members["remote"])


def _selected(inputs: dict, members: dict, weights: list[float] | None) -> tuple[dict, list[float] | None]:
    """UniTE's selection: the members within 10% of the best on dev, and their weights renormalised."""
    accs = dev_accuracies(list(inputs["dev_scores"]))
    keep = within_best(accs)
    members = {k: [v[i] for i in keep] for k, v in members.items()}
    if weights is not None:
        total = sum(weights[i] for i in keep)
        weights = [weights[i] / total for i in keep] if total else None
    log(f"selected {', '.join(members['names'])} (dev scores {', '.join(f'{a:.1f}' for a in accs)}: within 10% of "
        "the best)")
    return members, weights


def load_ensemble(model_dirs: list[str], meta_paths: list[str], names: list[str], *, method: str = "deepen",
                  options: dict | None = None, anchors_path: str | None = None,
                  relative_paths: list[str] | None = None, dtype: str = "auto", device_map: str | None = None,
                  trust_remote_code: list[bool] | None = None) -> Ensemble:
    """An ``Ensemble`` from materialised members (fingerprints checked) and, for DeePEn, the cached anchors and
    relative spaces (built for exactly these members, or refused)."""
    metas = [read_json(p) for p in meta_paths]
    remote = trust_remote_code or [False] * len(names)
    members = [load_member(str(d), dtype=dtype, device_map=device_map, name=n, trust_remote_code=r)
               for d, n, r in zip(model_dirs, names, remote)]
    for member, meta, meta_path, model_dir in zip(members, metas, meta_paths, model_dirs):
        verify_member(member, meta, str(meta_path), model_dir)
    options = dict(options or {})
    if anchors_path is not None and len(members) > 1:
        options["anchors"] = _cached_anchors(anchors_path, [m["fingerprint"] for m in metas])
        options["spaces"] = [_cached_space(member, meta, path, options["anchors"].ids[i])
                             for i, (member, meta, path) in enumerate(zip(members, metas, relative_paths))]
        options["min_anchors"] = 1
    return Ensemble(members, method, **options)


def _cached_anchors(path: str, fingerprints: list[str]) -> Anchors:
    table = read_table(path)
    recorded = metadata(table, "fingerprints", path).split("\t")
    if recorded != fingerprints:
        raise DeepenError(f"{path} was built for other models (fingerprints {recorded}, the members now are "
                          f"{fingerprints}); delete it and rerun the pipeline")
    return Anchors.from_table(table)


def _cached_space(member, meta: dict, path: str, anchor_ids) -> RelativeSpace:
    table = read_table(path)
    if metadata(table, "fingerprint", path) != meta["fingerprint"]:
        raise DeepenError(f"{path} was built for another version of {member.name}; delete it and rerun the pipeline")
    try:
        return RelativeSpace.of_member(member, anchor_ids, meta["vocab_size"], table=table)
    except (ValueError, KeyError) as exc:
        raise DeepenError(f"{path}: {exc}") from exc


def decode_shard(ensemble: Ensemble, prompts_path: str | os.PathLike, shard: int, n_shards: int,
                 out: str | os.PathLike, batch_size: int, made_from: dict) -> int:
    """Decode shard ``shard`` of ``n_shards`` of a prompts file with ``ensemble``; write one Parquet atomically, with
    ``made_from`` (``provenance``) in its metadata, provided no newer job has claimed the shard meanwhile.

    Rows that cannot be decoded (``Ensemble.generate``: invalid text, a prompt too long for a member) become error
    rows, scored as wrong; the others decode normally."""
    rows = read_prompts(prompts_path)
    span = shard_rows(len(rows), batch_size, shard, n_shards)
    with claim(out) as token:
        records = decode_rows(ensemble, rows[span.start : span.stop], batch_size)
        table = pa.Table.from_pylist(records, schema=SHARD_SCHEMA)
        write_claimed(with_metadata(table, provenance=json.dumps(made_from, sort_keys=True)), out, token)
    return len(records)


def decode_rows(ensemble: Ensemble, rows: list[dict], batch_size: int) -> list[dict]:
    """Prompt rows -> one record per row (the shard columns); rows that could not be decoded are logged."""
    outs = ensemble.generate(
        [r["prompt"] for r in rows], max_new_tokens=[r["max_new_tokens"] for r in rows],
        stop=[r["stop"] for r in rows], choices=[r["choices"] or None for r in rows], batch_size=batch_size,
        sources=[r.get("source") for r in rows], src_lang=[r.get("source_lang") for r in rows],
        tgt_lang=[r.get("target_lang") for r in rows])
    for r, g in zip(rows, outs):
        if g.stop_reason.startswith("error"):
            log(f"row {r['id']}: {g.stop_reason}")
    if ensemble.certificate:
        log(f"certified fast mode, fused steps so far: {ensemble.certificate}")
    return [{"id": r["id"], "text": g.text, "token_ids": [int(t) for t in g.token_ids], "choice": g.choice,
             "stop_reason": g.stop_reason, "ensembled": g.ensembled, "seconds": float(g.seconds)}
            for r, g in zip(rows, outs)]


