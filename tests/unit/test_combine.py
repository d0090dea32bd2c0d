"""Voting / MBR (deepen.eval.combine, deepen.pipeline.score.combine_files) and the scaling / sweep studies
(deepen.pipeline.studies) on hand-checked predictions."""

from __future__ import annotations

import json
import math
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deepen.errors import DeepenError
from deepen.eval import combine
from deepen.eval.metrics import BLEU, CHOICE, EXACT_MATCH, GSM8K, token_f1
from deepen.eval.task_data import write_prompts
from deepen.pipeline import studies
from deepen.pipeline.schemas import PREDICTION_SCHEMA, SCORE_SCHEMA, TIMING_SCHEMA
from deepen.pipeline.score import combine_files, score, score_predictions

# -- pure functions --------------------------------------------------------------------------------------------------


def test_rules_per_metric_follow_table_1():
    assert combine.combiners(CHOICE) == ("voting", "deepen")  # MMLU, ARC-C, PIQA
    assert combine.combiners(GSM8K) == ("voting", "mbr", "deepen")
    assert combine.combiners(EXACT_MATCH) == ("mbr", "deepen")  # TriviaQA, NQ
    assert combine.combiners(BLEU) == ()
    assert combine.deepen_rule(CHOICE) == combine.deepen_rule(GSM8K) == "voting"
    assert combine.deepen_rule(EXACT_MATCH) == "mbr"


def test_answer_keys():
    assert CHOICE.answer_key(" B. because", "ABCD") == "B"
    assert CHOICE.answer_key(" The", "ABCD") is None
    assert GSM8K.answer_key("9 * 2 = 18.0", ()) == GSM8K.answer_key("The answer is 18", ()) == Decimal(18)
    assert GSM8K.answer_key("The answer is 1,000", ()) == Decimal(1000)
    assert GSM8K.answer_key("no idea", ()) is None
    assert EXACT_MATCH.answer_key(" The Beatles\nQuestion: x", ()) == "beatles"
    assert EXACT_MATCH.answer_key("\nParis", ()) is None  # empty first line: no answer


@pytest.mark.parametrize("answers, winner", [
    (["B", "C", "C"], 1),  # plurality
    (["B", "C", "C", "B"], 0),  # 2-2 tie: B is given first
    (["C", "B", "B", "C"], 0),
    (["A", "B", "C", "D"], 0),  # all differ: the first (main model, or DeePEn in front)
    ([None, "A", None], 1),  # None abstains: one vote beats two abstentions
    ([None, "C", "D", "D"], 2),
    ([None, None], None),
    ([], None),
])
def test_vote(answers, winner):
    assert combine.vote(answers) == winner


def test_token_f1():
    assert token_f1("the cat sat", "cat sat down") == pytest.approx(0.8)  # 2 common; P 2/2, R 2/3
    assert token_f1("Paris", "paris.") == 1.0
    assert token_f1("Paris", "Paris France") == pytest.approx(2 / 3)
    assert token_f1("a b", "b a") == 1.0
    assert token_f1("Lyon", "Paris") == 0.0
    assert token_f1("", "Paris") == token_f1("the", "the") == 0.0  # nothing left after normalising


def test_mbr_picks_the_consensus_candidate_and_breaks_ties_to_the_earliest():
    # Lyon 0; Paris (0 + 2/3 + 1)/3 = 5/9; Paris France (0 + 2/3 + 2/3)/3 = 4/9; paris 5/9 -> tie, earliest: 1
    i, u = combine.mbr(["Lyon", "Paris", "Paris France", "paris"])
    assert i == 1 and u == pytest.approx(5 / 9)
    assert combine.mbr(["Rome", "Paris"]) == (0, 0.0)  # two candidates always tie
    # an abstaining candidate gives no utility and is never picked: "Paris" wins over ""/None
    i, u = combine.mbr([None, "", "Paris", "Paris France"])
    assert i == 2 and u == pytest.approx(2 / 3)
    i, u = combine.mbr([None, "Paris"])
    assert i == 1 and math.isnan(u)
    assert combine.mbr([None, ""])[0] is None


# -- combined predictions --------------------------------------------------------------------------------------------


def _p(id_, text, choice=None, stop="max_new_tokens", tokens=(1,)):
    return {"id": id_, "text": text, "token_ids": list(tokens), "choice": choice, "stop_reason": stop}


def _t(id_, seconds, n=1):
    return {"id": id_, "seconds": seconds, "n_tokens": n}


