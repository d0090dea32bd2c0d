"""The Snakemake pipeline: stage functions on hand-checked examples, dry-run DAGs, and a tiny end-to-end run on
synthetic models (second run does nothing, eta change reruns only its ensemble, killed decode leaves nothing trusted,
1 vs k shards give identical predictions)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from deepen import pipeline
from deepen.errors import DeepenError

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
DATA_DIR = ROOT / "data" / "deepen_splits"  # shipped with the repository

sys.path.insert(0, str(Path(__file__).resolve().parent))
import synthetic  # noqa: E402


# -- stage functions on hand-checked examples ------------------------------------------------------------------------


def test_shard_rows_partition_whole_batches():
    # 10 rows, batch 3 -> batches [0-2] [3-5] [6-8] [9]; 2 shards take batches {0,1} and {2,3}
    assert pipeline.shard_rows(10, 3, 0, 2) == range(0, 6)
    assert pipeline.shard_rows(10, 3, 1, 2) == range(6, 10)
    for n, b, k in [(10, 3, 3), (7, 4, 5), (0, 2, 2), (13, 1, 4)]:
        rows = [r for s in range(k) for r in pipeline.shard_rows(n, b, s, k)]
        assert rows == list(range(n))
        for s in range(k):
            assert pipeline.shard_rows(n, b, s, k).start % b == 0
    with pytest.raises(DeepenError):
        pipeline.shard_rows(10, 3, 2, 2)


def test_adapt_weights_are_normalised_dev_accuracies():
    assert pipeline.adapt_weights([60.0, 20.0]) == [0.75, 0.25]
    assert pipeline.adapt_weights([0.0, 0.0, 0.0]) == pytest.approx([1 / 3] * 3)
    with pytest.raises(DeepenError):
        pipeline.adapt_weights([-1.0, 2.0])


def test_dev_weights_file(tmp_path):
    paths = []
    for name, correct in [("a", [1.0, 1.0, 0.0, 1.0]), ("b", [1.0, 0.0, 0.0, 0.0])]:
        t = pa.Table.from_pylist([{"id": str(i), "correct": c, "correct_free": c, "seconds": 0.1, "n_tokens": 1}
                                  for i, c in enumerate(correct)], schema=pipeline.SCORE_SCHEMA)
        paths.append(tmp_path / f"{name}.parquet")
        pq.write_table(t, paths[-1])
    w = pipeline.dev_weights([str(p) for p in paths], ["a", "b"], str(tmp_path / "w.json"))
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
    t = pipeline.score_predictions("arc_c", prompts, preds).to_pylist()
    assert [r["correct"] for r in t] == [1.0, 1.0, 0.0]
    assert [r["correct_free"] for r in t] == [1.0, 0.0, 1.0]


def test_score_gsm8k_last_number_and_em():
    prompts = [_prompt("g1", ["18"]), _prompt("g2", ["3"])]
    preds = [_pred("g1", " 16 - 3 - 4 = 9 eggs. 9 * 2 = 18. The answer is 18"), _pred("g2", " The answer is 3.5")]
    t = pipeline.score_predictions("gsm8k", prompts, preds).to_pylist()
    assert [r["correct"] for r in t] == [1.0, 0.0]
    prompts = [_prompt("t1", ["The Beatles", "Beatles"]), _prompt("t2", ["Paris"])]
    preds = [_pred("t1", " the beatles"), _pred("t2", " Lyon, France")]
    t = pipeline.score_predictions("triviaqa", prompts, preds).to_pylist()
    assert [r["correct"] for r in t] == [1.0, 0.0]
    assert [r["correct_free"] for r in t] == [1.0, 0.0]
    with pytest.raises(DeepenError):
        pipeline.score_predictions("triviaqa", prompts, preds[:1])


def _scores(values, seconds=0.5, tokens=2):
    return pa.Table.from_pylist([{"id": str(i), "correct": v, "correct_free": v, "seconds": seconds,
                                  "n_tokens": tokens} for i, v in enumerate(values)], schema=pipeline.SCORE_SCHEMA)


def test_summary_delta_against_best_single_and_published(tmp_path):
    entries = [
        dict(method="a", row="A", kind="single", task="mmlu", published_key=["individual", "A"],
             scores=_scores([1, 0, 0, 0])),  # 25
        dict(method="b", row="B", kind="single", task="mmlu", published_key=["individual", "B"],
             scores=_scores([1, 1, 0, 0])),  # 50
        dict(method="ab.avg", row="top2 DeePEn-Avg", kind="ensemble", task="mmlu",
             published_key=["top2", "DeePEn-Avg"], scores=_scores([1, 1, 1, 0], seconds=1.5)),  # 75
    ]
    csv = tmp_path / "pub.csv"
    csv.write_text("# comment\nsetting,method,MMLU,ARC-C\nindividual,A,20.00,\ntop2,DeePEn-Avg,70.5,80\n")
    table = pipeline.write_summary(entries, str(tmp_path / "s.parquet"), str(tmp_path / "s.md"), str(csv))
    rows = {r["method"]: r for r in table.to_pylist()}
    assert rows["ab.avg"]["acc"] == 75.0 and rows["ab.avg"]["delta"] == 25.0
    assert rows["a"]["delta"] == -25.0 and rows["b"]["delta"] == 0.0
    assert rows["ab.avg"]["published"] == 70.5 and rows["ab.avg"]["ours_minus_published"] == pytest.approx(4.5)
    assert rows["b"]["published"] is None
    assert rows["ab.avg"]["seconds"] == 1.5 and rows["ab.avg"]["tokens"] == 2
    md = (tmp_path / "s.md").read_text()
    assert "| top2 DeePEn-Avg | 75.00 (+25.00) |" in md
    assert "| A | 25.00 |" in md
    assert "70.50 (+4.50)" in md
    pipeline.plots(str(tmp_path / "s.parquet"), str(tmp_path / "a.png"), str(tmp_path / "g.png"))
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.parquet"
    with pytest.raises(RuntimeError):
        with pipeline.atomic_path(target) as tmp:
            Path(tmp).write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


# -- config validation -----------------------------------------------------------------------------------------------


def _workdir(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(ROOT / "Snakefile", work / "Snakefile")
    shutil.copytree(ROOT / "workflow", work / "workflow")
    shutil.copytree(ROOT / "config", work / "config")
    return work


def _snakemake(work: Path, *args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([SNAKEMAKE, *args], cwd=work, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def _job_stats(output: str) -> dict[str, int]:
    block = output.split("Job stats:")[-1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", block, re.M) if m.group(1) != "total"}


def _planned_jobs(output: str) -> list[tuple[str, str]]:
    """(rule, output) of each job a dry run lists."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        m = re.match(r"(?:local)?rule (\w+):", block.strip())
        if m:
            out = re.search(r"^\s+output: (.*)$", block, re.M)
            jobs.append((m.group(1), out.group(1) if out else ""))
    return jobs


