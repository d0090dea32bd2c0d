rule combine:
    """Voting / MBR over an ensemble's members, or DeePEn+Voting/MBR, on one task: picks one cached prediction per
    question (no decoding), then scores it like any method."""
    input:
        unpack(combined),
    output:
        predictions="results/predictions/{split}/{method}/{task}.parquet",
        timings="results/timings/{split}/{method}/{task}.parquet",
        scores="results/scores/{split}/{method}/{task}.parquet",
    wildcard_constraints:
        method=methods_of_kind("combine"),
    params:
        rule=combine_rule,
        candidates=combine_candidates,
    log:
        "logs/combine/{split}/{method}/{task}.log",
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/combine.py"