def test_voting_multiple_choice_votes_choice_and_free_letter_separately():
    names = ["a", "b", "c"]
    cands = [
        [_p("q1", " A", "A"), _p("q2", " The", "B")],
        [_p("q1", " B", "C"), _p("q2", " C", "D")],
        [_p("q1", " B", "C"), _p("q2", " D", "B")],
    ]
    times = [[_t("q1", 1.0), _t("q2", 2.0)], [_t("q1", 0.5), _t("q2", 0.5)], [_t("q1", 0.25), _t("q2", 0.25)]]
    choices = {"q1": list("ABCD"), "q2": list("ABCD")}
    preds, timings = combine.combine_rows(CHOICE, "voting", cands, names, times, choices)
    q1, q2 = preds
    assert q1["choice"] == "C" and q1["source"] == "b" and q1["support"] == pytest.approx(2 / 3)
    assert q1["text"] == " B"  # free letters A, B, B -> B, first given by b
    # q2: choices B, D, B -> B (first supporter a); free letters None, C, D -> C/D tie -> C (b), a abstains
    assert q2["choice"] == "B" and q2["source"] == "a" and q2["text"] == " C"
    assert [t["seconds"] for t in timings] == [1.75, 2.75]  # the candidates run one after another
    scores = score_predictions("arc_c", [{"id": "q1", "answers": ["C"], "choices": list("ABCD")},
                                         {"id": "q2", "answers": ["D"], "choices": list("ABCD")}], preds)
    assert [r["correct"] for r in scores.to_pylist()] == [1.0, 0.0]
    assert [r["correct_free"] for r in scores.to_pylist()] == [0.0, 0.0]


def test_voting_gsm8k_on_the_final_number_and_deepen_first_wins_ties():
    names = ["x.adapt", "a", "b", "c", "d"]  # DeePEn+Voting: the DeePEn output in front of the members
    texts = [["So 3 + 4 = 7. The answer is 7", "The answer is 12"],
             ["The answer is 8", "... so 12.0"],
             ["4 + 4 = 8", "The answer is 13"],
             ["The answer is 7.", "I am not sure"],
             ["The answer is 9", "The answer is 13"]]
    cands = [[_p(f"g{i}", t) for i, t in enumerate(ts)] for ts in texts]
    preds, _ = combine.combine_rows(GSM8K, "voting", cands, names)
    # g0: 7 (x, c), 8 (a, b), 9 -> 7/8 tie, 7 is given first (DeePEn); g1: 12 (x, a), 13 (b, d) -> 12
    assert [p["source"] for p in preds] == ["x.adapt", "x.adapt"]
    assert preds[0]["text"] == texts[0][0] and preds[0]["support"] == pytest.approx(2 / 5)
    scores = score_predictions("gsm8k", [{"id": "g0", "answers": ["8"], "choices": []},
                                         {"id": "g1", "answers": ["12"], "choices": []}], preds)
    assert [r["correct"] for r in scores.to_pylist()] == [0.0, 1.0]


def test_mbr_qa_on_first_lines_and_error_rows_abstain():
    names = ["a", "b", "c", "d"]
    cands = [
        [_p("t1", " Lyon\nQuestion: more"), _p("t2", "", stop="error: prompt too long", tokens=())],
        [_p("t1", " Paris\nQuestion:"), _p("t2", " Monet")],
        [_p("t1", " Paris, France"), _p("t2", " Claude Monet")],
        [_p("t1", " the city of Paris"), _p("t2", " Manet")],
    ]
    preds, timings = combine.combine_rows(EXACT_MATCH, "mbr", cands, names)
    # t1: Lyon 0; Paris (0 + 2/3 + 1/2)/3; Paris France (0 + 2/3 + 2/5)/3; city of Paris (0 + 1/2 + 2/5)/3 -> b
    assert preds[0]["source"] == "b" and preds[0]["support"] == pytest.approx((2 / 3 + 1 / 2) / 3)
    # t2: a abstains; Monet (2/3 + 0)/2, Claude Monet (2/3 + 0)/2, Manet 0 -> tie, earliest: b
    assert preds[1]["source"] == "b" and preds[1]["text"] == " Monet"
    assert timings == []
    scores = score_predictions("nq", [{"id": "t1", "answers": ["Paris"], "choices": []},
                                      {"id": "t2", "answers": ["Claude Monet"], "choices": []}], preds)
    assert [r["correct"] for r in scores.to_pylist()] == [1.0, 0.0]


def test_two_candidates_reduce_to_the_first():
    cands = [[_p("q", " A", "A")], [_p("q", " B", "B")]]
    assert combine.combine_rows(CHOICE, "voting", cands, ["main", "other"])[0][0]["source"] == "main"
    cands = [[_p("q", " Rome")], [_p("q", " Paris")]]
    assert combine.combine_rows(EXACT_MATCH, "mbr", cands, ["main", "other"])[0][0]["source"] == "main"


def test_combine_rejects_mismatched_candidates_and_undefined_rules():
    with pytest.raises(DeepenError, match="other question ids"):
        combine.combine_rows(EXACT_MATCH, "mbr", [[_p("a", "x")], [_p("b", "x")]], ["m", "n"])
    with pytest.raises(DeepenError, match="not defined"):
        combine.combine_rows(CHOICE, "mbr", [[_p("a", "x")]], ["m"])
    with pytest.raises(DeepenError, match="not defined"):
        combine.combine_rows(EXACT_MATCH, "voting", [[_p("a", "x")]], ["m"])


