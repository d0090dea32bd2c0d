"""Prompt templates and gold answers of the tasks, one pure function per row format (the authors' release's
templates, ``confs/*``): prompt = instruction header + demonstrations + question (``deepen.eval.tasks``)."""

from __future__ import annotations

import re
from typing import Any

from deepen.errors import TaskError
from deepen.languages import language_name
from deepen.eval.metrics import last_number

Row = dict[str, Any]


# ---------------------------------------------------------------------------------------------
# Multiple choice rows: {"question", "A", "B", ..., "answer"}

_OPTION_KEY = re.compile(r"[A-Z]|\d+")


def option_keys(row: Row) -> list[str]:
    keys = [k for k in row if _OPTION_KEY.fullmatch(k)]
    return sorted(keys, key=lambda k: (len(k), k))  # "A" < "B", "2" < "10"


def mc_options(row: Row) -> list[tuple[str, str]]:
    """The (label, text) options of a multiple-choice row, in label order.

    Option keys are single capital letters or numbers. Options with empty text are dropped
    (ARC-C 3-option questions come with an empty "D"), unless all are empty: the authors'
    ARC-C files lost the option texts of the 22 test (23 train) questions that AI2 labels
    1-4, and those are kept, rendered as the authors' prompt rendered them ("A. \\nB. \\n...").
    """
    options = [(k, "" if row[k] is None else str(row[k])) for k in option_keys(row)]
    present = [(k, text) for k, text in options if text.strip()]
    return present or options


def mc_gold(row: Row) -> list[str]:
    """The gold option label of a multiple-choice row, as a one-element list.

    A numeric answer that is not itself an option key is a 1-based option position (AI2's
    ARC labels "1"-"4") and is mapped to the label in that position ("2" -> "B").
    """
    answer = row.get("answer")
    if answer is None or str(answer).strip() == "":
        raise TaskError("missing gold answer")
    answer = str(answer).strip()
    labels = option_keys(row)
    if answer not in labels and answer.isdigit() and 1 <= int(answer) <= len(labels):
        answer = labels[int(answer) - 1]
    if answer not in [label for label, _ in mc_options(row)]:
        raise TaskError(f"gold answer {answer!r} is not an option of this row (options {labels})")
    return [answer]


def mc_labels(row: Row) -> list[str]:
    return [label for label, _ in mc_options(row)]


def _options_block(row: Row) -> str:
    return "".join(f"{label}. {text}\n" for label, text in mc_options(row))


def mmlu_prompt(row: Row) -> str:
    subject = row["subject"].replace("_", " ")
    return (
        f"There is a single choice question about {subject}. "
        "Answer the question by replying A, B, C or D.\n"
        f"Question: {row['question']}\n{_options_block(row)}Answer:"
    )


def mmlu_demo(row: Row) -> str:
    return f"{mmlu_prompt(row)} {mc_gold(row)[0]}\n"


def arc_prompt(row: Row) -> str:
    return f"Question: {row['question']}\n{_options_block(row)}Answer:"


def piqa_prompt(row: Row) -> str:
    return f"{row['question']}\n{_options_block(row)}Answer:"


# ---------------------------------------------------------------------------------------------
# GSM8K rows: {"question", "answer": "<reasoning>\nTherefore, the answer is N"}


def gsm8k_gold(row: Row) -> list[str]:
    """The gold number: the last number of the gold solution (docs/method.md §5)."""
    answer = row.get("answer")
    if not isinstance(answer, str) or not answer.strip():
        raise TaskError("missing gold answer")
    number = last_number(answer)
    if number is None:
        raise TaskError(f"gold answer has no number: {answer[-60:]!r}")
    return [number]


def gsm8k_prompt(row: Row) -> str:
    return f"Question: {row['question']}\nLet's think step by step\nAnswer:"


def gsm8k_demo(row: Row) -> str:
    # The authors' demo template is "...Answer:{answer}\n" (no space after "Answer:") and their
    # demo answers end in "The answer is N\n", so every demonstration ends in a blank line:
    # that is what makes "\n\n" the stop string. The rstrip keeps this true for answers
    # without the trailing newline (hub rows).
    return f"{gsm8k_prompt(row)}{row['answer'].rstrip(chr(10))}\n\n"


# ---------------------------------------------------------------------------------------------
# TriviaQA / NQ rows: {"question", "answer": [aliases...]} (demonstrations: "answer": str)


def qa_gold(row: Row) -> list[str]:
    """All gold aliases; a string answer is a single alias."""
    answer = row.get("answer")
    aliases = [answer] if isinstance(answer, str) else list(answer or [])
    aliases = [a for a in aliases if isinstance(a, str) and a.strip()]
    if not aliases:
        raise TaskError("missing gold answer")
    return aliases


def qa_prompt(row: Row) -> str:
    return f"Question:{row['question']}\nAnswer:"


def qa_demo(row: Row) -> str:
    return f"{qa_prompt(row)}{qa_gold(row)[0]}\n"


# ---------------------------------------------------------------------------------------------
# Translation rows: {"source": sentence, "target": reference translation}


def translation_gold(row: Row) -> list[str]:
    """The reference translation, as a one-element list (the source must be there too)."""
    for key, what in (("source", "source sentence"), ("target", "reference translation")):
        if not isinstance(row.get(key), str) or not row[key].strip():
            raise TaskError(f"missing {what} ({key!r})")
    return [row["target"]]


def translation_source(row: Row) -> str:
    return row["source"]


def translation_header(src: str, tgt: str) -> str:
    return f"Translate the following sentences from {language_name(src)} to {language_name(tgt)}.\n"


def translation_prompt(row: Row, src: str, tgt: str) -> str:
    return f"{language_name(src)}: {row['source']}\n{language_name(tgt)}:"


def translation_demo(row: Row, src: str, tgt: str) -> str:
    return f"{translation_prompt(row, src, tgt)} {translation_gold(row)[0]}\n"
