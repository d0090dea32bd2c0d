import re

from snakemake.utils import validate

from deepen.errors import DeepenError
from deepen import pipeline
from deepen.pipeline import check_config
from deepen import combine as combining
from deepen.tasks import get_task
from deepen.relative import CACHE_FORMAT as RELATIVE_FORMAT


validate(config, schema="../schemas/config.schema.yaml")
try:
    check_config(config)
except DeepenError as exc:
    raise ValueError(str(exc)) from None


MODELS = config["models"]
TASKS = list(config["tasks"])
ENSEMBLES = {e["name"]: e for e in config["ensembles"]}
# Members the scaling study ranks on dev (config order = the tie-break); [] when the study is off.
SCALING_POOL = list((config.get("scaling") or {}).get("members") or MODELS) if config.get("scaling") else []


def _variant_name(variant):
    return variant if isinstance(variant, str) else variant["name"]


def _combine_spec(ens):
    """The ensemble's `combine` option as (rules, DeePEn variant joining the pool); ((), None) when off."""
    combine = ens.get("combine") or False
    if combine is False:
        return (), None
    combine = {} if combine is True else combine
    variants = [_variant_name(v) for v in ens.get("variants", ["avg", "adapt"])]
    variant = combine.get("variant") or ("adapt" if "adapt" in variants else variants[0])
    return tuple(combine.get("rules", combining.RULES)), variant


def _build_methods():
    """Method name -> spec, task -> its methods in the summary, and the summary's row order.

    Single members are named by their model key; ensemble variants '<ensemble>.<variant>'; Voting / MBR over an
    ensemble's members '<ensemble>.voting' / '<ensemble>.mbr' and DeePEn+Voting/MBR '<ensemble>.<variant>+voting-mbr'
    (deepen.combine: no decoding, they read the cached predictions); scaling ensembles 'scaling.k<k>' and sweep points
    '<ensemble>.<variant>.eta<η>' / '.T<T>' (deepen.studies; not rows of the summary).
    """
    methods, per_task, rows = {}, {t: [] for t in TASKS}, [MODELS[m].get("label", m) for m in MODELS]

    def single(m, task):
        if m not in methods:
            label = MODELS[m].get("label", m)
            methods[m] = dict(kind="single", members=[m], row=label, published_key=["individual", label])
        if m not in per_task[task]:
            per_task[task].append(m)

    for ens in config["ensembles"]:
        tasks = ens.get("tasks") or TASKS
        setting = ens.get("setting") or ens["name"]
        for task in tasks:
            for m in ens["members"]:
                single(m, task)
        rules_, with_variant = _combine_spec(ens)
        combined = {r: [t for t in tasks if r in combining.combiners(get_task(t).metric)] for r in rules_}
        for r, title in [("voting", "Voting"), ("mbr", "MBR")]:
            if r in rules_:
                rows.append(f"{setting} {title}")
            if combined.get(r):
                methods[f"{ens['name']}.{r}"] = dict(
                    kind="combine", ensemble=ens["name"], members=list(ens["members"]), rule=r,
                    candidates=list(ens["members"]), row=f"{setting} {title}", published_key=[setting, title],
                )
                for task in combined[r]:
                    per_task[task].append(f"{ens['name']}.{r}")
        for v in ens.get("variants", ["avg", "adapt"]):
            name = f"{ens['name']}.{_variant_name(v)}"
            title = {"avg": "DeePEn-Avg", "adapt": "DeePEn-Adapt"}.get(_variant_name(v), _variant_name(v))
            methods[name] = dict(
                kind="ensemble", ensemble=ens["name"], members=list(ens["members"]),
                weights=v if isinstance(v, str) else list(v["weights"]),
                row=f"{setting} {title}", published_key=[setting, title],
            )
            rows.append(methods[name]["row"])
            for task in tasks:
                per_task[task].append(name)
        if combined.get("deepen"):
            name, title = f"{ens['name']}.{with_variant}+voting-mbr", "DeePEn+Voting/MBR"
            methods[name] = dict(
                kind="combine", ensemble=ens["name"], members=list(ens["members"]), rule="deepen",
                candidates=[f"{ens['name']}.{with_variant}", *ens["members"]], row=f"{setting} {title}",
                published_key=[setting, title],
            )
            rows.append(methods[name]["row"])
            for task in combined["deepen"]:
                per_task[task].append(name)
    scaling = config.get("scaling") or {}
    for task in scaling.get("tasks") or []:  # the pool's members alone: ranked on dev, k = 1, rows of the summary
        for m in scaling.get("members") or MODELS:
            single(m, task)
    for k in range(2, len(SCALING_POOL) + 1 if scaling.get("max_members") is None else scaling["max_members"] + 1):
        methods[f"scaling.k{k}"] = dict(
            kind="scaling", k=k, members=list(SCALING_POOL), weights=scaling.get("variant", "avg"),
            eta=scaling.get("eta", 0.15), steps=scaling.get("steps", 5), mode=scaling.get("mode", "fast"),
        )
    sweeps = config.get("sweeps") or {}
    if sweeps:
        ens, variant = ENSEMBLES[sweeps["ensemble"]], sweeps.get("variant", "avg")
        base = f"{ens['name']}.{variant}"
        if base not in methods:
            methods[base] = dict(kind="sweep", ensemble=ens["name"], members=list(ens["members"]), weights=variant)
        for param, key in [("eta", "eta"), ("steps", "T")]:
            for value in sweeps.get(param) or []:
                if value == ens.get(param, {"eta": 0.15, "steps": 5}[param]):
                    continue  # the ensemble's own setting: its ordinary method
                methods[f"{base}.{key}{value:g}"] = dict(
                    kind="sweep", ensemble=ens["name"], members=list(ens["members"]), weights=variant,
                    **{param: value},
                )
    order = {m: i for i, m in enumerate(MODELS)}
    for task in TASKS:  # singles first, in model order
        per_task[task].sort(key=lambda n: (methods[n]["kind"] != "single", order.get(n, 0)))
    return methods, per_task, list(dict.fromkeys(rows))


