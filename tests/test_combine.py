"""Voting / MBR (deepen.combine) and the scaling / sweep studies (deepen.studies) on hand-checked predictions."""

from __future__ import annotations

import json
import math
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deepen import combine, pipeline, studies
from deepen.errors import DeepenError
from deepen.tasks import write_prompts

# -- pure functions --------------------------------------------------------------------------------------------------


def test_rules_per_metric_follow_table_1():
    assert combine.combiners("choice") == ("voting", "deepen")  # MMLU, ARC-C, PIQA
    assert combine.combiners("gsm8k") == ("voting", "mbr", "deepen")
    assert combine.combiners("em") == ("mbr", "deepen")  # TriviaQA, NQ
    assert combine.combiners("bleu") == ()
    assert combine.deepen_rule("choice") == combine.deepen_rule("gsm8k") == "voting"
    assert combine.deepen_rule("em") == "mbr"


def test_answer_keys():
    assert combine.answer_key("choice", " B. because", "ABCD") == "B"
    assert combine.answer_key("choice", " The", "ABCD") is None
    assert combine.answer_key("gsm8k", "9 * 2 = 18.0") == combine.answer_key("gsm8k", "The answer is 18") == Decimal(18)
    assert combine.answer_key("gsm8k", "The answer is 1,000") == Decimal(1000)
    assert combine.answer_key("gsm8k", "no idea") is None
    assert combine.answer_key("em", " The Beatles\nQuestion: x") == "beatles"
    assert combine.answer_key("em", "\nParis") is None  # empty first line: no answer


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
    assert combine.token_f1("the cat sat", "cat sat down") == pytest.approx(0.8)  # 2 common; P 2/2, R 2/3
    assert combine.token_f1("Paris", "paris.") == 1.0
    assert combine.token_f1("Paris", "Paris France") == pytest.approx(2 / 3)
    assert combine.token_f1("a b", "b a") == 1.0
    assert combine.token_f1("Lyon", "Paris") == 0.0
    assert combine.token_f1("", "Paris") == combine.token_f1("the", "the") == 0.0  # nothing left after normalising


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
    preds, timings = combine.combine_rows("choice", "voting", cands, names, times, choices)
    q1, q2 = preds
    assert q1["choice"] == "C" and q1["source"] == "b" and q1["support"] == pytest.approx(2 / 3)
    assert q1["text"] == " B"  # free letters A, B, B -> B, first given by b
    # q2: choices B, D, B -> B (first supporter a); free letters None, C, D -> C/D tie -> C (b), a abstains
    assert q2["choice"] == "B" and q2["source"] == "a" and q2["text"] == " C"
    assert [t["seconds"] for t in timings] == [1.75, 2.75]  # the candidates run one after another
    scores = pipeline.score_predictions("arc_c", [{"id": "q1", "answers": ["C"], "choices": list("ABCD")},
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
    preds, _ = combine.combine_rows("gsm8k", "voting", cands, names)
    # g0: 7 (x, c), 8 (a, b), 9 -> 7/8 tie, 7 is given first (DeePEn); g1: 12 (x, a), 13 (b, d) -> 12
    assert [p["source"] for p in preds] == ["x.adapt", "x.adapt"]
    assert preds[0]["text"] == texts[0][0] and preds[0]["support"] == pytest.approx(2 / 5)
    scores = pipeline.score_predictions("gsm8k", [{"id": "g0", "answers": ["8"], "choices": []},
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
    preds, timings = combine.combine_rows("em", "mbr", cands, names)
    # t1: Lyon 0; Paris (0 + 2/3 + 1/2)/3; Paris France (0 + 2/3 + 2/5)/3; city of Paris (0 + 1/2 + 2/5)/3 -> b
    assert preds[0]["source"] == "b" and preds[0]["support"] == pytest.approx((2 / 3 + 1 / 2) / 3)
    # t2: a abstains; Monet (2/3 + 0)/2, Claude Monet (2/3 + 0)/2, Manet 0 -> tie, earliest: b
    assert preds[1]["source"] == "b" and preds[1]["text"] == " Monet"
    assert timings == []
    scores = pipeline.score_predictions("nq", [{"id": "t1", "answers": ["Paris"], "choices": []},
                                               {"id": "t2", "answers": ["Claude Monet"], "choices": []}], preds)
    assert [r["correct"] for r in scores.to_pylist()] == [1.0, 0.0]


def test_two_candidates_reduce_to_the_first():
    cands = [[_p("q", " A", "A")], [_p("q", " B", "B")]]
    assert combine.combine_rows("choice", "voting", cands, ["main", "other"])[0][0]["source"] == "main"
    cands = [[_p("q", " Rome")], [_p("q", " Paris")]]
    assert combine.combine_rows("em", "mbr", cands, ["main", "other"])[0][0]["source"] == "main"


def test_combine_rejects_mismatched_candidates_and_undefined_rules():
    with pytest.raises(DeepenError, match="other question ids"):
        combine.combine_rows("em", "mbr", [[_p("a", "x")], [_p("b", "x")]], ["m", "n"])
    with pytest.raises(DeepenError, match="not defined"):
        combine.combine_rows("choice", "mbr", [[_p("a", "x")]], ["m"])
    with pytest.raises(DeepenError, match="not defined"):
        combine.combine_rows("em", "voting", [[_p("a", "x")]], ["m"])


def test_combine_files_then_score(tmp_path):
    write_prompts([{"id": f"q{i}", "task": "arc_c", "prompt": "?", "answers": [gold], "choices": list("ABCD"),
                    "max_new_tokens": 1, "stop": ["\n"]} for i, gold in enumerate("AB")], tmp_path / "prompts.parquet")
    paths, tpaths = [], []
    for name, letters in [("m0", "AC"), ("m1", "DB"), ("m2", "AB")]:
        preds = [_p(f"q{i}", f" {c}", c) for i, c in enumerate(letters)]
        paths.append(str(tmp_path / f"{name}.parquet"))
        tpaths.append(str(tmp_path / f"{name}.t.parquet"))
        pq.write_table(pa.Table.from_pylist(preds, schema=pipeline.PREDICTION_SCHEMA), paths[-1])
        pq.write_table(pa.Table.from_pylist([_t(f"q{i}", 0.5) for i in range(2)], schema=pipeline.TIMING_SCHEMA),
                       tpaths[-1])
    out, tout, sout = (str(tmp_path / n) for n in ("p.parquet", "t.parquet", "s.parquet"))
    assert combine.combine_files("arc_c", "voting", paths, tpaths, ["m0", "m1", "m2"], str(tmp_path / "prompts.parquet"),
                                 out, tout) == 2
    table = pq.read_table(out)
    assert table.column_names == pipeline.PREDICTION_SCHEMA.names + ["source", "support"]
    assert table["choice"].to_pylist() == ["A", "B"] and table["source"].to_pylist() == ["m0", "m1"]
    assert pq.read_table(tout)["seconds"].to_pylist() == [1.5, 1.5]
    assert pipeline.score("arc_c", str(tmp_path / "prompts.parquet"), out, tout, sout) == 100.0


# -- studies ---------------------------------------------------------------------------------------------------------


def _scores(path, values, seconds=0.5):
    pq.write_table(pa.Table.from_pylist([{"id": str(i), "correct": v, "correct_free": v, "seconds": seconds,
                                          "n_tokens": 1} for i, v in enumerate(values)],
                                        schema=pipeline.SCORE_SCHEMA), path)
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
    assert "| ARC-C | 2 | b+a | a (50.0) | 75.00 | 1.000 |" in (tmp_path / "s.md").read_text()
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    points = [dict(task="arc_c", value=v, method=f"m{v}", path=_scores(tmp_path / f"e{v}.parquet", c))
              for v, c in [(0.5, [1, 0]), (0.0, [0, 0]), (0.15, [1, 1])]]
    rows = studies.sweep_results("eta", points, str(tmp_path / "w.parquet"), str(tmp_path / "w.png")).to_pylist()
    assert [(r["value"], r["acc"]) for r in rows] == [(0.0, 0.0), (0.15, 100.0), (0.5, 50.0)]


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["ensembles"][0].update(combine={"variant": "nope"}), "combine variant"),
    (lambda c: c["ensembles"][0].update(variants=["avg", {"name": "voting", "weights": [0.5, 0.5]}]), "reserved"),
    (lambda c: c.update(scaling={"members": ["smollm2", "nope"], "tasks": ["arc_c"]}), "nope"),
    (lambda c: c.update(scaling={"members": ["smollm2"], "tasks": ["arc_c"]}), "at least 2"),
    (lambda c: c.update(scaling={"tasks": ["boolq"]}), "boolq"),
    (lambda c: c.update(scaling={"tasks": ["arc_c"], "max_members": 3}), "max_members"),
    (lambda c: c.update(sweeps={"ensemble": "nope", "tasks": ["arc_c"], "eta": [0.1]}), "nope"),
    (lambda c: c.update(sweeps={"ensemble": "smollm2+gemma3", "tasks": ["arc_c"]}), "eta and/or steps"),
    (lambda c: c.update(sweeps={"ensemble": "smollm2+gemma3", "tasks": ["arc_c"], "eta": [-1]}), "minimum"),
    (lambda c: c["ensembles"][0].update(combine={"rules": ["vote"]}), "vote"),
])
def test_bad_study_configs_are_rejected(edit, message):
    from pathlib import Path

    import yaml
    from snakemake.utils import validate

    root = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((root / "config" / "config.yaml").read_text())
    edit(config)
    with pytest.raises(Exception) as err:
        validate(config, str(root / "workflow" / "schemas" / "config.schema.yaml"))
        pipeline.check_config(config)
    assert message in str(err.value)


# -- the rules, end to end on synthetic members ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def studies_run(tmp_path_factory):
    """Three synthetic members, one 3-member ensemble with Voting / MBR, scaling over the three, an eta / T sweep."""
    import sys
    import time
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import synthetic
    from test_pipeline import DATA_DIR, _snakemake, _workdir, _write_config

    tmp = tmp_path_factory.mktemp("studies")
    models = {name: synthetic.build_member(tmp / "models", style, seed=seed, hidden_size=h, name=name,
                                           max_position_embeddings=4096)
              for name, style, seed, h in [("bl", "bytelevel", 0, 32), ("sp", "sentencepiece", 1, 48),
                                           ("bl2", "bytelevel", 2, 32)]}
    work = _workdir(tmp)
    config = {
        "title": "synthetic studies",
        "data_dir": str(DATA_DIR),
        "min_anchors": 50,
        "models": {k: {"source": v, "mem_mb": 500} for k, v in models.items()},
        "tasks": {"arc_c": {"limit": 4, "dev_limit": 4, "batch_size": 2},
                  "triviaqa": {"limit": 4, "dev_limit": 2, "batch_size": 2, "max_new_tokens": 4}},
        "ensembles": [{"name": "e3", "members": ["bl", "sp", "bl2"], "combine": True}],
        "scaling": {"members": ["bl", "sp", "bl2"], "tasks": ["arc_c"]},
        "sweeps": {"ensemble": "e3", "tasks": ["arc_c"], "eta": [0.0, 0.15], "steps": [1, 5]},
    }
    _write_config(work, config)
    t0 = time.perf_counter()
    _snakemake(work, "--cores", "2")
    print(f"cold synthetic studies run: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return work, _snakemake


def _read(path):
    return pq.read_table(path).to_pylist()


def test_e2e_voting_mbr_rows_reuse_the_cached_predictions(studies_run):
    work, run = studies_run
    md = (work / "results" / "summary.md").read_text()
    for row in ["e3 Voting", "e3 MBR", "e3 DeePEn-Avg", "e3 DeePEn-Adapt", "e3 DeePEn+Voting/MBR"]:
        assert f"| {row} |" in md
    assert md.index("| e3 Voting |") < md.index("| e3 MBR |") < md.index("| e3 DeePEn-Avg |") \
        < md.index("| e3 DeePEn+Voting/MBR |")  # Table 1's order
    pred = work / "results" / "predictions" / "test"
    for method, task, rule, pool in [("e3.voting", "arc_c", "voting", ["bl", "sp", "bl2"]),
                                     ("e3.mbr", "triviaqa", "mbr", ["bl", "sp", "bl2"]),
                                     ("e3.adapt+voting-mbr", "arc_c", "voting", ["e3.adapt", "bl", "sp", "bl2"]),
                                     ("e3.adapt+voting-mbr", "triviaqa", "mbr", ["e3.adapt", "bl", "sp", "bl2"])]:
        metric = "choice" if task == "arc_c" else "em"
        cands = [_read(pred / m / f"{task}.parquet") for m in pool]
        times = [_read(work / "results" / "timings" / "test" / m / f"{task}.parquet") for m in pool]
        expected, expected_times = combine.combine_rows(metric, rule, cands, pool, times)
        assert _read(pred / method / f"{task}.parquet") == expected, method
        assert _read(work / "results" / "timings" / "test" / method / f"{task}.parquet") == expected_times
    assert not (pred / "e3.voting" / "triviaqa.parquet").exists() and not (pred / "e3.mbr" / "arc_c.parquet").exists()
    assert "Nothing to be done" in run(work, "-n", "--cores", "2").stdout


def test_e2e_scaling_follows_the_dev_ranking(studies_run):
    work, _ = studies_run
    ranking = json.loads((work / "results" / "scaling" / "arc_c" / "ranking.json").read_text())
    assert sorted(ranking["members"]) == ["bl", "bl2", "sp"]
    assert ranking["dev_accuracy"] == sorted(ranking["dev_accuracy"], reverse=True)
    rows = _read(work / "results" / "scaling.parquet")
    assert [(r["k"], r["members"]) for r in rows] == [(k, "+".join(ranking["members"][:k])) for k in (1, 2, 3)]
    best = _read(work / "results" / "scores" / "test" / ranking["members"][0] / "arc_c.parquet")
    assert rows[0]["acc"] == 100.0 * sum(r["correct"] for r in best) / len(best)
    metas = {m: json.loads((work / "resources" / "models" / f"{m}.json").read_text())["fingerprint"]
             for m in ranking["members"]}
    anchors = pq.read_table(work / "resources" / "scaling" / "arc_c" / "k2" / "anchors.parquet")
    assert anchors.schema.metadata[b"fingerprints"].decode().split("\t") == [metas[m] for m in ranking["members"][:2]]
    log = (work / "logs" / "decode" / "test" / "scaling.k3" / "arc_c" / "0-of-1.log").read_text()
    assert f"scaling k=3: {', '.join(ranking['members'])}" in log
    assert (work / "results" / "plots" / "scaling.png").stat().st_size > 0


def test_e2e_sweeps_reuse_the_ensemble_and_eta_0_is_the_main_model(studies_run):
    work, _ = studies_run
    eta = _read(work / "results" / "sweeps" / "eta.parquet")
    assert [(r["value"], r["method"]) for r in eta] == [(0.0, "e3.avg.eta0"), (0.15, "e3.avg")]
    steps = _read(work / "results" / "sweeps" / "steps.parquet")
    assert [(r["value"], r["method"]) for r in steps] == [(1.0, "e3.avg.T1"), (5.0, "e3.avg")]
    pred = work / "results" / "predictions" / "test"
    main = _read(pred / "bl" / "arc_c.parquet")
    eta0 = _read(pred / "e3.avg.eta0" / "arc_c.parquet")
    assert [p["choice"] for p in eta0] == [p["choice"] for p in main]
    for png in ("sweep_eta.png", "sweep_steps.png"):
        assert (work / "results" / "plots" / png).stat().st_size > 0
