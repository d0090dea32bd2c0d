rule prompts:
    """Prompt rows of one task split, few-shot as the paper: id, prompt, gold answers, options, budget, stops. The
    task's data files are inputs: a changed file rebuilds exactly its prompts and what follows."""
    input:
        prompt_data_files,
    output:
        paths.PROMPTS,
    params:
        data_dir=config["data_dir"],
        hub=config["hub"],
        limit=prompt_limit,
        offset=prompt_offset,
        max_new_tokens=prompt_budget,
    log:
        paths.log("prompts", "{split}/{task}"),
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/deepen.yaml"
    script:
        "../scripts/prompts.py"
