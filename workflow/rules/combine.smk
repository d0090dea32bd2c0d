rule combine:
    """Voting / MBR over an ensemble's members, or DeePEn+Voting/MBR, on one task: picks one cached prediction per
    question (no decoding), then scores it like any method."""
    input:
        unpack(combine_inputs),
    output:
        predictions=paths.PREDICTIONS,
        timings=paths.TIMINGS,
        scores=paths.SCORES,
    wildcard_constraints:
        method=methods_of_kind("combine"),
    params:
        rule=combine_rule,
        candidates=combine_candidates,
    log:
        paths.log("combine", "{split}/{method}/{task}"),
    conda:
        "../envs/deepen.yaml"
    script:
        "../scripts/combine.py"