def test_combine_files_then_score(tmp_path):
    write_prompts([{"id": f"q{i}", "task": "arc_c", "prompt": "?", "answers": [gold], "choices": list("ABCD"),
                    "max_new_tokens": 1, "stop": ["\n"]} for i, gold in enumerate("AB")], tmp_path / "prompts.parquet")
    paths, tpaths = [], []
    for name, letters in [("m0", "AC"), ("m1", "DB"), ("m2", "AB")]:
        preds = [_p(f"q{i}", f" {c}", c) for i, c in enumerate(letters)]
        paths.append(str(tmp_path / f"{name}.parquet"))
        tpaths.append(str(tmp_path / f"{name}.t.parquet"))
        pq.write_table(pa.Table.from_pylist(preds, schema=PREDICTION_SCHEMA), paths[-1])
        pq.write_table(pa.Table.from_pylist([_t(f"q{i}", 0.5) for i in range(2)], schema=TIMING_SCHEMA),
                       tpaths[-1])
    out, tout, sout = (str(tmp_path / n) for n in ("p.parquet", "t.parquet", "s.parquet"))
    assert combine_files("arc_c", "voting", paths, tpaths, ["m0", "m1", "m2"], str(tmp_path / "prompts.parquet"),
                         out, tout) == 2
    table = pq.read_table(out)
    assert table.column_names == PREDICTION_SCHEMA.names + ["source", "support"]
    assert table["choice"].to_pylist() == ["A", "B"] and table["source"].to_pylist() == ["m0", "m1"]
    assert pq.read_table(tout)["seconds"].to_pylist() == [1.5, 1.5]
    assert score("arc_c", str(tmp_path / "prompts.parquet"), out, tout, sout) == 100.0


# -- studies ---------------------------------------------------------------------------------------------------------


def _scores(path, values, seconds=0.5):
    pq.write_table(pa.Table.from_pylist([{"id": str(i), "correct": v, "correct_free": v, "seconds": seconds,
                                          "n_tokens": 1} for i, v in enumerate(values)],
                                        schema=SCORE_SCHEMA), path)
    return str(path)


def test_rank_members_by_dev_accuracy_ties_keep_config_order(tmp_path):
    dev = [_scores(tmp_path / f"{m}.parquet", v) for m, v in
           [("a", [1, 0, 0, 0]), ("b", [1, 1, 1, 0]), ("c", [1, 0, 0, 0]), ("d", [1, 1, 0, 0])]]
    out = tmp_path / "ranking.json"
    assert studies.rank_members(dev, ["a", "b", "c", "d"], out) == ["b", "d", "a", "c"]
    ranking = json.loads(out.read_text())
    assert ranking["dev_accuracy"] == [75.0, 50.0, 25.0, 25.0] and ranking["agrees_with_config"] is False
    pick, weights = studies.ranked_members(out, ["a", "b", "c", "d"], 3)
    assert pick == [1, 3, 0] and weights == pytest.approx([0.5, 1 / 3, 1 / 6])
    with pytest.raises(DeepenError, match="not the scaling pool"):
        studies.ranked_members(out, ["a", "b", "c"], 2)


def test_scaling_and_sweep_tables(tmp_path):
    dev = [_scores(tmp_path / f"dev-{m}.parquet", v) for m, v in [("a", [0, 1]), ("b", [1, 1])]]
    studies.rank_members(dev, ["a", "b"], tmp_path / "ranking.json")
    spec = {"arc_c": {"ranking": str(tmp_path / "ranking.json"),
                      "singles": {"a": _scores(tmp_path / "a.parquet", [1, 1, 0, 0]),
                                  "b": _scores(tmp_path / "b.parquet", [1, 0, 0, 0], seconds=0.25)},
                      "ensembles": {2: _scores(tmp_path / "k2.parquet", [1, 1, 1, 0], seconds=1.0)}}}
    files = [str(tmp_path / n) for n in ("s.parquet", "s.md", "s.png")]
    rows = studies.scaling_results(spec, *files).to_pylist()
    assert [(r["k"], r["members"], r["acc"], r["seconds"]) for r in rows] == [(1, "b", 25.0, 0.25),
                                                                              (2, "b+a", 75.0, 1.0)]
    assert "| ARC-C | 2 | b+a | a (50.0) | 75.0 [25.0, 100.0] (n=4) | 1.000 |" in (tmp_path / "s.md").read_text()
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    points = [dict(task="arc_c", value=v, method=f"m{v}", path=_scores(tmp_path / f"e{v}.parquet", c))
              for v, c in [(0.5, [1, 0]), (0.0, [0, 0]), (0.15, [1, 1])]]
    rows = studies.sweep_results("eta", points, str(tmp_path / "w.parquet"), str(tmp_path / "w.png")).to_pylist()
    assert [(r["value"], r["acc"]) for r in rows] == [(0.0, 0.0), (0.15, 100.0), (0.5, 50.0)]
