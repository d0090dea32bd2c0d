rule anchors:
    """Tokens every member of the ensemble has, one id column per member (main first)."""
    input:
        ensemble_vocabularies,
    output:
        "resources/anchors/{ensemble}.parquet",
    params:
        members=lambda wc: ENSEMBLES[wc.ensemble]["members"],
        min_anchors=config["min_anchors"],
        max_anchors=config["max_anchors"],
    log:
        "logs/anchors/{ensemble}.log",
    benchmark:
        "benchmarks/anchors/{ensemble}.tsv"
    resources:
        mem_mb=4000,
        runtime=10,
    script:
        "../scripts/anchors.py"


rule relative:
    """A member's relative space for fast mode: anchor unit embeddings and the tail clusters."""
    input:
        model=rules.materialise.output.model,
        meta=rules.materialise.output.meta,
        anchors=rules.anchors.output[0],
    output:
        "resources/relative/{ensemble}/{model}.parquet",
    params:
        member_index=member_index,
        cache_format=RELATIVE_FORMAT,  # a new format reruns this rule (Snakemake's params trigger)
    log:
        "logs/relative/{ensemble}/{model}.log",
    benchmark:
        "benchmarks/relative/{ensemble}/{model}.tsv"
    threads: config["prep_threads"]
    resources:
        mem_mb=lambda wc: MODELS[wc.model].get("mem_mb", 4000),
        runtime=30,
    script:
        "../scripts/relative.py"
