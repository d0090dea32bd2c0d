"""Where every artifact of the pipeline lives (Snakemake path templates: the rules and the experiment model use these,
and nothing else spells a path).

``resources/`` holds what is retrieved or reused (models, vocabularies, anchors, relative caches, prompts),
``results/`` what the evaluation produces; both, with ``logs/`` and ``benchmarks/``, are ignored by git.
"""

MODEL = "resources/models/{model}"
MODEL_META = "resources/models/{model}.json"
VOCABULARY = "resources/vocabularies/{model}.parquet"
ANCHORS = "resources/anchors/{ensemble}.parquet"
RELATIVE = "resources/relative/{ensemble}/{model}.parquet"
PROMPTS = "resources/prompts/{split}/{task}.parquet"
SCALING_ANCHORS = "resources/scaling/{task}/k{k}/anchors.parquet"
SCALING_RELATIVE = "resources/scaling/{task}/k{k}/relative/{rank}.parquet"

SHARD = "results/decode/{split}/{method}/{task}/{shard}-of-{n}.parquet"
PREDICTIONS = "results/predictions/{split}/{method}/{task}.parquet"
TIMINGS = "results/timings/{split}/{method}/{task}.parquet"
SCORES = "results/scores/{split}/{method}/{task}.parquet"
WEIGHTS = "results/weights/{ensemble}/{task}.json"
TUNING = "results/tuning/{method}/{task}.json"
RANKING = "results/scaling/{task}/ranking.json"

SUMMARY = "results/summary.parquet"
SUMMARY_MD = "results/summary.md"
ACCURACY_PLOT = "results/plots/accuracy.png"
GAIN_PLOT = "results/plots/gain.png"
SCALING = "results/scaling.parquet"
SCALING_MD = "results/scaling.md"
SCALING_PLOT = "results/plots/scaling.png"
SWEEP = "results/sweeps/{param}.parquet"
SWEEP_PLOT = "results/plots/sweep_{param}.png"


def log(rule: str, pattern: str = "") -> str:
    """The log file of one job of ``rule`` (``pattern``: its wildcards, e.g. "{split}/{method}/{task}")."""
    return f"logs/{rule}/{pattern}.log" if pattern else f"logs/{rule}.log"


def benchmark(rule: str, pattern: str) -> str:
    """The benchmark file (wall time, peak RSS) of one job of ``rule``."""
    return f"benchmarks/{rule}/{pattern}.tsv"
