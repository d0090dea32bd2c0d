rule score:
    """Shards in order -> predictions (identical for any shard count), per-row timings, and per-row scores: the
    paper's metric (MC: the option chosen after fusion) and the free-greedy variant."""
    input:
        prompts="resources/prompts/{split}/{task}.parquet",
        shards=shard_outputs,
    output:
        predictions="results/predictions/{split}/{method}/{task}.parquet",
        timings="results/timings/{split}/{method}/{task}.parquet",
        scores="results/scores/{split}/{method}/{task}.parquet",
    wildcard_constraints:
        method=methods_of_kind("single", "ensemble", "scaling", "sweep"),  # decoded (Voting / MBR: rule combine)
    log:
        "logs/score/{split}/{method}/{task}.log",
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/score.py"


rule adapt_weights:
    """DeePEn-Adapt weights of one ensemble on one task: normalised dev accuracies of its members."""
    input:
        adapt_dev_scores,
    output:
        "results/weights/{ensemble}/{task}.json",
    params:
        members=lambda wc: ENSEMBLES[wc.ensemble]["members"],
    log:
        "logs/adapt_weights/{ensemble}/{task}.log",
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/adapt_weights.py"
