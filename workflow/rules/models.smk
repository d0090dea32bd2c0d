rule materialise:
    """One model as a local safetensors checkpoint, with its fingerprint (vocabulary + input embeddings)."""
    output:
        model=directory("resources/models/{model}"),
        meta="resources/models/{model}.json",
    params:
        source=lambda wc: MODELS[wc.model]["source"],
        dtype=config["dtype"],
        cache_dir="resources",
        trust_remote_code=lambda wc: MODELS[wc.model].get("trust_remote_code", False),
    log:
        "logs/materialise/{model}.log",
    benchmark:
        "benchmarks/materialise/{model}.tsv"
    threads: config["prep_threads"]
    resources:
        mem_mb=lambda wc: 2 * MODELS[wc.model].get("mem_mb", 4000),
        runtime=120,
    script:
        "../scripts/materialise.py"


rule vocabulary:
    """The member's normalised vocabulary: id, raw piece, decoded text, kind."""
    input:
        model=rules.materialise.output.model,
        meta=rules.materialise.output.meta,
    output:
        "resources/vocabularies/{model}.parquet",
    log:
        "logs/vocabulary/{model}.log",
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/vocabulary.py"
