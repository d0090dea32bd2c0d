rule decode:
    """Greedy decoding of one shard of one (method, task): a single member alone or a DeePEn ensemble."""
    input:
        unpack(decode_inputs),
    output:
        "results/decode/{split}/{method}/{task}/{shard}-of-{n}.parquet",
    params:
        spec=decode_params,
        device=config["device"],
        device_map=config["device_map"],
    log:
        "logs/decode/{split}/{method}/{task}/{shard}-of-{n}.log",
    benchmark:
        "benchmarks/decode/{split}/{method}/{task}/{shard}-of-{n}.tsv"
    threads: config["decode_threads"]
    resources:
        mem_mb=decode_mem_mb,
        runtime=240,
        gpu=config["gpu"],
    script:
        "../scripts/decode.py"