METHODS, TASK_METHODS, ROW_ORDER = _build_methods()


wildcard_constraints:
    model="|".join(MODELS),
    ensemble="|".join(map(re.escape, ENSEMBLES)),
    method="|".join(map(re.escape, METHODS)),
    k=r"\d+",
    rank=r"\d+",
    param="eta|steps",
    task="|".join(TASKS),
    split="test|dev",
    shard=r"\d+",
    n=r"\d+",


def task_option(task, key):
    defaults = {"limit": None, "offset": 0, "dev_limit": None, "max_new_tokens": None, "shards": 1, "batch_size": 1}
    return (config["tasks"][task] or {}).get(key, defaults[key])


def n_shards(split, task):
    return task_option(task, "shards") if split == "test" else 1


# -- input functions -------------------------------------------------------------------------------------------------


def ensemble_vocabularies(wildcards):
    return [f"resources/vocabularies/{m}.parquet" for m in ENSEMBLES[wildcards.ensemble]["members"]]


def member_index(wildcards):
    return ENSEMBLES[wildcards.ensemble]["members"].index(wildcards.model)


def decode_inputs(wildcards):
    spec = METHODS[wildcards.method]
    inputs = {
        "prompts": f"resources/prompts/{wildcards.split}/{wildcards.task}.parquet",
        "models": [f"resources/models/{m}" for m in spec["members"]],
        "metas": [f"resources/models/{m}.json" for m in spec["members"]],
    }
    if spec["kind"] in ("ensemble", "sweep"):
        ens = spec["ensemble"]
        inputs["anchors"] = f"resources/anchors/{ens}.parquet"
        inputs["relative"] = [f"resources/relative/{ens}/{m}.parquet" for m in spec["members"]]
        if spec["weights"] == "adapt":
            inputs["weights"] = f"results/weights/{ens}/{wildcards.task}.json"
    if spec["kind"] == "scaling":  # the whole pool comes in; the job keeps the first k of the dev ranking
        scaled = f"resources/scaling/{wildcards.task}/k{spec['k']}"
        inputs["ranking"] = f"results/scaling/{wildcards.task}/ranking.json"
        inputs["anchors"] = f"{scaled}/anchors.parquet"
        inputs["relative"] = [f"{scaled}/relative/{r}.parquet" for r in range(spec["k"])]
    return inputs


def decode_params(wildcards):
    """Everything that changes a decode's output (params changes rerun the job)."""
    spec = METHODS[wildcards.method]
    ens = ENSEMBLES.get(spec.get("ensemble"), {})
    if spec["kind"] == "scaling":
        ens = spec
    weights = spec.get("weights")
    params = dict(
        members=spec["members"],
        trust_remote_code=[MODELS[m].get("trust_remote_code", False) for m in spec["members"]],
        weights=None if weights in (None, "avg", "adapt") else weights,
        eta=spec.get("eta", ens.get("eta", 0.15)) if ens else 0.0,
        steps=spec.get("steps", ens.get("steps", 5)) if ens else 5,
        mode=ens.get("mode", "fast") if ens else "fast",
        topk=config["topk"],
        mass=config["mass"],
        dtype=config["dtype"],
        batch_size=task_option(wildcards.task, "batch_size"),
    )
    if spec["kind"] == "scaling":  # members = the pool; the job takes the first k by dev rank (Adapt: dev weights)
        params.update(top_k=spec["k"], dev_weights=weights == "adapt")
    return params


def decode_mem_mb(wildcards):
    spec = METHODS[wildcards.method]
    mem = sorted((MODELS[m].get("mem_mb", 4000) for m in spec["members"]), reverse=True)
    return sum(mem[: spec["k"]] if spec["kind"] == "scaling" else mem)  # scaling: the k largest of the pool


def shard_outputs(wildcards):
    k = n_shards(wildcards.split, wildcards.task)
    return [f"results/decode/{wildcards.split}/{wildcards.method}/{wildcards.task}/{s}-of-{k}.parquet"
            for s in range(k)]