def test_dry_run_default_config(tmp_path):
    work = _workdir(tmp_path)
    proc = _snakemake(work, "-n", "--cores", "1")
    stats = _job_stats(proc.stdout)
    # 6 methods (2 singles, 2 ensembles x Avg/Adapt) x 6 tasks + dev decodes of the 2 singles on 6 tasks, + the
    # scaling ensemble (k = 2) on ARC-C and PIQA + 6 sweep points on ARC-C (eta 0/0.05/0.5, T 1/2/10)
    assert stats["materialise"] == 2 and stats["vocabulary"] == 2 and stats["anchors"] == 2 and stats["relative"] == 4
    assert stats["prompts"] == 12 and stats["decode"] == 36 + 12 + 2 + 6 and stats["score"] == 56
    assert stats["adapt_weights"] == 12 and stats["summary"] == 1 and stats["plots"] == 1
    # per ensemble: Voting on 4 tasks, MBR on 3, DeePEn+Voting/MBR on 6; no decoding
    assert stats["combine"] == 2 * (4 + 3 + 6)
    assert stats["rank_members"] == 2 and stats["scaling_anchors"] == 2 and stats["scaling_relative"] == 4
    assert stats["scaling"] == 1 and stats["sweep"] == 2
    jobs = _planned_jobs(proc.stdout)
    combined = sorted(o.split(",")[0] for r, o in jobs if r == "combine")
    assert "results/predictions/test/smollm2+gemma3.voting/gsm8k.parquet" in combined
    assert "results/predictions/test/smollm2+gemma3.mbr/nq.parquet" in combined
    assert "results/predictions/test/gemma3+smollm2.adapt+voting-mbr/triviaqa.parquet" in combined
    assert not any("/nq." in o for o in combined if ".voting/" in o) and not any(".mbr/arc_c" in o for o in combined)


