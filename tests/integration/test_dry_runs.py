"""Dry runs of the shipped configs: the DAG of each lists every job the experiment needs, and nothing is touched at
DAG time."""

from __future__ import annotations

from helpers.pipeline import job_stats, planned_jobs, snakemake, workdir


def test_dry_run_default_config(tmp_path):
    work = workdir(tmp_path)
    proc = snakemake(work, "-n", "--cores", "1")
    stats = job_stats(proc.stdout)
    # 7 methods (2 singles; one ensemble x DeePEn-Avg/-Adapt, GaC, UniTE, SAFE+DeePEn) x 4 tasks + dev decodes of the
    # 2 singles on 4 tasks; no scaling, no sweeps (config/study.yaml has them)
    assert stats["materialise"] == 2 and stats["vocabulary"] == 2 and stats["anchors"] == 1 and stats["relative"] == 2
    assert stats["prompts"] == 8 and stats["decode"] == 7 * 4 + 8 and stats["score"] == 36
    assert stats["adapt_weights"] == 4 and stats["summary"] == 1 and stats["plots"] == 1
    # Voting on ARC-C and PIQA, MBR on TriviaQA and NQ, DeePEn+Voting/MBR on all 4; no decoding
    assert stats["combine"] == 2 + 2 + 4
    assert "scaling" not in stats and "sweep" not in stats and stats["all"] == 1
    assert sum(stats.values()) == 102
    jobs = planned_jobs(proc.stdout)
    combined = sorted(o.split(",")[0] for r, o in jobs if r == "combine")
    assert "results/predictions/test/gemma3+smollm2.voting/piqa.parquet" in combined
    assert "results/predictions/test/gemma3+smollm2.mbr/nq.parquet" in combined
    assert "results/predictions/test/gemma3+smollm2.deepen.adapt+voting-mbr/triviaqa.parquet" in combined
    assert not any("/nq." in o for o in combined if ".voting/" in o) and not any(".mbr/arc_c" in o for o in combined)


def test_dry_run_paper_config_lists_every_paper_job(tmp_path):
    work = workdir(tmp_path)
    # the GPU a decode job asks for is not configuration: config/paper.yaml documents `--set-resources decode:gpu=1`
    proc = snakemake(work, "-n", "--cores", "1", "--configfile", "config/paper.yaml", "--set-resources",
                     "decode:gpu=1")
    stats = job_stats(proc.stdout)
    assert stats["materialise"] == 6 and stats["anchors"] == 10 and stats["relative"] == 30
    jobs = planned_jobs(proc.stdout)
    outs = " ".join(o for _, o in jobs)
    for method, task in [("yi", "mmlu"), ("mmlu-top2.deepen.avg", "mmlu"), ("mmlu-top4.deepen.adapt", "mmlu"),
                         ("arc_c-top4.deepen.avg", "arc_c"), ("gsm8k-top4.deepen.adapt", "gsm8k"),
                         ("piqa-top2.deepen.avg", "piqa"), ("qa-top4.deepen.adapt", "triviaqa"),
                         ("qa-top2.deepen.avg", "nq"), ("llama2", "nq")]:
        assert f"results/scores/test/{method}/{task}.parquet" in outs, (method, task)
    assert "results/decode/test/mmlu-top4.deepen.adapt/mmlu/7-of-8.parquet" in outs
    for method, task in [("mmlu-top4.voting", "mmlu"), ("gsm8k-top4.voting", "gsm8k"), ("gsm8k-top4.mbr", "gsm8k"),
                         ("qa-top4.mbr", "nq"), ("arc_c-top4.deepen.adapt+voting-mbr", "arc_c"),
                         ("qa-top4.deepen.adapt+voting-mbr", "triviaqa"), ("tigerbot", "arc_c"),  # every single
                         ("scaling.k4", "gsm8k"), ("arc_c-top2.deepen.avg.eta0.5", "arc_c"),
                         ("arc_c-top2.deepen.avg.T10", "arc_c")]:
        assert f"results/scores/test/{method}/{task}.parquet" in outs, (method, task)
    assert "results/plots/scaling.png" in outs and "results/plots/sweep_steps.png" in outs
    assert "resources/scaling/nq/k4/relative/3.parquet" in outs
    assert "mmlu-top4.mbr" not in outs and "scaling.k5" not in outs
    assert not (work / "resources").exists()  # nothing touched at DAG time
    assert "gpu=1" in proc.stdout


def test_dry_run_translation_config_lists_every_job(tmp_path):
    work = workdir(tmp_path)
    proc = snakemake(work, "-n", "--cores", "1", "--configfile", "config/paper_translation.yaml", "--set-resources",
                     "decode:gpu=1")
    stats = job_stats(proc.stdout)
    # 4 directions x (2 singles + 2 orders x Avg/Adapt) at 2 shards each, + dev decodes of the 2 singles
    assert stats["materialise"] == 2 and stats["anchors"] == 2 and stats["relative"] == 4
    assert stats["prompts"] == 8 and stats["decode"] == 4 * 6 * 2 + 4 * 2 and stats["score"] == 4 * 6 + 4 * 2
    assert stats["adapt_weights"] == 8 and stats["summary"] == 1
    assert not {"combine", "scaling", "sweep"} & set(stats)  # nothing of the embedded default's studies leaks in
    outs = " ".join(o for _, o in planned_jobs(proc.stdout))
    for method in ("nllb", "llama2", "mt-nllb-main.deepen.avg", "mt-nllb-main.deepen.adapt",
                   "mt-llama2-main.deepen.avg", "mt-llama2-main.deepen.adapt"):
        for task in ("flores_en_de", "flores_de_en", "flores_en_ro", "flores_ro_en"):
            assert f"results/scores/test/{method}/{task}.parquet" in outs, (method, task)
    assert "results/decode/test/mt-nllb-main.deepen.adapt/flores_ro_en/1-of-2.parquet" in outs
    assert "resources/models/nllb" in outs and "smollm2" not in outs and "mmlu" not in outs
    assert "gpu=1" in proc.stdout
    assert not (work / "resources").exists()  # nothing touched at DAG time


def test_dry_run_study_config(tmp_path):
    work = workdir(tmp_path)
    stats = job_stats(snakemake(work, "-n", "--cores", "1", "--configfile", "config/study.yaml").stdout)
    assert stats["materialise"] == 3 and stats["anchors"] == 2 and stats["relative"] == 2 + 3
    # test shards (ARC-C and PIQA in 2 each, 3 single-shard tasks = 7 per method): 3 singles, top-2 x 7 methods
    # (Avg, Adapt, their two tuned twins, GaC, UniTE, SAFE), top-3 x 5; + the singles' dev decodes on 5 tasks
    assert stats["decode"] == 7 * (3 + 7 + 5) + 3 * 5
    assert stats["tune_eta"] == 2 * 5  # the top-2's Avg and Adapt, each on 5 tasks
    assert stats["combine"] == 3 + 2 + 5  # top-3 only: Voting on the letter tasks, MBR on the QA ones, DeePEn+both
