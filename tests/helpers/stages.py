"""The pipeline's model stages run in process on the synthetic pair: materialised model dirs, metas, vocabularies,
anchors, relative caches, and a prompts file of short rows (what a decode job reads)."""

from __future__ import annotations

import shutil
from pathlib import Path

from deepen.eval.task_data import write_prompts
from deepen.pipeline.models import anchors_table, materialise, relative_table, vocabulary_table
from deepen.pipeline.score import gather
from helpers import synthetic

# Short prompts (the synthetic members read 512 tokens at most) in three batches of 3 / 2 / 1 rows at batch size 3.
ROWS = [
    ("r0", "The cat sat on the", ["A", "B"]),
    ("r1", "Hello world, this is a longer prompt about café and naïve people.\nNext line:", []),
    ("r2", "日本 😀 numbers 12 34", []),
    ("r3", "a", []),
    ("r4", "Alice likes the old book because", ["A", "B", "C", "D"]),
    ("r5", "Every morning the quiet river", []),
]
LONG = " ".join(["the small cat sees the old dog"] * 120)  # ~840 words: beyond the 512-token window

#: what `decode_shard` records as a shard's provenance in these tests (the score stage, which checks it, is not run)
MADE_FROM = {"settings": {"test": True}}


def prompt_rows(rows=ROWS, budget=6) -> list[dict]:
    return [{"id": i, "task": "synthetic", "prompt": p, "answers": [c[0]] if c else ["x"], "choices": c,
             "max_new_tokens": 1 if c else budget, "stop": ["\n"]} for i, p, c in rows]


def build_stages(tmp: Path) -> dict:
    """Two synthetic members materialised through the pipeline stages under ``tmp``."""
    src = synthetic.build_pair(tmp / "src")
    res = tmp / "resources"
    names = ["bl", "sp"]
    dirs = [str(res / "models" / n) for n in names]
    metas = [str(res / "models" / f"{n}.json") for n in names]
    vocabs = [str(res / "vocabularies" / f"{n}.parquet") for n in names]
    for s, d, m, v in zip(src, dirs, metas, vocabs):
        materialise(s, d, m, dtype="float32")
        vocabulary_table(d, m, v)
    anchors = str(res / "anchors" / "bl+sp.parquet")
    anchors_table(vocabs, names, anchors, min_anchors=50)
    relative = [str(res / "relative" / "bl+sp" / f"{n}.parquet") for n in names]
    for i, (d, m, r) in enumerate(zip(dirs, metas, relative)):  # with the exact tail, as the pipeline builds them
        relative_table(d, m, anchors, i, r, exact_tail=True)     # for an ensemble at η 0.5, T 5 (certified)
    prompts = tmp / "prompts.parquet"
    write_prompts(prompt_rows(), prompts)
    return dict(tmp=tmp, src=src, names=names, dirs=dirs, metas=metas, anchors=anchors, relative=relative,
                prompts=str(prompts))


def load_stages_ensemble(st: dict, **options):
    """DeePEn over the materialised pair with its cached anchors and relative spaces (eta 0.5, T 5 unless given)."""
    from deepen.pipeline.decode import load_ensemble

    options = {"eta": 0.5, "steps": 5, **options}
    return load_ensemble(st["dirs"], st["metas"], st["names"], method="deepen", options=options,
                         anchors_path=st["anchors"], relative_paths=st["relative"], dtype="float32")


def copy_stages(st: dict, dest: Path) -> dict:
    """A private copy of the resources (tests that damage files must not damage the shared ones)."""
    shutil.copytree(st["tmp"] / "resources", dest)
    old = str(st["tmp"] / "resources")
    return {**st, **{k: [p.replace(old, str(dest)) for p in st[k]] for k in ("dirs", "metas", "relative")},
            "anchors": st["anchors"].replace(old, str(dest))}


def predictions(shards: list[str], out_dir: Path) -> bytes:
    """The `score` rule's gather: shards -> predictions Parquet (no wall times); its bytes."""
    pred = out_dir / "predictions.parquet"
    gather(shards, pred, out_dir / "timings.parquet")
    return pred.read_bytes()
