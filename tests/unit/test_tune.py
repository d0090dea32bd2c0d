"""η chosen on the dev split (deepen.pipeline.tune): the choice rule, the tune job on the synthetic pair, and
Ensemble.with_options, which the job uses to try each η without loading anything again."""

import json

import pytest

from deepen.pipeline.tune import choose_eta, tune_job
from helpers.stages import load_stages_ensemble, prompt_rows


def test_best_dev_score_wins_ties_go_to_the_fixed_eta_then_the_smaller():
    assert choose_eta({0.05: 40.0, 0.15: 45.0, 0.5: 42.5}, fixed=0.05) == 0.15
    assert choose_eta({0.05: 45.0, 0.15: 45.0, 0.5: 45.0}, fixed=0.5) == 0.5
    assert choose_eta({0.0: 45.0, 0.25: 45.0, 1.0: 10.0}, fixed=0.15) == 0.25  # closer to 0.15 than 0 is
    assert choose_eta({0.1: 45.0, 0.2: 45.0}, fixed=0.15) == 0.1  # equally close: the smaller


def _tokens(ensemble):
    rows = prompt_rows()
    return [g.token_ids for g in ensemble.generate([r["prompt"] for r in rows], max_new_tokens=6, batch_size=3)]


def test_with_options_decodes_as_a_fresh_ensemble_and_reuses_the_spaces(stages):
    base = load_stages_ensemble(stages, eta=0.5)
    changed = base.with_options(eta=0.05, steps=2)
    assert changed.method.anchors is base.method.anchors and changed.method.spaces is base.method.spaces
    assert _tokens(changed) == _tokens(load_stages_ensemble(stages, eta=0.05, steps=2))
    assert changed.method.config.eta == 0.05 and base.method.config.eta == 0.5


@pytest.fixture()
def tune_setup(stages):
    settings = {"members": stages["names"], "trust_remote_code": [False, False], "weights": "avg", "method": "deepen",
                "options": {"eta": 0.5, "steps": 5, "mode": "fast", "topk": 64, "mass": 0.999, "certify": False,
                            "max_contenders": 1024},
                "dtype": "float32", "device_map": None, "batch_size": 3, "tune_eta": [0.0, 0.5, 2.0]}
    inputs = {"prompts": stages["prompts"], "models": stages["dirs"], "metas": stages["metas"],
              "anchors": stages["anchors"], "relative": stages["relative"]}
    return inputs, settings


def test_tune_job_scores_every_eta_and_writes_the_choice(tune_setup, tmp_path):
    inputs, settings = tune_setup
    out = tmp_path / "tuning.json"
    chosen = tune_job(inputs, settings, "triviaqa", str(out))
    record = json.loads(out.read_text())
    assert record["eta"] == chosen and set(record["dev_score"]) == {"0", "0.5", "2"}
    assert record["questions"] == len(prompt_rows()) and record["fixed_eta"] == 0.5
    assert chosen == choose_eta({float(k): v for k, v in record["dev_score"].items()}, 0.5)


def test_tuned_decode_reads_the_chosen_eta(tune_setup, tmp_path):
    from deepen.pipeline.decode import ensemble_for

    inputs, settings = tune_setup
    (tmp_path / "tuning.json").write_text(json.dumps({"eta": 2.0}))
    ensemble = ensemble_for(inputs | {"tuning": str(tmp_path / "tuning.json")}, settings)
    assert ensemble.method.config.eta == 2.0