def test_dry_run_paper_config_lists_every_paper_job(tmp_path):
    work = _workdir(tmp_path)
    proc = _snakemake(work, "-n", "--cores", "1", "--configfile", "config/paper.yaml")
    stats = _job_stats(proc.stdout)
    assert stats["materialise"] == 6 and stats["anchors"] == 10 and stats["relative"] == 30
    jobs = _planned_jobs(proc.stdout)
    outs = " ".join(o for _, o in jobs)
    for method, task in [("yi", "mmlu"), ("mmlu-top2.avg", "mmlu"), ("mmlu-top4.adapt", "mmlu"),
                         ("arc_c-top4.avg", "arc_c"), ("gsm8k-top4.adapt", "gsm8k"), ("piqa-top2.avg", "piqa"),
                         ("qa-top4.adapt", "triviaqa"), ("qa-top2.avg", "nq"), ("llama2", "nq")]:
        assert f"results/scores/test/{method}/{task}.parquet" in outs, (method, task)
    assert "results/decode/test/mmlu-top4.adapt/mmlu/7-of-8.parquet" in outs
    for method, task in [("mmlu-top4.voting", "mmlu"), ("gsm8k-top4.voting", "gsm8k"), ("gsm8k-top4.mbr", "gsm8k"),
                         ("qa-top4.mbr", "nq"), ("arc_c-top4.adapt+voting-mbr", "arc_c"),
                         ("qa-top4.adapt+voting-mbr", "triviaqa"), ("tigerbot", "arc_c"),  # every single, every task
                         ("scaling.k4", "gsm8k"), ("arc_c-top2.avg.eta0.5", "arc_c"), ("arc_c-top2.avg.T10", "arc_c")]:
        assert f"results/scores/test/{method}/{task}.parquet" in outs, (method, task)
    assert "results/plots/scaling.png" in outs and "results/plots/sweep_steps.png" in outs
    assert "resources/scaling/nq/k4/relative/3.parquet" in outs
    assert "mmlu-top4.mbr" not in outs and "scaling.k5" not in outs
    assert not (work / "resources").exists()  # nothing touched at DAG time
    assert "gpu=1" in proc.stdout


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.update(unknown_key=1), "unknown_key"),
    (lambda c: c["ensembles"][0].update(eta=-0.1), "eta"),
    (lambda c: c["ensembles"][0].update(steps=0), "steps"),
    (lambda c: c["ensembles"][0].update(members=["smollm2", "nope"]), "nope"),
    (lambda c: c["ensembles"][0].update(variants=[{"name": "w", "weights": [0.5, 0.6]}]), "sum to 1"),
    (lambda c: c["ensembles"][0].update(variants=[{"name": "w", "weights": [1.0]}]), "1 weights for 2 members"),
    (lambda c: c["tasks"].update(boolq={"limit": 1}), "boolq"),
    (lambda c: c["tasks"]["mmlu"].update(shards=0), "shards"),
    (lambda c: c["ensembles"][0].update(eta="fast"), "eta"),
])
def test_bad_configs_are_rejected(edit, message):
    """What common.smk does before building the DAG: schema validation, then the semantic checks."""
    from snakemake.utils import validate

    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    edit(config)
    with pytest.raises(Exception) as err:
        validate(config, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
        pipeline.check_config(config)
    assert message in str(err.value)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.update(unknown_key=1), "unknown_key"),
    (lambda c: c["ensembles"][0].update(members=["smollm2", "nope"]), "nope"),
])
def test_snakemake_rejects_bad_config_before_any_job(tmp_path, edit, message):
    work = _workdir(tmp_path)
    config = yaml.safe_load((work / "config" / "config.yaml").read_text())
    edit(config)
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    proc = _snakemake(work, "-n", "--cores", "1", check=False)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert not (work / "resources").exists()


# -- end to end on synthetic models ----------------------------------------------------------------------------------


