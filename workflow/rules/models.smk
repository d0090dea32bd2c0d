rule materialise:
    """One model as a local safetensors checkpoint, with its fingerprint (vocabulary + input embeddings)."""
    output:
        model=directory(paths.MODEL),
        meta=paths.MODEL_META,
    params:
        source=lookup(dpath="models/{model}/source", within=config),
        trust_remote_code=lookup(dpath="models/{model}/trust_remote_code", within=config),
        dtype=config["dtype"],
    log:
        paths.log("materialise", "{model}"),
    benchmark:
        paths.benchmark("materialise", "{model}")
    threads: 2
    resources:
        mem_mb=lambda wc: 2 * model_mem_mb(wc),
        runtime=120,
    conda:
        "../envs/deepen.yaml"
    script:
        "../scripts/materialise.py"


rule vocabulary:
    """The member's normalised vocabulary: id, raw piece, decoded text, kind."""
    input:
        model=rules.materialise.output.model,
        meta=rules.materialise.output.meta,
    output:
        paths.VOCABULARY,
    log:
        paths.log("vocabulary", "{model}"),
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/deepen.yaml"
    script:
        "../scripts/vocabulary.py"
