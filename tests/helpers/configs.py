"""Pipeline configs for tests: the default config, a minimal one, and the one table of bad configs that the schema or
``deepen.pipeline.config.check_config`` must reject (each with a fragment of the message that says why)."""

from __future__ import annotations

from pathlib import Path

import yaml

from helpers.pipeline import ROOT


def default_config() -> dict:
    """config/config.yaml as a user edits it (before the schema fills in defaults)."""
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def minimal_config(data_dir: str | Path, models: dict | None = None) -> dict:
    """Two models that are never loaded (nonexistent sources unless ``models`` says otherwise), ARC-C, one ensemble."""
    return {
        "data_dir": str(data_dir),
        "min_anchors": 50,
        "models": models or {"bl": {"source": "/nonexistent/bl"}, "sp": {"source": "/nonexistent/sp"}},
        "tasks": {"arc_c": {"limit": 2, "dev_limit": 2}},
        "ensembles": [{"name": "bl+sp", "members": ["bl", "sp"]}],
    }


def _set_main(c: dict, name: str) -> None:
    c["ensembles"][0]["members"][0] = name


def _methods(c: dict, *methods) -> None:
    c["ensembles"][0]["methods"] = list(methods)


def _task_not_configured(c: dict) -> None:
    c["tasks"].pop("nq")
    c["ensembles"][0]["tasks"] = ["nq"]


# (id, edit of the default config, a fragment of the error). The edits of "wrong type", "main model not a model",
# "weights sum" and "max below min anchors" also apply to `minimal_config` (tests/integration runs them through
# Snakemake on it).
BAD_CONFIGS = [
    # the config's shape (schema)
    ("unknown key", lambda c: c.update(unknown_key=1), "unknown_key"),
    ("wrong type", lambda c: c["tasks"]["arc_c"].update(limit="ten"), "ten"),
    ("eta not a number", lambda c: c["ensembles"][0].update(eta="fast"), "eta"),
    ("no members", lambda c: c["ensembles"][0].pop("members"), "members"),
    ("eta < 0", lambda c: c["ensembles"][0].update(eta=-0.1), "eta"),
    ("steps < 1", lambda c: c["ensembles"][0].update(steps=0), "steps"),
    ("shards < 1", lambda c: c["tasks"]["arc_c"].update(shards=0), "shards"),
    ("unknown task", lambda c: c["tasks"].update(boolq={"limit": 1}), "boolq"),
    ("negative weight", lambda c: _methods(c, {"name": "w", "weights": [1.5, -0.5]}), "-0.5"),
    ("unknown combine rule", lambda c: c["ensembles"][0].update(combine={"rules": ["vote"]}), "vote"),
    ("sweep eta < 0", lambda c: c.update(sweeps={"ensemble": "gemma3+smollm2", "tasks": ["arc_c"], "eta": [-1]}),
     "minimum"),
    # what a schema cannot say (check_config)
    ("member not a model", lambda c: c["ensembles"][0]["members"].__setitem__(1, "nope"), "nope"),
    ("main model not a model", lambda c: _set_main(c, "xx"), "'xx' is not among models"),
    ("weights length", lambda c: _methods(c, {"name": "w", "weights": [1.0]}), "1 weights for 2 members"),
    ("weights sum", lambda c: _methods(c, {"name": "w", "weights": [0.5, 0.6]}), "sum to 1"),
    ("reserved method name", lambda c: _methods(c, "deepen.avg", {"name": "voting", "weights": [0.5, 0.5]}),
     "reserved"),
    ("ensemble task not configured", _task_not_configured, "task 'nq' is not among tasks"),
    ("max below min anchors", lambda c: c.update(min_anchors=50, max_anchors=10),
     "max_anchors (10) is below min_anchors (50)"),
    ("combine variant not a method", lambda c: c["ensembles"][0].update(combine={"variant": "nope"}),
     "combine variant"),
    ("scaling member not a model", lambda c: c.update(scaling={"members": ["smollm2", "nope"], "tasks": ["arc_c"]}),
     "nope"),
    ("scaling one member", lambda c: c.update(scaling={"members": ["smollm2"], "tasks": ["arc_c"]}), "at least 2"),
    ("scaling task unknown", lambda c: c.update(scaling={"tasks": ["boolq"]}), "boolq"),
    ("scaling max_members above pool", lambda c: c.update(scaling={"tasks": ["arc_c"], "max_members": 3}),
     "max_members"),
    ("sweep ensemble unknown", lambda c: c.update(sweeps={"ensemble": "nope", "tasks": ["arc_c"], "eta": [0.1]}),
     "nope"),
    ("sweep without values", lambda c: c.update(sweeps={"ensemble": "gemma3+smollm2", "tasks": ["arc_c"]}),
     "eta and/or steps"),
    # numbers JSON Schema lets through: NaN, infinity, a float where an integer belongs (YAML .nan, .inf, 2.0)
    ("eta nan", lambda c: c["ensembles"][0].update(eta=float("nan")), "not a finite number"),
    ("eta inf", lambda c: c["ensembles"][0].update(eta=float("inf")), "not a finite number"),
    ("weight nan", lambda c: _methods(c, {"name": "w", "weights": [float("nan"), 1.0]}), "not a finite number"),
    ("limit float", lambda c: c["tasks"]["arc_c"].update(limit=2.0), "must be an integer"),
    ("batch_size float", lambda c: c["tasks"]["arc_c"].update(batch_size=2.0), "must be an integer"),
    ("shards float", lambda c: c["tasks"]["arc_c"].update(shards=2.0), "must be an integer"),
    ("steps float", lambda c: c["ensembles"][0].update(steps=2.0), "must be an integer"),
    ("limit 0", lambda c: c["tasks"]["arc_c"].update(limit=0), "minimum"),
    ("unknown method", lambda c: _methods(c, "deepen.avg", "blend"), "unknown method 'blend'"),
    ("method twice", lambda c: _methods(c, "deepen.avg", "deepen"), "listed twice"),
    ("tune_eta twice", lambda c: c["ensembles"][0].update(tune_eta=[0.1, 0.1]), "lists a value twice"),
    ("tune_eta without DeePEn", lambda c: (_methods(c, "gac"), c["ensembles"][0].update(tune_eta=[0.1])),
     "none of its methods is DeePEn"),
    ("tune_eta < 0", lambda c: c["ensembles"][0].update(tune_eta=[-0.5]), "minimum"),
]


def bad_config(name: str):
    """(edit, message) of the entry of BAD_CONFIGS called ``name``."""
    return next((edit, message) for n, edit, message in BAD_CONFIGS if n == name)


def validated(config: dict) -> dict:
    """``config`` checked against the schema with its defaults filled in (what workflow/rules/common.smk does)."""
    from snakemake.utils import validate

    from deepen.pipeline.config import SCHEMA

    validate(config, str(SCHEMA))
    return config


def arc_data(root: Path, test: str | None = None, train: str | None = None) -> Path:
    """A data dir with ARC-Challenge test and train files: three good rows each, unless ``test`` / ``train`` give the
    file's text."""
    import json

    row = {"question": "Which is a planet?", "A": "Mars", "B": "Moon", "C": "Sun", "D": "Io", "answer": "A"}
    good = "\n".join(json.dumps(dict(row, question=f"Q{i}?")) for i in range(3)) + "\n"
    (root / "ARC-Challenge").mkdir(parents=True)
    (root / "ARC-Challenge" / "test.jsonl").write_text(good if test is None else test)
    (root / "ARC-Challenge" / "train.jsonl").write_text(good if train is None else train)
    return root