def _write_config(work: Path, config: dict) -> None:
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    # The pair of tests/synthetic.py, with a context long enough for 5-shot TriviaQA prompts.
    a = synthetic.build_member(tmp / "models", "bytelevel", seed=0, hidden_size=32, name="bytelevel",
                               max_position_embeddings=4096)
    b = synthetic.build_member(tmp / "models", "sentencepiece", seed=1, hidden_size=48, name="sentencepiece",
                               max_position_embeddings=4096)
    work = _workdir(tmp)
    config = {
        "title": "synthetic",
        "data_dir": str(DATA_DIR),
        "min_anchors": 50,
        "models": {"bl": {"source": a, "mem_mb": 500}, "sp": {"source": b, "mem_mb": 500}},
        "tasks": {
            "arc_c": {"limit": 4, "dev_limit": 4, "batch_size": 2},
            "triviaqa": {"limit": 6, "dev_limit": 3, "batch_size": 2, "shards": 2, "max_new_tokens": 6},
        },
        "ensembles": [
            {"name": "bl+sp", "members": ["bl", "sp"], "eta": 0.15, "steps": 5},
            {"name": "sp+bl", "members": ["sp", "bl"], "eta": 0.15, "steps": 5},
        ],
    }
    _write_config(work, config)
    t0 = time.perf_counter()
    _snakemake(work, "--cores", "2")
    print(f"cold synthetic run: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return work, config


def test_e2e_summary_and_second_run_does_nothing(e2e):
    work, _ = e2e
    md = (work / "results" / "summary.md").read_text()
    for row in ["bl", "sp", "bl+sp DeePEn-Avg", "bl+sp DeePEn-Adapt", "sp+bl DeePEn-Avg", "sp+bl DeePEn-Adapt"]:
        assert f"| {row} |" in md
    assert "ARC-C" in md and "TriviaQA" in md
    for png in ["accuracy.png", "gain.png"]:
        assert (work / "results" / "plots" / png).stat().st_size > 0
    preds = pq.read_table(work / "results/predictions/test/bl+sp.avg/arc_c.parquet").to_pylist()
    assert len(preds) == 4 and all(p["choice"] in "ABCD" for p in preds)
    weights = json.loads((work / "results/weights/bl+sp/arc_c.json").read_text())
    assert sum(weights["weights"]) == pytest.approx(1.0)
    assert pq.read_table(work / "resources/anchors/bl+sp.parquet").column_names[:4] == ["text", "bytes", "id_0", "id_1"]
    proc = _snakemake(work, "-n", "--cores", "2")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_e2e_eta_change_reruns_only_that_ensemble_and_killed_decode_is_not_trusted(e2e):
    work, config = e2e
    config["ensembles"][0]["eta"] = 0.3
    _write_config(work, config)
    jobs = _planned_jobs(_snakemake(work, "-n", "--cores", "2").stdout)
    rules = {r for r, _ in jobs}
    assert rules == {"decode", "score", "summary", "plots", "all"}, rules
    for rule, out in jobs:
        if rule in ("decode", "score"):
            assert "/bl+sp.avg/" in out or "/bl+sp.adapt/" in out, out
    assert sum(r == "decode" for r, _ in jobs) == 2 * (1 + 2)  # arc_c 1 shard + triviaqa 2 shards, Avg and Adapt

    # Kill the whole run (SIGKILL) while a decode job is halfway through its batches.
    target = work / "results/decode/test/bl+sp.avg/triviaqa/0-of-2.parquet"
    log = work / "logs/decode/test/bl+sp.avg/triviaqa/0-of-2.log"
    old = target.read_bytes()  # the eta 0.15 output: stale (its params changed) but complete
    proc = subprocess.Popen([SNAKEMAKE, "--cores", "1", str(target.relative_to(work))], cwd=work,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "DEEPEN_DECODE_BATCH_DELAY": "60"})
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (log.is_file() and "batch 1/" in log.read_text()):
            time.sleep(0.5)
        assert log.is_file() and "batch 1/" in log.read_text(), "decode job never got going"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # Nothing half-written took the target's place (atomic rename), and the next run redoes the job.
    assert not target.exists() or target.read_bytes() == old
    _snakemake(work, "--unlock")
    jobs = _planned_jobs(_snakemake(work, "-n", "--cores", "2", "--rerun-incomplete").stdout)
    assert ("decode", str(target.relative_to(work))) in jobs
    _snakemake(work, "--cores", "2", "--rerun-incomplete")
    assert target.exists() and target.read_bytes() != old
    assert "Nothing to be done" in _snakemake(work, "-n", "--cores", "2").stdout


def test_e2e_one_shard_and_k_shards_give_identical_predictions(e2e):
    work, config = e2e
    methods = ["bl", "sp", "bl+sp.avg", "sp+bl.adapt"]
    before = {m: (work / f"results/predictions/test/{m}/triviaqa.parquet").read_bytes() for m in methods}
    assert pq.read_table(work / "results/predictions/test/bl/triviaqa.parquet").num_rows == 6
    config["tasks"]["triviaqa"]["shards"] = 1
    _write_config(work, config)
    _snakemake(work, "--cores", "2")
    assert (work / "results/decode/test/bl/triviaqa/0-of-1.parquet").exists()
    for m in methods:
        after = (work / f"results/predictions/test/{m}/triviaqa.parquet").read_bytes()
        assert after == before[m], m
