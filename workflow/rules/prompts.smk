rule prompts:
    """Prompt rows of one task split, few-shot as the paper: id, prompt, gold answers, options, budget, stops."""
    output:
        "resources/prompts/{split}/{task}.parquet",
    params:
        data_dir=config["data_dir"],
        hub=config["hub"],
        limit=lambda wc: task_option(wc.task, "limit" if wc.split == "test" else "dev_limit"),
        offset=lambda wc: task_option(wc.task, "offset") if wc.split == "test" else 0,
        max_new_tokens=lambda wc: task_option(wc.task, "max_new_tokens"),
    log:
        "logs/prompts/{split}/{task}.log",
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/prompts.py"
