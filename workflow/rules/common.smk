import re

from snakemake.utils import validate

from deepen.errors import DeepenError
from deepen import pipeline
from deepen.pipeline import check_config


validate(config, schema="../schemas/config.schema.yaml")
try:
    check_config(config)
except DeepenError as exc:
    raise ValueError(str(exc)) from None


MODELS = config["models"]
TASKS = list(config["tasks"])
ENSEMBLES = {e["name"]: e for e in config["ensembles"]}


def _variant_name(variant):
    return variant if isinstance(variant, str) else variant["name"]


def _build_methods():
    """Method name -> spec. Single members are named by their model key, ensemble variants '<ensemble>.<variant>'."""
    methods, per_task = {}, {t: [] for t in TASKS}
    for ens in config["ensembles"]:
        tasks = ens.get("tasks") or TASKS
        setting = ens.get("setting") or ens["name"]
        for task in tasks:
            for m in ens["members"]:
                if m not in methods:
                    label = MODELS[m].get("label", m)
                    methods[m] = dict(kind="single", members=[m], row=label, published_key=["individual", label])
                if m not in per_task[task]:
                    per_task[task].append(m)
        for v in ens.get("variants", ["avg", "adapt"]):
            name = f"{ens['name']}.{_variant_name(v)}"
            title = {"avg": "DeePEn-Avg", "adapt": "DeePEn-Adapt"}.get(_variant_name(v), _variant_name(v))
            methods[name] = dict(
                kind="ensemble", ensemble=ens["name"], members=list(ens["members"]),
                weights=v if isinstance(v, str) else list(v["weights"]),
                row=f"{setting} {title}", published_key=[setting, title],
            )
            for task in tasks:
                per_task[task].append(name)
    order = {m: i for i, m in enumerate(MODELS)}
    for task in TASKS:  # singles first, in model order
        per_task[task].sort(key=lambda n: (methods[n]["kind"] != "single", order.get(n, 0)))
    return methods, per_task


METHODS, TASK_METHODS = _build_methods()


wildcard_constraints:
    model="|".join(MODELS),
    ensemble="|".join(map(re.escape, ENSEMBLES)),
    method="|".join(map(re.escape, METHODS)),
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
    if spec["kind"] == "ensemble":
        ens = spec["ensemble"]
        inputs["anchors"] = f"resources/anchors/{ens}.parquet"
        inputs["relative"] = [f"resources/relative/{ens}/{m}.parquet" for m in spec["members"]]
        if spec["weights"] == "adapt":
            inputs["weights"] = f"results/weights/{ens}/{wildcards.task}.json"
    return inputs


def decode_params(wildcards):
    """Everything that changes a decode's output (params changes rerun the job)."""
    spec = METHODS[wildcards.method]
    ens = ENSEMBLES.get(spec.get("ensemble"), {})
    weights = spec.get("weights")
    return dict(
        members=spec["members"],
        trust_remote_code=[MODELS[m].get("trust_remote_code", False) for m in spec["members"]],
        weights=None if weights in (None, "avg", "adapt") else weights,
        eta=ens.get("eta", 0.15) if ens else 0.0,
        steps=ens.get("steps", 5) if ens else 5,
        mode=ens.get("mode", "fast") if ens else "fast",
        topk=config["topk"],
        mass=config["mass"],
        dtype=config["dtype"],
        batch_size=task_option(wildcards.task, "batch_size"),
    )


def decode_mem_mb(wildcards):
    return sum(MODELS[m].get("mem_mb", 4000) for m in METHODS[wildcards.method]["members"])


def shard_outputs(wildcards):
    k = n_shards(wildcards.split, wildcards.task)
    return [f"results/decode/{wildcards.split}/{wildcards.method}/{wildcards.task}/{s}-of-{k}.parquet"
            for s in range(k)]


def adapt_dev_scores(wildcards):
    return [f"results/scores/dev/{m}/{wildcards.task}.parquet" for m in ENSEMBLES[wildcards.ensemble]["members"]]


def test_scores():
    return [f"results/scores/test/{m}/{t}.parquet" for t in TASKS for m in TASK_METHODS[t]]


def summary_entries():
    return [
        dict(method=m, task=t, row=METHODS[m]["row"], kind=METHODS[m]["kind"],
             published_key=METHODS[m]["published_key"], path=f"results/scores/test/{m}/{t}.parquet")
        for t in TASKS for m in TASK_METHODS[t]
    ]


# Before any job starts (not in dry runs): the task files still to be read exist and parse (file:line in errors).
onstart:
    try:
        pipeline.check_data(config)
    except DeepenError as exc:
        raise ValueError(str(exc)) from None
