"""The experiment model: which methods a config runs on which tasks, what each decode needs, what the summary shows.

A validated config (``deepen.pipeline.config``: schema defaults filled in, semantic checks passed) becomes an
`Experiment`: a set of named `Method` objects, the methods of each task's summary and the summary's row order. The
Snakemake rules read everything from it (their input functions are one-liners); it is unit-tested on its own.

Method names (the ``{method}`` of every result path):

    <model>                          a member alone (the same decoding loop with one member)
    <ensemble>.<method>.<weights>    a decoding method over an ensemble: deepen.avg (DeePEn-Avg, uniform weights),
                                     deepen.adapt (DeePEn-Adapt, normalised dev accuracies), <ensemble>.<custom name>
    <ensemble>.deepen.<weights>.tuned  the same with η chosen on the dev split per task (the ensemble's tune_eta)
    <ensemble>.voting / .mbr         Voting / MBR over the members' cached predictions (no decoding)
    <ensemble>.<variant>+voting-mbr  DeePEn+Voting/MBR: the variant's output joins the candidates in front
    scaling.k<k>                     DeePEn over the first k members of the dev ranking (not a summary row)
    <ensemble>.<variant>.eta<η>/.T<T>  points of the η / T sweeps (not summary rows)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from deepen.eval import combine as combining
from deepen.eval.tasks import get_task
from deepen.exactness import certifies
from deepen.pipeline import paths

TITLES = {"deepen": "DeePEn", "gac": "GaC", "unite": "UniTE", "safe": "SAFE"}
WEIGHTINGS = ("avg", "adapt")


@dataclass(frozen=True)
class Method:
    """One method of the experiment.

    Attributes:
        name: its name in result paths.
        kind: 'single' (a member alone), 'ensemble' (a decoding method over a configured ensemble), 'combine'
            (Voting / MBR over cached predictions), 'scaling' or 'sweep' (the studies).
        members: model keys, main model first (scaling: the whole pool, ranked per task by the decode job).
        row / published_key: its row in the summary and in the published table (None: not a summary row).
        ensemble: the configured ensemble whose anchors and relative caches it reads.
        algorithm: the library's decoding method (``deepen.methods``), for decoded methods.
        weights: 'avg', 'adapt' (dev accuracies, per task) or explicit weights.
        options: the algorithm's options (DeePEn: eta, steps, mode, topk, mass).
        rule / candidates: Voting / MBR: the rule and the candidate methods, in pool order.
        k: scaling: the number of members.
        tune: the η values tried on the dev split (a method whose η is chosen there, per task); () = a fixed η.
    """

    name: str
    kind: str
    members: tuple[str, ...]
    row: str | None = None
    published_key: tuple[str, str] | None = None
    ensemble: str | None = None
    algorithm: str | None = None
    weights: str | tuple[float, ...] = "avg"
    options: dict = field(default_factory=dict, compare=False)
    rule: str | None = None
    candidates: tuple[str, ...] = ()
    k: int | None = None
    tune: tuple[float, ...] = ()

    @property
    def decoded(self) -> bool:
        return self.kind != "combine"

    @property
    def family(self) -> str:
        """What kind of method it is, for tables and plots: single, deepen, gac, unite, safe, voting, mbr, combine."""
        if self.kind == "combine":
            return {"voting": "voting", "mbr": "mbr"}.get(self.rule, "combine")
        return "single" if self.kind == "single" else (self.algorithm or "deepen").split("+")[0]

    @property
    def fuses(self) -> bool:
        """Whether its decodes need the ensemble's anchors and relative spaces (DeePEn over several members)."""
        return self.kind in ("ensemble", "sweep", "scaling") and (self.algorithm or "").endswith("deepen") and \
            (any(self.tune) or self.options.get("eta", 1) > 0)

    @property
    def selects(self) -> bool:
        """Whether its decodes keep only the members within 10% of the best on dev (UniTE's selection)."""
        return self.options.get("select", False)


