rule anchors:
    """Tokens every member of the ensemble has, one id column per member (main first)."""
    input:
        ensemble_vocabularies,
    output:
        paths.ANCHORS,
    params:
        members=ensemble_members,
        min_anchors=config["min_anchors"],
        max_anchors=config["max_anchors"],
    log:
        paths.log("anchors", "{ensemble}"),
    benchmark:
        paths.benchmark("anchors", "{ensemble}")
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        "../envs/deepen.yaml"
    script:
        "../scripts/anchors.py"


rule relative:
    """A member's relative space for fast mode: anchor unit embeddings and the tail clusters."""
    input:
        model=rules.materialise.output.model,
        meta=rules.materialise.output.meta,
        anchors=rules.anchors.output[0],
    output:
        paths.RELATIVE,
    params:
        member_index=member_index,
        cache_format=RELATIVE_CACHE,  # a new format reruns this rule (Snakemake's params trigger)
        exact_tail=ensemble_certifies,
    log:
        paths.log("relative", "{ensemble}/{model}"),
    benchmark:
        paths.benchmark("relative", "{ensemble}/{model}")
    threads: 2
    resources:
        mem_mb=model_mem_mb,
        runtime=30,
    conda:
        "../envs/deepen.yaml"
    script:
        "../scripts/relative.py"
