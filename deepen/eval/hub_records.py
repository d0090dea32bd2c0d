"""Records of the public benchmarks on the Hugging Face Hub -> our task rows (``hub: true``).

Pure functions of one record, each documented with the hub dataset's columns. The hub copies are the public
benchmarks, not the authors' subsets or demonstrations, so numbers on them are not comparable to the paper's.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from typing import Any

from deepen.errors import TaskError

Row = dict[str, Any]


def mmlu(record: Row) -> Row:
    """cais/mmlu: {question, subject, choices: [4 str], answer: int 0-3}."""
    row = {"question": record["question"], "subject": record["subject"]}
    row.update(zip("ABCD", record["choices"]))
    row["answer"] = "ABCD"[int(record["answer"])]
    return row


def arc(record: Row) -> Row:
    """allenai/ai2_arc: {question, choices: {text: [...], label: [...]}, answerKey}.

    Labels are "A".."E" or "1".."5" and there are 3 to 5 options; options are relabelled
    A, B, C, ... by position so that every prompt uses letters.
    """
    texts, labels = record["choices"]["text"], record["choices"]["label"]
    letters = string.ascii_uppercase[: len(labels)]
    row = {"question": record["question"]}
    row.update(zip(letters, texts))
    row["answer"] = letters[list(labels).index(record["answerKey"])]
    return row


def piqa(record: Row) -> Row:
    """ybisk/piqa (parquet branch): {goal, sol1, sol2, label: 0/1}."""
    return {"question": record["goal"], "A": record["sol1"], "B": record["sol2"], "answer": "AB"[int(record["label"])]}


_GSM8K_CALCULATOR = re.compile(r"<<[^>]*>>")
_GSM8K_FINAL = re.compile(r"\n?####\s*(.+?)\s*$")


def gsm8k(record: Row) -> Row:
    """openai/gsm8k main: {question, answer: "<steps with <<calc>> notes>\\n#### N"}.

    Rewritten the way the authors' cleaned files read: calculator notes removed and the
    final "#### N" turned into "The answer is N".
    """
    answer = _GSM8K_CALCULATOR.sub("", record["answer"])
    answer = _GSM8K_FINAL.sub(lambda m: f"\nThe answer is {m.group(1)}", answer)
    return {"question": record["question"], "answer": answer}


def triviaqa(record: Row) -> Row:
    """mandarjoshi/trivia_qa rc.nocontext: {question, answer: {value, aliases, ...}}."""
    aliases = [record["answer"]["value"], *record["answer"]["aliases"]]
    return {"question": record["question"], "answer": list(dict.fromkeys(aliases))}


def nq(record: Row) -> Row:
    """google-research-datasets/nq_open: {question, answer: [str]}."""
    return {"question": record["question"], "answer": list(record["answer"])}


def flores(records: Sequence[Row]) -> Row:
    """openlanguagedata/flores_plus, one record per language config (source first, then target):
    {id, iso_639_3, iso_15924, glottocode, text, url, domain, topic, ...}. The two must be the
    same sentence (same id). facebook/flores' parquet configs, which call the text "sentence",
    map the same way."""
    source, target = records
    if source["id"] != target["id"]:
        raise TaskError(f"FLORES records are not aligned: source id {source['id']}, target id {target['id']}")
    text = lambda r: r["text"] if "text" in r else r["sentence"]  # noqa: E731
    return {"source": text(source), "target": text(target), "flores_id": source["id"]}
