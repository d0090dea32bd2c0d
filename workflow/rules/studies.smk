rule rank_members:
    """The scaling pool ordered by dev accuracy on one task (ties: config order)."""
    input:
        scaling_dev_scores,
    output:
        paths.RANKING,
    params:
        members=EXPERIMENT.scaling_pool,
    log:
        paths.log("rank_members", "{task}"),
    conda:
        "../envs/deepen.yaml"
    script:
        "../scripts/rank_members.py"


rule scaling_anchors:
    """Anchors of the ensemble of the first k ranked members on one task."""
    input:
        ranking=rules.rank_members.output[0],
        vocabularies=expand(paths.VOCABULARY, model=EXPERIMENT.scaling_pool),
    output:
        paths.SCALING_ANCHORS,
    params:
        members=EXPERIMENT.scaling_pool,
        min_anchors=config["min_anchors"],
        max_anchors=config["max_anchors"],
    log:
        paths.log("scaling_anchors", "{task}/k{k}"),
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        "../envs/deepen.yaml"
    script:
        "../scripts/scaling_anchors.py"


rule scaling_relative:
    """Relative space of the member ranked `rank` in the ensemble of the first k members on one task."""
    input:
        ranking=rules.rank_members.output[0],
        anchors=rules.scaling_anchors.output[0],
        models=expand(paths.MODEL, model=EXPERIMENT.scaling_pool),
        metas=expand(paths.MODEL_META, model=EXPERIMENT.scaling_pool),
    output:
        paths.SCALING_RELATIVE,
    params:
        members=EXPERIMENT.scaling_pool,
        cache_format=RELATIVE_CACHE,
        exact_tail=EXPERIMENT.certifies(None),
    log:
        paths.log("scaling_relative", "{task}/k{k}/{rank}"),
    benchmark:
        paths.benchmark("scaling_relative", "{task}/k{k}/{rank}")
    threads: 2
    resources:
        mem_mb=max([EXPERIMENT.models[m]["mem_mb"] for m in EXPERIMENT.scaling_pool], default=4000),
        runtime=30,
    conda:
        "../envs/deepen.yaml"
    script:
        "../scripts/scaling_relative.py"


rule scaling:
    """Accuracy and latency against the number of members (k = 1..K), per task: table and plot."""
    input:
        **EXPERIMENT.scaling_inputs(),
    output:
        parquet=paths.SCALING,
        markdown=report(paths.SCALING_MD, caption="../report/scaling_table.rst", category="Scaling"),
        png=report(paths.SCALING_PLOT, caption="../report/scaling.rst", category="Scaling"),
    params:
        tasks=EXPERIMENT.scaling_spec(),
    log:
        paths.log("scaling"),
    conda:
        "../envs/deepen.yaml"
    script:
        "../scripts/scaling.py"


rule sweep:
    """Accuracy and latency against η or T for one ensemble: table and plot."""
    input:
        sweep_scores,
    output:
        parquet=paths.SWEEP,
        png=report(paths.SWEEP_PLOT, caption="../report/sweep.rst", category="Sweeps"),
    params:
        points=sweep_points,
    log:
        paths.log("sweep", "{param}"),
    conda:
        "../envs/deepen.yaml"
    script:
        "../scripts/sweep.py"