def adapt_dev_scores(wildcards):
    return [f"results/scores/dev/{m}/{wildcards.task}.parquet" for m in ENSEMBLES[wildcards.ensemble]["members"]]


def test_scores():
    return [f"results/scores/test/{m}/{t}.parquet" for t in TASKS for m in TASK_METHODS[t]]


def summary_entries():
    """One entry per (method, task) of the summary, in row order (singles, then each ensemble's rows as Table 1)."""
    entries = [
        dict(method=m, task=t, row=METHODS[m]["row"], kind=METHODS[m]["kind"],
             published_key=METHODS[m]["published_key"], path=f"results/scores/test/{m}/{t}.parquet")
        for t in TASKS for m in TASK_METHODS[t]
    ]
    return sorted(entries, key=lambda e: ROW_ORDER.index(e["row"]))


# -- Voting / MBR (deepen.combine) -----------------------------------------------------------------------------------


def combined(wildcards):
    """Candidates' cached predictions and timings, in pool order, and the task's prompts."""
    spec = METHODS[wildcards.method]
    return {
        "prompts": f"resources/prompts/{wildcards.split}/{wildcards.task}.parquet",
        "predictions": [f"results/predictions/{wildcards.split}/{m}/{wildcards.task}.parquet"
                        for m in spec["candidates"]],
        "timings": [f"results/timings/{wildcards.split}/{m}/{wildcards.task}.parquet" for m in spec["candidates"]],
    }


def combine_candidates(wildcards):
    """The candidates' method names, in pool order (ties go to the earliest)."""
    return METHODS[wildcards.method]["candidates"]


def combine_rule(wildcards):
    """'voting' or 'mbr'; DeePEn+Voting/MBR votes where the task has voting, else MBR."""
    rule_ = METHODS[wildcards.method]["rule"]
    return combining.deepen_rule(get_task(wildcards.task).metric) if rule_ == "deepen" else rule_


def methods_of_kind(*kinds):
    return "|".join(re.escape(m) for m, spec in METHODS.items() if spec["kind"] in kinds) or "^$"


# -- scaling and sweeps (deepen.studies) -----------------------------------------------------------------------------


def scaling_dev_scores(wildcards):
    return [f"results/scores/dev/{m}/{wildcards.task}.parquet" for m in SCALING_POOL]


def scaling_inputs():
    tasks = (config.get("scaling") or {}).get("tasks") or []
    return {
        "rankings": [f"results/scaling/{t}/ranking.json" for t in tasks],
        "scores": [f"results/scores/test/{m}/{t}.parquet" for t in tasks for m in SCALING_POOL]
        + [f"results/scores/test/{m}/{t}.parquet" for t in tasks for m in METHODS if METHODS[m]["kind"] == "scaling"],
    }


def scaling_spec():
    """task -> its ranking, its members' test scores (k = 1), and the scaling ensembles' test scores (k >= 2)."""
    return {
        t: dict(ranking=f"results/scaling/{t}/ranking.json",
                singles={m: f"results/scores/test/{m}/{t}.parquet" for m in SCALING_POOL},
                ensembles={s["k"]: f"results/scores/test/{m}/{t}.parquet"
                           for m, s in METHODS.items() if s["kind"] == "scaling"})
        for t in (config.get("scaling") or {}).get("tasks") or []
    }


def sweep_points(param):
    """The test points of one sweep: task, value, method, path of its scores."""
    sweeps = config.get("sweeps") or {}
    if not sweeps:
        return []
    ens, variant = ENSEMBLES[sweeps["ensemble"]], sweeps.get("variant", "avg")
    base = f"{ens['name']}.{variant}"
    key = {"eta": "eta", "steps": "T"}[param]
    own = ens.get(param, {"eta": 0.15, "steps": 5}[param])
    points = []
    for t in sweeps.get("tasks") or []:
        for value in sweeps.get(param) or []:
            method = base if value == own else f"{base}.{key}{value:g}"
            points.append(dict(task=t, value=value, method=method, path=f"results/scores/test/{method}/{t}.parquet"))
    return points


def sweep_scores(wildcards):
    return [p["path"] for p in sweep_points(wildcards.param)]


def sweep_params(wildcards):
    return sweep_points(wildcards.param)


def study_targets():
    """The studies' outputs that `rule all` asks for (none when `scaling` / `sweeps` are off)."""
    out = []
    if config.get("scaling"):
        out += ["results/scaling.parquet", "results/scaling.md", "results/plots/scaling.png"]
    for param in ("eta", "steps"):
        if sweep_points(param):
            out += [f"results/sweeps/{param}.parquet", f"results/plots/sweep_{param}.png"]
    return out


# Before any job starts (not in dry runs): the task files still to be read exist and parse (file:line in errors).
onstart:
    try:
        pipeline.check_data(config)
    except DeepenError as exc:
        raise ValueError(str(exc)) from None
