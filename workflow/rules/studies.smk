rule rank_members:
    """The scaling pool ordered by dev accuracy on one task (ties: config order)."""
    input:
        scaling_dev_scores,
    output:
        "results/scaling/{task}/ranking.json",
    params:
        members=SCALING_POOL,
    log:
        "logs/rank_members/{task}.log",
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/rank_members.py"


rule scaling_anchors:
    """Anchors of the ensemble of the first k ranked members on one task."""
    input:
        ranking=rules.rank_members.output[0],
        vocabularies=expand("resources/vocabularies/{model}.parquet", model=SCALING_POOL),
    output:
        "resources/scaling/{task}/k{k}/anchors.parquet",
    params:
        members=SCALING_POOL,
        min_anchors=config["min_anchors"],
        max_anchors=config["max_anchors"],
    log:
        "logs/scaling_anchors/{task}/k{k}.log",
    resources:
        mem_mb=4000,
        runtime=10,
    script:
        "../scripts/scaling_anchors.py"


rule scaling_relative:
    """Relative space of the member ranked `rank` in the ensemble of the first k members on one task."""
    input:
        ranking=rules.rank_members.output[0],
        anchors=rules.scaling_anchors.output[0],
        models=expand("resources/models/{model}", model=SCALING_POOL),
        metas=expand("resources/models/{model}.json", model=SCALING_POOL),
    output:
        "resources/scaling/{task}/k{k}/relative/{rank}.parquet",
    params:
        members=SCALING_POOL,
        cache_format=RELATIVE_FORMAT,
    log:
        "logs/scaling_relative/{task}/k{k}/{rank}.log",
    benchmark:
        "benchmarks/scaling_relative/{task}/k{k}/{rank}.tsv"
    threads: config["prep_threads"]
    resources:
        mem_mb=max([MODELS[m].get("mem_mb", 4000) for m in SCALING_POOL], default=4000),
        runtime=30,
    script:
        "../scripts/scaling_relative.py"


rule scaling:
    """Accuracy and latency against the number of members (k = 1..K), per task: table and plot."""
    input:
        **scaling_inputs(),
    output:
        parquet="results/scaling.parquet",
        markdown=report("results/scaling.md", caption="../report/scaling_table.rst", category="Scaling"),
        png=report("results/plots/scaling.png", caption="../report/scaling.rst", category="Scaling"),
    params:
        tasks=scaling_spec(),
    log:
        "logs/scaling.log",
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/scaling.py"


rule sweep:
    """Accuracy and latency against η or T for one ensemble: table and plot."""
    input:
        sweep_scores,
    output:
        parquet="results/sweeps/{param}.parquet",
        png=report("results/plots/sweep_{param}.png", caption="../report/sweep.rst", category="Sweeps"),
    params:
        points=sweep_params,
    log:
        "logs/sweep/{param}.log",
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/sweep.py"