def method_spec(entry) -> tuple[str, str, str | tuple[float, ...]]:
    """(name suffix, algorithm, weights) of one entry of an ensemble's ``methods``: "deepen.adapt",
    {"name": "w64", "method": "deepen", "weights": [0.6, 0.4]}."""
    if isinstance(entry, dict):
        return entry["name"], entry.get("method", "deepen"), tuple(entry["weights"])
    algorithm, _, weighting = entry.partition(".")
    return f"{algorithm}.{weighting or 'avg'}", algorithm, weighting or "avg"


def method_title(algorithm: str, weights) -> str:
    """The Table 1 row title: "DeePEn-Avg", "DeePEn-Adapt" (the paper's names), "GaC", "GaC-Adapt", "SAFE+DeePEn-Avg"
    (a peer with uniform weights, its default, carries no suffix)."""
    base = "+".join(TITLES.get(part, part) for part in algorithm.split("+"))
    if algorithm.split("+")[-1] == "deepen" or weights == "adapt":
        return f"{base}-{weights.capitalize()}"
    return base


class Experiment:
    """The methods of a validated config and everything the rules ask about them."""

    def __init__(self, config: dict):
        self.config = config
        self.models: dict = config["models"]
        self.tasks: list[str] = list(config["tasks"])
        self.ensembles: dict = {e["name"]: e for e in config["ensembles"]}
        scaling = config.get("scaling") or {}
        self.scaling_pool: list[str] = list(scaling.get("members") or self.models) if scaling else []
        self.methods: dict[str, Method] = {}
        self.task_methods: dict[str, list[str]] = {t: [] for t in self.tasks}
        self.rows: list[str] = [m.get("label", k) for k, m in self.models.items()]
        for ens in config["ensembles"]:
            self._add_ensemble(ens)
        self._add_scaling(scaling)
        self._add_sweeps(config.get("sweeps") or {})
        order = {m: i for i, m in enumerate(self.models)}
        for task in self.tasks:  # singles first, in model order
            self.task_methods[task].sort(key=lambda n: (self.methods[n].kind != "single", order.get(n, 0)))
        self.rows = list(dict.fromkeys(self.rows))

    # -- building ------------------------------------------------------------------------------------------------
    def _add(self, method: Method, tasks=()) -> None:
        self.methods.setdefault(method.name, method)
        for task in tasks:
            if method.name not in self.task_methods[task]:
                self.task_methods[task].append(method.name)

    def _single(self, model: str, tasks) -> None:
        label = self.models[model].get("label", model)
        self._add(Method(model, "single", (model,), row=label, published_key=("individual", label),
                         algorithm="deepen"), tasks)

    def deepen_options(self, source: dict) -> dict:
        """DeePEn's settings for an ensemble (or study) entry: its eta, steps, mode; the config's fast-mode settings."""
        c = self.config
        return {"eta": source["eta"], "steps": source["steps"], "mode": source["mode"], "topk": c["topk"],
                "mass": c["mass"], "certify": c["certify"], "max_contenders": c["max_contenders"]}

    def method_options(self, algorithm: str, ensemble: dict) -> dict:
        """The library options of ``algorithm`` (``deepen.methods``) over a configured ensemble."""
        composer, _, base = algorithm.rpartition("+")
        options = self.deepen_options(ensemble) if base == "deepen" else {
            "gac": {"gate": self.config["gac"]["gate"]},
        "unite": {"k": self.config["unite"]["k"], "select": self.config["unite"]["select"]}}.get(base, {})
        if composer == "safe":  # the base method is in the name (safe+<base>), its options are the base's
            options = options | {"draft": self.config["safe"]["draft"]}
        return options

    def _add_ensemble(self, ens: dict) -> None:
        name, members = ens["name"], tuple(ens["members"])
        tasks = ens.get("tasks") or self.tasks
        setting = ens.get("setting") or name
        for m in members:
            self._single(m, tasks)
        rules, variant = combine_spec(ens)
        combined = {r: [t for t in tasks if r in combining.combiners(get_task(t).metric)] for r in rules}
        for rule, title in (("voting", "Voting"), ("mbr", "MBR")):
            if rule in rules:
                self.rows.append(f"{setting} {title}")
            if combined.get(rule):
                self._add(Method(f"{name}.{rule}", "combine", members, row=f"{setting} {title}",
                                 published_key=(setting, title), ensemble=name, rule=rule, candidates=members),
                          combined[rule])
        for entry in ens["methods"]:
            suffix, algorithm, weights = method_spec(entry)
            title = method_title(algorithm, weights) if not isinstance(entry, dict) else entry["name"]
            method = Method(f"{name}.{suffix}", "ensemble", members, row=f"{setting} {title}",
                            published_key=(setting, title), ensemble=name, algorithm=algorithm, weights=weights,
                            options=self.method_options(algorithm, ens))
            self.rows.append(method.row)
            self._add(method, tasks)
            if algorithm == "deepen" and ens["tune_eta"]:
                self._add_tuned(method, ens["tune_eta"], tasks)
        if combined.get("deepen"):
            title = "DeePEn+Voting/MBR"
            self.rows.append(f"{setting} {title}")
            self._add(Method(f"{name}.{variant}+voting-mbr", "combine", members, row=f"{setting} {title}",
                             published_key=(setting, title), ensemble=name, rule="deepen",
                             candidates=(f"{name}.{variant}", *members)), combined["deepen"])

    def _add_tuned(self, fixed: Method, grid: list[float], tasks) -> None:
        """``fixed``'s twin whose η is chosen on each task's dev split among ``grid``."""
        row = f"{fixed.row} (η on dev)"
        self.rows.append(row)
        self._add(Method(f"{fixed.name}.tuned", "ensemble", fixed.members, row=row,
                         published_key=(fixed.published_key[0], f"{fixed.published_key[1]} (η on dev)"),
                         ensemble=fixed.ensemble, algorithm=fixed.algorithm, weights=fixed.weights,
                         options=fixed.options, tune=tuple(grid)), tasks)

    def _add_scaling(self, scaling: dict) -> None:
        if not scaling:
            return
        for task in scaling["tasks"]:  # the pool's members alone: ranked on dev, k = 1, rows of the summary
            for m in self.scaling_pool:
                self._single(m, [task])
        top = scaling.get("max_members") or len(self.scaling_pool)
        for k in range(2, top + 1):
            self._add(Method(f"scaling.k{k}", "scaling", tuple(self.scaling_pool), algorithm="deepen",
                             weights=scaling["variant"], options=self.deepen_options(scaling), k=k))

    def _add_sweeps(self, sweeps: dict) -> None:
        for point in self._sweep_points(sweeps):
            if point["method"] not in self.methods:
                ens = self.ensembles[sweeps["ensemble"]]
                options = self.deepen_options(ens) | {point["param"]: point["value"]}
                self._add(Method(point["method"], "sweep", tuple(ens["members"]), ensemble=ens["name"],
                                 algorithm="deepen", weights=sweeps["variant"], options=options))

    def _sweep_points(self, sweeps: dict) -> list[dict]:
        if not sweeps:
            return []
        ens = self.ensembles[sweeps["ensemble"]]
        base = f"{ens['name']}.deepen.{sweeps['variant']}"
        points = []
        for param, key in (("eta", "eta"), ("steps", "T")):
            for task in sweeps["tasks"]:
                for value in sweeps.get(param) or []:
                    method = base if value == ens[param] else f"{base}.{key}{value:g}"
                    points.append(dict(param=param, task=task, value=value, method=method,
                                       path=paths.SCORES.format(split="test", method=method, task=task)))
        return points

    # -- what the rules ask ------------------------------------------------------------------------------------------
    def certifies(self, ensemble: str | None) -> bool:
        """Whether any DeePEn decode over ``ensemble`` (None: the scaling study's) certifies at one of the η it runs
        (a tuned method: each η of its dev sweep): its relative caches then need the exact tail statistics."""
        return any(certifies(m.options["certify"], m.options["mode"], eta, m.options["steps"])
                   for m in self.methods.values() if m.fuses and m.ensemble == ensemble
                   for eta in (m.tune or (m.options["eta"],)))

    def of_kind(self, *kinds: str) -> list[str]:
        return [n for n, m in self.methods.items() if m.kind in kinds]

    def task_option(self, task: str, key: str):
        return (self.config["tasks"][task] or {})[key]

    def n_shards(self, split: str, task: str) -> int:
        return self.task_option(task, "shards") if split == "test" else 1

    def shard_paths(self, split: str, method: str, task: str) -> list[str]:
        k = self.n_shards(split, task)
        return [paths.SHARD.format(split=split, method=method, task=task, shard=s, n=k) for s in range(k)]

    def decode_inputs(self, method: str, split: str, task: str) -> dict:
        m = self.methods[method]
        inputs = {"prompts": paths.PROMPTS.format(split=split, task=task),
                  "models": [paths.MODEL.format(model=x) for x in m.members],
                  "metas": [paths.MODEL_META.format(model=x) for x in m.members]}
        if m.kind == "scaling":  # the whole pool comes in; the job keeps the first k of the dev ranking
            inputs["ranking"] = paths.RANKING.format(task=task)
            inputs["anchors"] = paths.SCALING_ANCHORS.format(task=task, k=m.k)
            inputs["relative"] = [paths.SCALING_RELATIVE.format(task=task, k=m.k, rank=r) for r in range(m.k)]
        elif m.fuses:
            inputs["anchors"] = paths.ANCHORS.format(ensemble=m.ensemble)
            inputs["relative"] = [paths.RELATIVE.format(ensemble=m.ensemble, model=x) for x in m.members]
        if m.weights == "adapt" and m.kind != "scaling":
            inputs["weights"] = paths.WEIGHTS.format(ensemble=m.ensemble, task=task)
        if m.selects:
            inputs["dev_scores"] = self.adapt_dev_scores(m.ensemble, task)
        if m.tune and split == "test":
            inputs["tuning"] = paths.TUNING.format(method=method, task=task)
        return inputs

    def tune_inputs(self, method: str, task: str) -> dict:
        """What choosing a tuned method's η on a task needs: its decode's inputs on the dev split."""
        return self.decode_inputs(method, "dev", task)

    def decode_settings(self, method: str, task: str) -> dict:
        """Everything that changes a decode's output (a change reruns exactly the affected jobs; every shard records
        it, and the score stage refuses a shard made with other settings)."""
        m = self.methods[method]
        settings = {
            "members": list(m.members), "method": m.algorithm, "options": dict(m.options),
            "weights": m.weights if isinstance(m.weights, str) else list(m.weights),
            "trust_remote_code": [self.models[x].get("trust_remote_code", False) for x in m.members],
            "dtype": self.config["dtype"], "device_map": self.config["device_map"],
            "batch_size": self.task_option(task, "batch_size"),
        }
        if m.kind == "scaling":
            settings["top_k"] = m.k
        if m.tune:
            settings["tune_eta"] = list(m.tune)
        return settings

    def decode_mem_mb(self, method: str) -> int:
        m = self.methods[method]
        mem = sorted((self.models[x].get("mem_mb", 4000) for x in m.members), reverse=True)
        return sum(mem[: m.k] if m.kind == "scaling" else mem)  # scaling: the k largest of the pool

    def combine_inputs(self, method: str, split: str, task: str) -> dict:
        m = self.methods[method]
        return {"prompts": paths.PROMPTS.format(split=split, task=task),
                "predictions": [paths.PREDICTIONS.format(split=split, method=c, task=task) for c in m.candidates],
                "timings": [paths.TIMINGS.format(split=split, method=c, task=task) for c in m.candidates]}

    def combine_rule(self, method: str, task: str) -> str:
        """'voting' or 'mbr'; DeePEn+Voting/MBR votes where the task has voting, else MBR."""
        rule = self.methods[method].rule
        return combining.deepen_rule(get_task(task).metric) if rule == "deepen" else rule

    def adapt_dev_scores(self, ensemble: str, task: str) -> list[str]:
        return [paths.SCORES.format(split="dev", method=m, task=task) for m in self.ensembles[ensemble]["members"]]

    def scaling_dev_scores(self, task: str) -> list[str]:
        return [paths.SCORES.format(split="dev", method=m, task=task) for m in self.scaling_pool]

    def test_scores(self) -> list[str]:
        return [paths.SCORES.format(split="test", method=m, task=t) for t in self.tasks for m in self.task_methods[t]]

    def summary_entries(self) -> list[dict]:
        """One entry per (method, task) of the summary, in row order (singles, then each ensemble's rows)."""
        entries = [dict(method=n, task=t, row=self.methods[n].row, kind=self.methods[n].kind,
                        family=self.methods[n].family, published_key=list(self.methods[n].published_key),
                        path=paths.SCORES.format(split="test", method=n, task=t),
                        **({"tuning": paths.TUNING.format(method=n, task=t)} if self.methods[n].tune else {}))
                   for t in self.tasks for n in self.task_methods[t]]
        return sorted(entries, key=lambda e: self.rows.index(e["row"]))

    def tuning_files(self) -> list[str]:
        """The η choices of the tuned methods, one per task (the summary shows them)."""
        return [e["tuning"] for e in self.summary_entries() if "tuning" in e]

    def scaling_spec(self) -> dict:
        """task -> its ranking, its members' test scores (k = 1), and the scaling ensembles' test scores (k >= 2)."""
        scaling = self.config.get("scaling") or {}
        return {t: dict(ranking=paths.RANKING.format(task=t),
                        singles={m: paths.SCORES.format(split="test", method=m, task=t) for m in self.scaling_pool},
                        ensembles={m.k: paths.SCORES.format(split="test", method=n, task=t)
                                   for n, m in self.methods.items() if m.kind == "scaling"})
                for t in scaling.get("tasks") or []}

    def scaling_inputs(self) -> dict:
        spec = self.scaling_spec()
        return {"rankings": [s["ranking"] for s in spec.values()],
                "scores": [p for s in spec.values() for p in [*s["singles"].values(), *s["ensembles"].values()]]}

    def sweep_points(self, param: str) -> list[dict]:
        return [p for p in self._sweep_points(self.config.get("sweeps") or {}) if p["param"] == param]

    def study_targets(self) -> list[str]:
        """The studies' outputs that `rule all` asks for (none when ``scaling`` / ``sweeps`` are off)."""
        out = [paths.SCALING, paths.SCALING_MD, paths.SCALING_PLOT] if self.config.get("scaling") else []
        for param in ("eta", "steps"):
            if self.sweep_points(param):
                out += [paths.SWEEP.format(param=param), paths.SWEEP_PLOT.format(param=param)]
        return out

    def needed_splits(self) -> dict[str, list[str]]:
        """Task -> the data splits a full run reads: test (+ its demonstrations), and dev where DeePEn-Adapt or the
        scaling study's ranking needs it."""
        dev = {t for n, m in self.methods.items() if (m.weights == "adapt" or m.selects or m.tune) and m.kind != "scaling"
               for t in self.tasks if n in self.task_methods[t] or self._sweeps_task(n, t)}
        dev |= set((self.config.get("scaling") or {}).get("tasks") or [])
        return {t: ["test"] + (["dev"] if t in dev else []) + (["demos"] if get_task(t).n_shot else [])
                for t in self.tasks}

    def _sweeps_task(self, method: str, task: str) -> bool:
        return any(p["method"] == method and p["task"] == task for p in self._sweep_points(
            self.config.get("sweeps") or {}))


def combine_spec(ens: dict) -> tuple[tuple[str, ...], str | None]:
    """An ensemble's ``combine`` option as (rules, the method variant joining the pool); ((), None) when off."""
    combine = ens.get("combine") or False
    if combine is False:
        return (), None
    combine = {} if combine is True else combine
    variants = [method_spec(e)[0] for e in ens["methods"]]
    variant = combine.get("variant") or ("deepen.adapt" if "deepen.adapt" in variants else variants[0])
    return tuple(combine.get("rules") or combining.RULES), variant
