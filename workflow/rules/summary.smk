rule summary:
    """Table-1-style summary: methods x tasks, Δ vs the best single member, latency, published numbers."""
    input:
        scores=EXPERIMENT.test_scores(),
        published=config["published"] or [],
        tuning=EXPERIMENT.tuning_files(),
    output:
        parquet=paths.SUMMARY,
        markdown=report(paths.SUMMARY_MD, caption="../report/summary.rst", category="Summary"),
    params:
        entries=EXPERIMENT.summary_entries(),
        title=config["title"],
    log:
        paths.log("summary"),
    conda:
        "../envs/deepen.yaml"
    script:
        "../scripts/summary.py"


rule plots:
    """Accuracy per method and task; ensemble gain over the best single member."""
    input:
        rules.summary.output.parquet,
    output:
        accuracy=report(paths.ACCURACY_PLOT, caption="../report/accuracy.rst", category="Plots"),
        gain=report(paths.GAIN_PLOT, caption="../report/gain.rst", category="Plots"),
    log:
        paths.log("plots"),
    conda:
        "../envs/deepen.yaml"
    script:
        "../scripts/plots.py"
