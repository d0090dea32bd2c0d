"""The benchmark's bookkeeping (its figures are measured by tests/real/test_bench.py and the bench itself)."""

from deepen.bench.agreement import merged

SETTINGS = {"anchors": 2048, "prompts": 12, "tokens": 16}


def cell(order, eta, steps, agree, commit=None):
    c = {"order": order, "eta": eta, "steps": steps, "compared": 10, "agree": {"fast": agree}}
    return c | ({"commit": commit} if commit else {})


def test_the_agreement_grid_keeps_the_cells_a_run_did_not_redo():
    ab, ba = ["a", "b"], ["b", "a"]
    last = SETTINGS | {"meta": {"commit": "old"}, "grid": [cell(ab, 1.0, 1, 9), cell(ba, 1.0, 1, 8), cell(ab, 0.5, 1, 7)]}
    now = [cell(ab, 0.5, 1, 10, "new"), cell(ba, 0.5, 1, 10, "new")]
    grid = merged(now, last, SETTINGS)
    assert [(c["order"], c["eta"], c["agree"]["fast"], c["commit"]) for c in grid] == [
        (ab, 0.5, 10, "new"), (ab, 1.0, 9, "old"), (ba, 0.5, 10, "new"), (ba, 1.0, 8, "old")]


def test_the_agreement_grid_starts_afresh_when_the_settings_differ():
    last = SETTINGS | {"meta": {"commit": "old"}, "grid": [cell(["a", "b"], 1.0, 1, 9)]}
    now = [cell(["a", "b"], 0.5, 1, 10, "new")]
    assert merged(now, last, SETTINGS | {"prompts": 24}) == now
    assert merged(now, None, SETTINGS) == now
