"""Every check of a pipeline config, before any job starts (the top of the pipeline's import graph).

The JSON schema (``config.schema.yaml``, next to this file) declares the shapes and the defaults; Snakemake's
``validate`` applies it in ``workflow/rules/common.smk``. `check_config` then rejects, with one line each, what a
schema cannot: a float where an integer is meant (YAML ``2.0``, which JSON Schema accepts as an integer), NaN or
infinity, unknown tasks, members or methods, names used twice, weights that do not fit their ensemble, studies that
name what is not configured. `check_data` reads every task file a run needs, line by line.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import yaml

from deepen.errors import DeepenError
from deepen.eval.combine import RULES
from deepen.eval.task_data import check_local, task_files
from deepen.eval.tasks import TASKS
from deepen.methods import parse as parse_method
from deepen.pipeline.experiment import Experiment, method_spec

SCHEMA = Path(__file__).with_name("config.schema.yaml")
RESERVED_ENSEMBLE_NAMES = ("scaling",)


def schema() -> dict:
    return yaml.safe_load(SCHEMA.read_text())


def check_config(config: dict) -> Experiment:
    """Reject a config that the schema accepts but that makes no sense (DeepenError, one line); return its
    `Experiment`. ``config`` has been validated against the schema, defaults filled in."""
    check_types(config, schema(), "config")
    models, tasks = config["models"], config["tasks"]
    for t in tasks:
        if t not in TASKS:
            raise DeepenError(f"config: unknown task {t!r}; known tasks: {', '.join(TASKS)}")
    names = set()
    for ens in config["ensembles"]:
        _check_ensemble(ens, models, tasks, names)
    lo, hi = config["min_anchors"], config["max_anchors"]
    if hi is not None and hi < lo:
        raise DeepenError(f"config: max_anchors ({hi}) is below min_anchors ({lo})")
    _check_scaling(config.get("scaling"), models, tasks)
    _check_sweeps(config.get("sweeps"), {e["name"]: e for e in config["ensembles"]}, tasks)
    return Experiment(config)


def check_types(value, spec: dict, where: str) -> None:
    """What JSON Schema lets through: a float for an integer (2.0), NaN or infinity for a number; walks ``value``
    along the schema ``spec`` (properties, additionalProperties, items, oneOf/if-then branches)."""
    types = spec.get("type", [])
    types = [types] if isinstance(types, str) else types
    if isinstance(value, bool):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise DeepenError(f"{where}: {value} is not a finite number")
        if "integer" in types and "number" not in types:
            raise DeepenError(f"{where}: must be an integer, got {value!r}")
    elif isinstance(value, dict):
        props = spec.get("properties", {}) | spec.get("then", {}).get("properties", {})
        extra = spec.get("additionalProperties")
        for key, item in value.items():
            sub = props.get(key, extra if isinstance(extra, dict) else {})
            check_types(item, sub, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_types(item, spec.get("items", {}), f"{where}[{i}]")
    for branch in spec.get("oneOf", []):
        if isinstance(value, dict) == (branch.get("type") == "object"):
            check_types(value, {k: v for k, v in branch.items() if k != "oneOf"}, where)


def _check_ensemble(ens: dict, models: dict, tasks: dict, names: set) -> None:
    name, members = ens["name"], ens["members"]
    where = f"config: ensemble {name!r}"
    if name in names or name in models or name in RESERVED_ENSEMBLE_NAMES:
        raise DeepenError(f"{where}: the name is used twice, is also a model key, or is reserved")
    names.add(name)
    for m in members:
        if m not in models:
            raise DeepenError(f"{where}: member {m!r} is not among models ({', '.join(models)})")
    if len(set(members)) != len(members):
        raise DeepenError(f"{where} lists a member twice")
    for t in ens.get("tasks") or []:
        if t not in tasks:
            raise DeepenError(f"{where}: task {t!r} is not among tasks ({', '.join(tasks)})")
    seen = set()
    for entry in ens["methods"]:
        suffix, algorithm, weights = method_spec(entry)
        try:
            parse_method(algorithm)
        except DeepenError as exc:
            raise DeepenError(f"{where}: {exc}") from None
        if suffix in seen or suffix in RULES:
            raise DeepenError(f"{where}: method {suffix!r} is listed twice, or its name is reserved")
        seen.add(suffix)
        if not isinstance(weights, str):
            if len(weights) != len(members):
                raise DeepenError(f"{where} method {suffix!r}: {len(weights)} weights for {len(members)} members")
            if abs(sum(weights) - 1) > 1e-6:
                raise DeepenError(f"{where} method {suffix!r}: weights must sum to 1, got {list(weights)}")
    combine = ens.get("combine")
    if isinstance(combine, dict) and combine.get("variant") and combine["variant"] not in seen:
        raise DeepenError(f"{where}: combine variant {combine['variant']!r} is not among its methods "
                          f"({', '.join(sorted(seen))})")
    _check_tuning(ens, where)


def _check_tuning(ens: dict, where: str) -> None:
    grid = ens.get("tune_eta") or []
    if len(set(grid)) != len(grid):
        raise DeepenError(f"{where}: tune_eta lists a value twice: {grid}")
    if grid and not any(method_spec(e)[1] == "deepen" for e in ens["methods"]):
        raise DeepenError(f"{where}: tune_eta tunes DeePEn's η, but none of its methods is DeePEn (deepen.avg, "
                          f"deepen.adapt or a {{name, method: deepen, weights}} entry)")


def _check_scaling(scaling: dict | None, models: dict, tasks: dict) -> None:
    if not scaling:
        return
    pool = scaling.get("members") or list(models)
    for m in pool:
        if m not in models:
            raise DeepenError(f"config: scaling member {m!r} is not among models ({', '.join(models)})")
    if len(pool) < 2 or len(set(pool)) != len(pool):
        raise DeepenError("config: scaling needs at least 2 distinct members")
    if scaling.get("max_members") is not None and scaling["max_members"] > len(pool):
        raise DeepenError(f"config: scaling max_members ({scaling['max_members']}) exceeds the {len(pool)} members")
    for t in scaling["tasks"]:
        if t not in tasks:
            raise DeepenError(f"config: scaling task {t!r} is not among tasks ({', '.join(tasks)})")


def _check_sweeps(sweeps: dict | None, ensembles: dict, tasks: dict) -> None:
    if not sweeps:
        return
    if sweeps["ensemble"] not in ensembles:
        raise DeepenError(f"config: sweeps ensemble {sweeps['ensemble']!r} is not among ensembles "
                          f"({', '.join(ensembles)})")
    for t in sweeps["tasks"]:
        if t not in tasks:
            raise DeepenError(f"config: sweeps task {t!r} is not among tasks ({', '.join(tasks)})")
    if not (sweeps.get("eta") or sweeps.get("steps")):
        raise DeepenError("config: sweeps needs eta and/or steps values")


def check_data(experiment: Experiment, prompts_dir: str | os.PathLike = "resources/prompts") -> int:
    """Before any job starts: every task split whose prompts are still to be built is readable under ``data_dir``.

    Runs the line-by-line validation of ``deepen.eval.task_data`` (malformed JSON, a missing or empty field, no gold:
    the error names file and line), so a bad data file stops the run up front rather than in its prompts job. Splits
    whose prompts file already exists are not read again. Returns the number of rows checked.
    """
    config = experiment.config
    root = Path(config["data_dir"])
    if root.exists() and (not root.is_dir() or not os.access(root, os.R_OK | os.X_OK)):
        raise DeepenError(f"config: data_dir {root} is not a readable directory")
    checked = 0
    for task, splits in experiment.needed_splits().items():
        built = [Path(prompts_dir) / s / f"{task}.parquet" for s in ("test", "dev") if s in splits]
        if all(p.is_file() for p in built):
            continue
        for split in splits:
            checked += check_local(task, split, root, hub=config["hub"])
    return checked


def data_files(config: dict, task: str, split: str) -> list[str]:
    """The data files the prompts of ``task``'s ``split`` are built from (the split and its demonstrations), so a
    changed file rebuilds exactly its prompts and what follows; [] when they come from the Hub."""
    return [str(p) for p in task_files(task, split, config["data_dir"])]
