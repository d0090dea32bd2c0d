rule decode:
    """Greedy decoding of one shard of one (method, task): a member alone, or a decoding method over an ensemble. The
    shard records the settings, fingerprints and prompts it was made from (the score rule checks them)."""
    input:
        unpack(decode_inputs),
    output:
        paths.SHARD,
    params:
        settings=decode_settings,
    log:
        paths.log("decode", "{split}/{method}/{task}/{shard}-of-{n}"),
    benchmark:
        paths.benchmark("decode", "{split}/{method}/{task}/{shard}-of-{n}")
    threads: 1
    resources:
        mem_mb=decode_mem_mb,
        runtime=240,
        gpu=0,  # profiles/slurm-gpu, or --set-resources decode:gpu=1
    conda:
        "../envs/deepen.yaml"
    script:
        "../scripts/decode.py"


rule tune_eta:
    """DeePEn with η chosen on the dev split: the task's dev questions decoded at each η of the ensemble's tune_eta
    (the ensemble loaded once), scored, the best kept (deepen.pipeline.tune)."""
    input:
        unpack(tune_inputs),
    output:
        paths.TUNING,
    params:
        settings=decode_settings,
    log:
        paths.log("tune_eta", "{method}/{task}"),
    benchmark:
        paths.benchmark("tune_eta", "{method}/{task}")
    threads: 1
    resources:
        mem_mb=decode_mem_mb,
        runtime=240,
        gpu=0,
    conda:
        "../envs/deepen.yaml"
    script:
        "../scripts/tune_eta.py"
