"""certify="auto" (deepen.exactness): certified fast mode wherever the agreement grid did not find plain fast mode exact,
read from the benchmark's recorded grid; the pipeline builds exact tails for exactly the ensembles that certify."""

import json

import pytest

from deepen.errors import DeepenError
from deepen.exactness import MEASURED_EXACT, certifies
from deepen.fuse import FusionConfig
from deepen.pipeline.config import check_config
from helpers.configs import default_config, validated
from helpers.pipeline import ROOT


def test_measured_exact_is_the_recorded_grids_exact_cells():
    grid = json.loads((ROOT / "docs" / "bench.json").read_text())["sections"]["agreement"]["grid"]
    orders = {}
    for cell in grid:
        orders.setdefault((cell["eta"], cell["steps"]), []).append(cell["agree"]["fast"] == cell["compared"])
    assert all(len(o) == 2 for o in orders.values())  # both member orders measured in every cell
    assert MEASURED_EXACT == {k for k, o in orders.items() if all(o)}


@pytest.mark.parametrize("certify, mode, eta, steps, expected", [
    ("auto", "fast", 0.15, 5, False), ("auto", "fast", 0.15, 3, True), ("auto", "fast", 1.0, 1, False),
    ("auto", "fast", 1.0, 5, True), ("auto", "fast", 0.2, 5, True),  # not measured: certified
    ("auto", "fast", 0.0, 10, False), ("auto", "paper", 1.0, 5, False),  # no fusion / no approximation
    (True, "fast", 0.15, 5, True), (False, "fast", 1.0, 10, False),
])
def test_certifies(certify, mode, eta, steps, expected):
    assert certifies(certify, mode, eta, steps) is expected
    assert FusionConfig(eta=eta, steps=steps, mode=mode, certify=certify).validate(2).certifies is expected


def test_certify_accepts_true_false_or_auto_only():
    for bad in ("yes", 1, None):
        with pytest.raises(DeepenError, match="certify must be True, False or 'auto'"):
            FusionConfig(certify=bad).validate(2)


def test_the_pipeline_builds_exact_tails_for_the_ensembles_that_certify():
    config = default_config()
    name = config["ensembles"][0]["name"]
    assert not check_config(validated(config)).certifies(name)  # η 0.15, T 5: plain fast mode
    config["ensembles"][0]["tune_eta"] = [0.05, 0.5]  # the dev sweep reaches η 0.5
    assert check_config(validated(config)).certifies(name)
    config["certify"] = False
    assert not check_config(validated(config)).certifies(name)


def test_spaces_without_exact_tails_are_refused_where_the_default_certifies(pair):
    from deepen import Ensemble

    plain = Ensemble(list(pair), eta=0.15, min_anchors=10, progress=False)  # not certified: sampled tail means
    with pytest.raises(DeepenError, match="certify='auto' at η 0.5, T 5.*or pass certify=False"):
        plain.with_options(eta=0.5)  # reuses those spaces
    assert not plain.with_options(eta=0.5, certify=False).method.config.certifies
