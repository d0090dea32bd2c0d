"""The evaluation pipeline, file in, file out: the only code the workflow's scripts call.

Read in the order of the DAG:

    config      every check of a config before any job starts; the experiment model it becomes (experiment)
    experiment  which methods run on which tasks, what each decode needs, what the summary shows
    paths       where every artifact lives
    models      materialise, vocabulary, anchors, relative caches (the stages that load models)
    prompts     a task split -> prompt rows
    decode      a shard of one (method, task) -> Parquet; shards: provenance and the guards of stale jobs
    score       gather, score, Voting / MBR, DeePEn-Adapt weights
    tune        DeePEn's η chosen on the dev split
    studies     scaling with the number of members, η / T sweeps
    summary     the summary table (with statistics), plots: its figures
    io, schemas files and their columns

Modules that load models import torch at the top; the others never do, so Snakemake's own process (which runs the
light rules) and the light jobs do not pay for it.
"""
