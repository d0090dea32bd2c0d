"""The pipeline's stage functions on hand-checked examples (no Snakemake: tests/integration runs the workflow)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deepen.errors import DeepenError
from deepen.files import atomic_path
from deepen.pipeline.plots import plots
from deepen.pipeline.summary import write_summary
from deepen.pipeline.schemas import SCORE_SCHEMA
from deepen.pipeline.score import adapt_weights, dev_weights, score_predictions
from deepen.pipeline.shards import shard_rows


# -- stage functions on hand-checked examples ------------------------------------------------------------------------


def test_shard_rows_partition_whole_batches():
    # 10 rows, batch 3 -> batches [0-2] [3-5] [6-8] [9]; 2 shards take batches {0,1} and {2,3}
    assert shard_rows(10, 3, 0, 2) == range(0, 6)
    assert shard_rows(10, 3, 1, 2) == range(6, 10)
    for n, b, k in [(10, 3, 3), (7, 4, 5), (0, 2, 2), (13, 1, 4)]:
        rows = [r for s in range(k) for r in shard_rows(n, b, s, k)]
        assert rows == list(range(n))
        for s in range(k):
            assert shard_rows(n, b, s, k).start % b == 0
    with pytest.raises(DeepenError):
        shard_rows(10, 3, 2, 2)


def test_adapt_weights_are_normalised_dev_accuracies():
    assert adapt_weights([60.0, 20.0]) == [0.75, 0.25]
    assert adapt_weights([0.0, 0.0, 0.0]) == pytest.approx([1 / 3] * 3)
    with pytest.raises(DeepenError):
        adapt_weights([-1.0, 2.0])


def test_dev_weights_file(tmp_path):
    paths = []
    for name, correct in [("a", [1.0, 1.0, 0.0, 1.0]), ("b", [1.0, 0.0, 0.0, 0.0])]:
        t = pa.Table.from_pylist([{"id": str(i), "correct": c, "correct_free": c, "seconds": 0.1, "n_tokens": 1}
                                  for i, c in enumerate(correct)], schema=SCORE_SCHEMA)
        paths.append(tmp_path / f"{name}.parquet")
        pq.write_table(t, paths[-1])
    w = dev_weights([str(p) for p in paths], ["a", "b"], str(tmp_path / "w.json"))
    assert w == [0.75, 0.25]  # 75% and 25% dev accuracy
    assert json.loads((tmp_path / "w.json").read_text())["dev_accuracy"] == [75.0, 25.0]


def _prompt(id_, answers, choices=()):
    return {"id": id_, "answers": list(answers), "choices": list(choices)}


def _pred(id_, text, choice=None, tokens=(1,)):
    return {"id": id_, "text": text, "choice": choice, "token_ids": list(tokens)}


def test_score_multiple_choice_uses_the_fused_option_and_keeps_free_greedy():
    prompts = [_prompt("q1", ["B"], "ABCD"), _prompt("q2", ["C"], "ABCD"), _prompt("q3", ["A"], "ABCD")]
    preds = [
        _pred("q1", " B", choice="B"),  # both right
        _pred("q2", " The", choice="C"),  # restricted option right, free greedy token is not a letter
        _pred("q3", " A", choice="D"),  # free greedy right, restricted option wrong
    ]
    t = score_predictions("arc_c", prompts, preds).to_pylist()
    assert [r["correct"] for r in t] == [1.0, 1.0, 0.0]
    assert [r["correct_free"] for r in t] == [1.0, 0.0, 1.0]


def test_score_gsm8k_last_number_and_em():
    prompts = [_prompt("g1", ["18"]), _prompt("g2", ["3"])]
    preds = [_pred("g1", " 16 - 3 - 4 = 9 eggs. 9 * 2 = 18. The answer is 18"), _pred("g2", " The answer is 3.5")]
    t = score_predictions("gsm8k", prompts, preds).to_pylist()
    assert [r["correct"] for r in t] == [1.0, 0.0]
    prompts = [_prompt("t1", ["The Beatles", "Beatles"]), _prompt("t2", ["Paris"])]
    preds = [_pred("t1", " the beatles"), _pred("t2", " Lyon, France")]
    t = score_predictions("triviaqa", prompts, preds).to_pylist()
    assert [r["correct"] for r in t] == [1.0, 0.0]
    assert [r["correct_free"] for r in t] == [1.0, 0.0]
    with pytest.raises(DeepenError):
        score_predictions("triviaqa", prompts, preds[:1])


def _scores(values, seconds=0.5, tokens=2):
    return pa.Table.from_pylist([{"id": str(i), "correct": v, "correct_free": v, "seconds": seconds,
                                  "n_tokens": tokens} for i, v in enumerate(values)], schema=SCORE_SCHEMA)


def test_summary_delta_against_best_single_and_published(tmp_path):
    entries = [
        dict(method="a", row="A", kind="single", task="mmlu", published_key=["individual", "A"],
             scores=_scores([1, 0, 0, 0])),  # 25
        dict(method="b", row="B", kind="single", task="mmlu", published_key=["individual", "B"],
             scores=_scores([1, 1, 0, 0])),  # 50
        dict(method="ab.deepen.avg", row="top2 DeePEn-Avg", kind="ensemble", task="mmlu",
             published_key=["top2", "DeePEn-Avg"], scores=_scores([1, 1, 1, 0], seconds=1.5)),  # 75
    ]
    csv = tmp_path / "pub.csv"
    csv.write_text("# comment\nsetting,method,MMLU,ARC-C\nindividual,A,20.00,\ntop2,DeePEn-Avg,70.5,80\n")
    table = write_summary(entries, str(tmp_path / "s.parquet"), str(tmp_path / "s.md"), str(csv))
    rows = {r["method"]: r for r in table.to_pylist()}
    assert rows["ab.deepen.avg"]["acc"] == 75.0 and rows["ab.deepen.avg"]["delta"] == 25.0
    assert rows["a"]["delta"] == -25.0 and rows["b"]["delta"] == 0.0
    assert rows["ab.deepen.avg"]["published"] == 70.5 and rows["ab.deepen.avg"]["ours_minus_published"] == pytest.approx(4.5)
    assert rows["b"]["published"] is None
    assert rows["ab.deepen.avg"]["seconds"] == 1.5 and rows["ab.deepen.avg"]["tokens"] == 2
    md = (tmp_path / "s.md").read_text()
    assert "| top2 DeePEn-Avg | 75.0 [25.0, 100.0] |" in md  # the score and its 95% interval over the 4 questions
    assert "| A | 25.0 [0.0, 75.0] |" in md
    assert "| top2 DeePEn-Avg | +25.0 [+0.0, +75.0] p=1 |" in md  # paired difference to the best member (B)
    assert "MMLU (n=4)" in md and "70.50 (+4.50)" in md
    plots(str(tmp_path / "s.parquet"), str(tmp_path / "a.png"), str(tmp_path / "g.png"))
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.parquet"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            Path(tmp).write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
