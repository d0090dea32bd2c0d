rule summary:
    """Table-1-style summary: methods x tasks, Δ vs the best single member, latency, published numbers."""
    input:
        scores=test_scores(),
        published=config["published"] or [],
    output:
        parquet="results/summary.parquet",
        markdown=report("results/summary.md", caption="../report/summary.rst", category="Summary"),
    params:
        entries=summary_entries(),
        title=config["title"],
    log:
        "logs/summary.log",
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/summary.py"


rule plots:
    """Accuracy per method and task; ensemble gain over the best single member."""
    input:
        rules.summary.output.parquet,
    output:
        accuracy=report("results/plots/accuracy.png", caption="../report/accuracy.rst", category="Plots"),
        gain=report("results/plots/gain.png", caption="../report/gain.rst", category="Plots"),
    log:
        "logs/plots.log",
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/plots.py"
