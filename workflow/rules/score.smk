rule score:
    """Shards in order -> predictions (identical for any shard count), per-row timings, and per-row scores: the
    paper's metric (MC: the option chosen after fusion) and the free-greedy variant. Shards made with other settings
    than this run's are refused."""
    input:
        unpack(score_inputs),
    output:
        predictions=paths.PREDICTIONS,
        timings=paths.TIMINGS,
        scores=paths.SCORES,
    wildcard_constraints:
        method=methods_of_kind("single", "ensemble", "scaling", "sweep"),  # decoded (Voting / MBR: rule combine)
    params:
        settings=decode_settings,
    log:
        paths.log("score", "{split}/{method}/{task}"),
    conda:
        "../envs/deepen.yaml"
    script:
        "../scripts/score.py"


rule adapt_weights:
    """DeePEn-Adapt weights of one ensemble on one task: normalised dev accuracies of its members."""
    input:
        adapt_dev_scores,
    output:
        paths.WEIGHTS,
    params:
        members=ensemble_members,
    log:
        paths.log("adapt_weights", "{ensemble}/{task}"),
    conda:
        "../envs/deepen.yaml"
    script:
        "../scripts/adapt_weights.py"
