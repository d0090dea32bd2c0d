"""The experiment model (deepen.pipeline.experiment): which methods a config runs, what their decodes need, what the
summary shows; checked on the shipped configs without Snakemake."""

import copy

import pytest
import yaml

from deepen.pipeline import paths
from deepen.pipeline.config import check_config
from deepen.pipeline.decode import ensemble_for
from deepen.pipeline.experiment import method_spec, method_title
from helpers.configs import default_config, validated
from helpers.pipeline import ROOT


@pytest.fixture(scope="module")
def experiment():
    return check_config(validated(default_config()))


def test_method_entries_and_titles():
    assert method_spec("deepen.adapt") == ("deepen.adapt", "deepen", "adapt")
    assert method_spec("gac") == ("gac.avg", "gac", "avg")
    assert method_spec("safe+deepen") == ("safe+deepen.avg", "safe+deepen", "avg")
    assert method_spec({"name": "w64", "method": "deepen", "weights": [0.6, 0.4]}) == ("w64", "deepen", (0.6, 0.4))
    assert [method_title(*m) for m in [("deepen", "avg"), ("deepen", "adapt"), ("gac", "avg"), ("unite", "adapt"),
                                       ("safe+deepen", "avg"), ("safe+gac", "avg")]] == \
        ["DeePEn-Avg", "DeePEn-Adapt", "GaC", "UniTE-Adapt", "SAFE+DeePEn-Avg", "SAFE+GaC"]


def test_default_config_runs_every_method_on_every_task(experiment):
    config = default_config()
    for ens in config["ensembles"]:
        for entry in ens["methods"]:
            name = f"{ens['name']}.{method_spec(entry)[0]}"
            assert experiment.methods[name].kind == "ensemble"
            assert all(name in experiment.task_methods[t] for t in config["tasks"])
    singles = [n for n, m in experiment.methods.items() if m.kind == "single"]
    assert sorted(singles) == sorted(config["models"])


def test_decode_inputs_and_settings_follow_the_method(experiment):
    ens = default_config()["ensembles"][0]["name"]
    deepen = experiment.decode_inputs(f"{ens}.deepen.adapt", "test", "arc_c")
    assert deepen["anchors"] == paths.ANCHORS.format(ensemble=ens)
    assert deepen["weights"] == paths.WEIGHTS.format(ensemble=ens, task="arc_c")
    gac = experiment.decode_inputs(f"{ens}.gac.avg", "test", "arc_c")
    assert "anchors" not in gac and "weights" not in gac  # GaC needs no relative spaces; uniform weights
    settings = experiment.decode_settings(f"{ens}.safe+deepen.avg", "arc_c")
    assert settings["method"] == "safe+deepen" and "base" not in settings["options"]
    assert settings["options"]["eta"] == 0.15 and settings["options"]["draft"] == 5
    single = experiment.decode_settings("smollm2", "arc_c")
    assert single["members"] == ["smollm2"] and experiment.decode_inputs("smollm2", "dev", "nq").keys() == {
        "prompts", "models", "metas"}


def test_summary_rows_in_table_1_order(experiment):
    entries = experiment.summary_entries()
    rows = list(dict.fromkeys(e["row"] for e in entries))
    assert rows[:2] == ["SmolLM2-135M", "Gemma-3-270M"]
    assert {e["family"] for e in entries} >= {"single", "deepen", "gac", "unite", "safe", "voting", "mbr"}
    assert all(e["path"] == paths.SCORES.format(split="test", method=e["method"], task=e["task"]) for e in entries)


def test_dev_splits_only_where_adapt_weights_or_selection_need_them():
    config = validated(default_config())
    for ens in config["ensembles"]:
        ens["methods"] = ["deepen.avg", "gac"]
    config["scaling"] = None
    config["sweeps"] = None
    assert all(s == ["test"] + (["demos"] if t in ("mmlu", "gsm8k", "triviaqa", "nq") else [])
               for t, s in check_config(config).needed_splits().items())
    config["unite"]["select"] = True
    config["ensembles"][0]["methods"] = ["unite"]
    assert all("dev" in s for s in check_config(config).needed_splits().values())


@pytest.mark.parametrize("name", ["paper.yaml", "paper_translation.yaml"])
def test_the_paper_configs_build(name):
    config = validated(yaml.safe_load((ROOT / "config" / name).read_text()))
    experiment = check_config(copy.deepcopy(config))
    assert experiment.methods and all(experiment.task_methods.values())


def test_tune_eta_adds_a_dev_tuned_twin_of_each_deepen_method():
    config = default_config()
    ens = config["ensembles"][0]
    ens["tune_eta"] = [0.05, 0.3]
    experiment = check_config(validated(config))
    name = ens["name"]
    tuned = [n for n, m in experiment.methods.items() if m.tune]
    assert tuned == [f"{name}.deepen.avg.tuned", f"{name}.deepen.adapt.tuned"]  # not the peers
    test = experiment.decode_inputs(tuned[0], "test", "arc_c")
    assert test["tuning"] == paths.TUNING.format(method=tuned[0], task="arc_c")
    dev = experiment.tune_inputs(tuned[0], "arc_c")
    assert "tuning" not in dev and dev["prompts"] == paths.PROMPTS.format(split="dev", task="arc_c")
    assert experiment.decode_settings(tuned[0], "arc_c")["tune_eta"] == [0.05, 0.3]
    assert "tune_eta" not in experiment.decode_settings(f"{name}.deepen.avg", "arc_c")
    rows = [e["row"] for e in experiment.summary_entries() if e["task"] == "arc_c"]
    assert rows.index(experiment.methods[tuned[0]].row) == rows.index(experiment.methods[f"{name}.deepen.avg"].row) + 1
    assert all("dev" in splits for splits in experiment.needed_splits().values())


def test_every_configured_method_builds_from_its_decode_settings(experiment, stages):
    """What a decode job does with a method's settings, for every method of the default config and its SAFE
    variants, on the synthetic pair's cached stages (a mismatch between the settings and a method's options fails
    here, not hours into a run)."""
    cached = {"models": stages["dirs"], "metas": stages["metas"], "anchors": stages["anchors"],
              "relative": stages["relative"]}
    names = [n for n, m in experiment.methods.items() if m.kind == "ensemble" and m.weights != "adapt"]
    assert {experiment.methods[n].algorithm for n in names} >= {"deepen", "gac", "unite", "safe+deepen"}
    for name in names:
        inputs = {k: v for k, v in cached.items() if k in experiment.decode_inputs(name, "test", "arc_c")}
        settings = dict(experiment.decode_settings(name, "arc_c"), members=stages["names"], dtype="float32")
        settings["options"] = {k: v for k, v in settings["options"].items() if k != "select"}
        ensemble = ensemble_for(inputs, settings)
        assert ensemble.method_name == experiment.methods[name].algorithm
    for composed in ("safe+gac", "safe+unite"):
        base = experiment.method_options(composed.split("+")[1], {"eta": 0.15, "steps": 5, "mode": "fast"})
        options = experiment.method_options(composed, {"eta": 0.15, "steps": 5, "mode": "fast"})
        assert options == base | {"draft": 5}
