"""Evaluation: tasks as data, their files, metrics, Voting / MBR and confidence intervals.

Pure Python: nothing here imports torch (the pipeline's bookkeeping jobs import it without paying for torch).

    metrics     how a row is scored, how a task aggregates, how answers are keyed for voting (a registry)
    tasks       the paper's tasks as data: files, prompt templates, budgets, each naming its metric
    task_data   reading and validating a task's files (or the Hub copy), building prompt rows
    hub_records public benchmark records on the Hugging Face Hub -> task rows
    combine     Voting and MBR over cached predictions
"""
