import re

# The config, checked once, becomes the experiment model (deepen.pipeline.experiment): the rules read everything from
# it. Input functions are one-liners named after what they return.
from snakemake.utils import validate

from deepen.errors import DeepenError
from deepen.formats import RELATIVE_CACHE
from deepen.pipeline import paths
from deepen.pipeline.config import SCHEMA, check_config, check_data, data_files


validate(config, schema=str(SCHEMA))
try:
    EXPERIMENT = check_config(config)
except DeepenError as exc:
    raise ValueError(str(exc)) from None


wildcard_constraints:
    model="|".join(map(re.escape, EXPERIMENT.models)),
    ensemble="|".join(map(re.escape, EXPERIMENT.ensembles)),
    method="|".join(map(re.escape, EXPERIMENT.methods)),
    task="|".join(EXPERIMENT.tasks),
    split="test|dev",
    k=r"\d+",
    rank=r"\d+",
    param="eta|steps",
    shard=r"\d+",
    n=r"\d+",


def methods_of_kind(*kinds):
    return "|".join(map(re.escape, EXPERIMENT.of_kind(*kinds))) or "^$"


def model_mem_mb(wildcards):
    return EXPERIMENT.models[wildcards.model]["mem_mb"]


def ensemble_members(wildcards):
    return EXPERIMENT.ensembles[wildcards.ensemble]["members"]


def ensemble_vocabularies(wildcards):
    return [paths.VOCABULARY.format(model=m) for m in ensemble_members(wildcards)]


def ensemble_certifies(wildcards):
    return EXPERIMENT.certifies(wildcards.ensemble)


def member_index(wildcards):
    return ensemble_members(wildcards).index(wildcards.model)


def prompt_data_files(wildcards):
    return data_files(config, wildcards.task, wildcards.split)


def prompt_limit(wildcards):
    return EXPERIMENT.task_option(wildcards.task, "limit" if wildcards.split == "test" else "dev_limit")


def prompt_offset(wildcards):
    return EXPERIMENT.task_option(wildcards.task, "offset") if wildcards.split == "test" else 0


def prompt_budget(wildcards):
    return EXPERIMENT.task_option(wildcards.task, "max_new_tokens")


def decode_inputs(wildcards):
    return EXPERIMENT.decode_inputs(wildcards.method, wildcards.split, wildcards.task)


def tune_inputs(wildcards):
    return EXPERIMENT.tune_inputs(wildcards.method, wildcards.task)


def decode_settings(wildcards):
    return EXPERIMENT.decode_settings(wildcards.method, wildcards.task)


def decode_mem_mb(wildcards):
    return EXPERIMENT.decode_mem_mb(wildcards.method)


def score_inputs(wildcards):
    inputs = decode_inputs(wildcards)
    shards = EXPERIMENT.shard_paths(wildcards.split, wildcards.method, wildcards.task)
    return {"prompts": inputs["prompts"], "metas": inputs["metas"], "shards": shards}


def combine_inputs(wildcards):
    return EXPERIMENT.combine_inputs(wildcards.method, wildcards.split, wildcards.task)


def combine_rule(wildcards):
    return EXPERIMENT.combine_rule(wildcards.method, wildcards.task)


def combine_candidates(wildcards):
    return list(EXPERIMENT.methods[wildcards.method].candidates)


def adapt_dev_scores(wildcards):
    return EXPERIMENT.adapt_dev_scores(wildcards.ensemble, wildcards.task)


def scaling_dev_scores(wildcards):
    return EXPERIMENT.scaling_dev_scores(wildcards.task)


def sweep_scores(wildcards):
    return [p["path"] for p in EXPERIMENT.sweep_points(wildcards.param)]


def sweep_points(wildcards):
    return EXPERIMENT.sweep_points(wildcards.param)


# Before any job starts (not in dry runs): the task files still to be read exist and parse (file:line in errors).
onstart:
    try:
        check_data(EXPERIMENT)
    except DeepenError as exc:
        raise ValueError(str(exc)) from None
