"""The columns of the pipeline's tables (one place; every writer and reader uses these)."""

import pyarrow as pa

#: One decoded row (``results/decode/...`` shards add ``seconds``; ``results/predictions`` omit it, so that predictions
#: are byte-identical for any shard count).
PREDICTION_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("text", pa.string()),
    ("token_ids", pa.list_(pa.int64())),
    ("choice", pa.string()),
    ("stop_reason", pa.string()),
])
SHARD_SCHEMA = PREDICTION_SCHEMA.append(pa.field("ensembled", pa.int64())).append(pa.field("seconds", pa.float64()))
#: Voting / MBR predictions: which candidate's answer is scored, and its share of the votes or expected utility.
COMBINED_SCHEMA = PREDICTION_SCHEMA.append(pa.field("source", pa.string())).append(pa.field("support", pa.float64()))
#: Per row: wall time, generated tokens, and how many of its steps were ensembled (the rest: the main model alone).
TIMING_SCHEMA = pa.schema([("id", pa.string()), ("seconds", pa.float64()), ("n_tokens", pa.int64()),
                           ("ensembled", pa.int64())])
SCORE_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("correct", pa.float64()),  # the paper's metric (MC: the option chosen among the options after fusion)
    ("correct_free", pa.float64()),  # MC: the letter of the unrestricted greedy output; else = correct
    ("seconds", pa.float64()),
    ("n_tokens", pa.int64()),
    ("ensembled", pa.int64()),
])
#: One (method, task) of the summary: score and 95% interval (percent), the paired difference to the best member alone
#: (points, interval, McNemar p, whether the interval excludes 0), cost, and the published number.
SUMMARY_SCHEMA = pa.schema([
    ("method", pa.string()), ("row", pa.string()), ("kind", pa.string()), ("family", pa.string()),
    ("task", pa.string()), ("n", pa.int64()), ("acc", pa.float64()), ("acc_lo", pa.float64()),
    ("acc_hi", pa.float64()), ("acc_free", pa.float64()), ("best_single", pa.string()), ("delta", pa.float64()),
    ("delta_lo", pa.float64()), ("delta_hi", pa.float64()), ("delta_p", pa.float64()), ("significant", pa.bool_()),
    ("seconds", pa.float64()), ("tokens", pa.float64()), ("ensembled", pa.float64()), ("published", pa.float64()),
    ("ours_minus_published", pa.float64()), ("eta_dev", pa.float64()),
])
SCALING_SCHEMA = pa.schema([
    ("task", pa.string()), ("k", pa.int64()), ("members", pa.string()), ("added", pa.string()), ("n", pa.int64()),
    ("acc", pa.float64()), ("acc_lo", pa.float64()), ("acc_hi", pa.float64()), ("seconds", pa.float64()),
    ("tokens", pa.float64()), ("dev_acc_added", pa.float64()),
])
SWEEP_SCHEMA = pa.schema([
    ("param", pa.string()), ("value", pa.float64()), ("task", pa.string()), ("method", pa.string()),
    ("n", pa.int64()), ("acc", pa.float64()), ("acc_lo", pa.float64()), ("acc_hi", pa.float64()),
    ("seconds", pa.float64()), ("tokens", pa.float64()),
])
