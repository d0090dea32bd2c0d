"""The evaluation tasks of the DeePEn paper, as data in a registry: the six benchmarks of its Table 1 and the
translation directions of its LLM + specialist experiment (LLaMA2-13B with the translator NLLB-600M).

A `Task` says where a task's rows live (the authors' split files under the data dir, or a
Hugging Face Hub fallback), how one row becomes prompt text, how many demonstrations precede
it, how long to generate, where to stop, and which metric of `deepen.scores` grades it.
`build_prompts` turns a split into prompt rows with this schema (one dict per question; the
same columns `write_prompts` stores in Parquet):

    id              str        stable, e.g. "mmlu/anatomy/00012", "gsm8k/00042", "piqa/dev/00123"
    task            str        registry name: mmlu, arc_c, piqa, gsm8k, triviaqa, nq, flores_en_de, ...
    prompt          str        exact text given to the model (no BOS: the tokenizer adds it)
    answers         list[str]  gold: [letter] for multiple choice, [number] for GSM8K, aliases for QA
    choices         list[str]  option labels for multiple choice (["A","B","C","D"]), [] otherwise
    max_new_tokens  int        1 for multiple choice, 512 GSM8K, 10 TriviaQA/NQ
    stop            list[str]  stop strings ("\\n", or "\\n\\n" for GSM8K)
    source          str|null   what an encoder-decoder member's encoder reads (translation: the source
                               sentence); null = the prompt
    source_lang     str|null   translation: ISO 639-1 code of the source language ("en")
    target_lang     str|null   translation: ISO 639-1 code of the target language ("de")

Prompt templates are those of the authors' release (OrangeInSouth/DeePEn, `confs/*`), as
summarised in docs/method.md §5: prompt = instruction header + demonstrations + question.

Splits. "test" is the paper's test set. "dev" is what the paper tunes on:
  mmlu      MMLU/val-jsonl (the authors' MMLU script reads val-jsonl in dev mode);
  arc_c     ARC-Challenge/train.jsonl (the authors' dev_file_path);
  piqa      no held-out split is available: the authors' dev file (train_our_sample2000_seed43)
            is not in the snapshot, so dev is a seeded sample of 300 rows of the *test* file
            (random.Random(43), see `Task.dev_sample`). Tuning on it leaks into the test score;
  gsm8k     GSM/data/train_sample300_seed42.cleand.jsonl (from GSM8K train);
  triviaqa  TriviaQA/wikipedia-dev-1900.jsonl, which is the first 1,900 rows of the test
            file (the authors' choice, kept as is; it overlaps the test set);
  nq        the authors' 1,600-question sample of NQ train.
"demos" holds the few-shot demonstrations (MMLU: the 5 dev rows of the same subject).

Translation (flores_en_de, flores_de_en, flores_en_ro, flores_ro_en): FLORES-200 sentence pairs, BLEU
(sacreBLEU corpus BLEU; see `deepen.scores`). Local files, one JSON object per line with the
source and the reference translation, ``{"source": "...", "target": "..."}``, under
``<data dir>/FLORES/<src>-<tgt>/``: ``devtest.jsonl`` (test: FLORES devtest, 1,012 pairs),
``dev.jsonl`` (dev, for DeePEn-Adapt weights) and ``demos.jsonl`` (its first 5 pairs are the
demonstrations; keep them out of dev.jsonl). Without local files, ``hub=True`` reads FLORES+
(openlanguagedata/flores_plus, a gated dataset: accept its terms and log in once): test =
devtest, demos = dev[:5], dev = dev[5:], one config per language (eng_Latn, deu_Latn,
ron_Latn) joined by sentence id. The prompt for decoder-only members is 5-shot,
"Translate the following sentences from English to German.\\nEnglish: {source}\\nGerman:"
after demonstrations "English: {source}\\nGerman: {target}\\n", stopping at a newline; an
encoder-decoder member reads the source sentence alone (``source``).

Row ids number rows by their 0-based position in their source file (per subject for MMLU);
ids of non-test splits carry the split ("gsm8k/dev/00042"). MMLU rows come in one fixed
"stratified" order: row i of a subject with n rows sorts at (i + 1/2) / n, ties by subject, so
every prefix (``limit``) is a proportionally stratified sample across the 57 subjects and
``offset``/``limit`` shards always partition the same sequence.
"""

from __future__ import annotations

import json
import os
import random
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from deepen.errors import DeepenError
from deepen.languages import flores_code, language_name
from deepen.scores import last_number

__all__ = [
    "TaskError",
    "TaskDataNotFoundError",
    "Task",
    "TASKS",
    "SPLITS",
    "PROMPT_SCHEMA",
    "get_task",
    "default_data_dir",
    "load_rows",
    "build_prompts",
    "check_local",
    "mc_options",
    "mc_gold",
    "prompts_table",
    "write_prompts",
    "read_prompts",
    "translation_task",
    "flores_from_hub",
    "OPTIONAL_COLUMNS",
]

Row = dict[str, Any]
SPLITS = ("test", "dev", "demos")


class TaskError(DeepenError, ValueError):
    """An unknown task or split, or unusable task data (the message names file and line)."""


class TaskDataNotFoundError(DeepenError, FileNotFoundError):
    """A task's data files are not where the data dir says (the message names the path)."""


@dataclass(frozen=True)
class Task:
    """One evaluation task: its data, prompt format, decoding budget and metric.

    Paths are relative to the data dir; a directory path (``grouped=True``) holds one JSONL
    file per subject, and demonstrations then come from the same-named file of ``demos_path``.
    ``hub_*`` describe the fallback through the Hugging Face Hub: ``hub_splits`` maps our split
    names to `datasets` split specs and ``hub_row`` maps one hub record to our row dict. The
    hub copies are the public benchmarks, not the authors' subsets or demonstrations, so hub
    numbers are not comparable to the paper's. Parallel corpora stored one config per language
    (FLORES+) set ``hub_configs``: the split is loaded from each and ``hub_row`` receives the
    list of aligned records.
    """

    name: str
    test_path: str
    dev_path: str
    demos_path: str | None
    template: Callable[[Row], str]  # the question part of the prompt
    demo_template: Callable[[Row], str] | None  # one demonstration, answer included
    gold: Callable[[Row], list[str]]  # raises ValueError when the row has no usable gold
    n_shot: int
    max_new_tokens: int
    stop: tuple[str, ...]
    metric: str  # "choice" | "gsm8k" | "em" | "bleu", see deepen.scores
    header: str = ""  # instruction before the demonstrations
    grouped: bool = False  # one file per subject (MMLU)
    dev_sample: int | None = None  # dev = this many rows sampled from dev_path (local files only)
    dev_seed: int = 0
    hub_id: str | None = None
    hub_config: str | None = None
    hub_revision: str | None = None
    hub_splits: tuple[tuple[str, str], ...] = ()
    hub_row: Callable[[Row], Row] | None = None
    hub_configs: tuple[str, ...] = ()  # parallel data: one config per language; hub_row gets one record of each
    source: Callable[[Row], str] | None = None  # what an encoder-decoder member's encoder reads (None: the prompt)
    source_lang: str | None = None  # translation: ISO 639-1 codes of the language pair
    target_lang: str | None = None

    def path(self, split: str) -> str:
        """The data-dir-relative path of ``split`` ("test", "dev" or "demos")."""
        if split not in SPLITS:
            raise TaskError(f"unknown split {split!r}; known splits: {', '.join(SPLITS)}")
        path = {"test": self.test_path, "dev": self.dev_path, "demos": self.demos_path}[split]
        if path is None:
            raise TaskError(f"task {self.name!r} has no {split} split (it is {self.n_shot}-shot)")
        return path

    @property
    def multiple_choice(self) -> bool:
        return self.metric == "choice"


# ---------------------------------------------------------------------------------------------
# Multiple choice rows: {"question", "A", "B", ..., "answer"}

_OPTION_KEY = re.compile(r"[A-Z]|\d+")


def _option_keys(row: Row) -> list[str]:
    keys = [k for k in row if _OPTION_KEY.fullmatch(k)]
    return sorted(keys, key=lambda k: (len(k), k))  # "A" < "B", "2" < "10"


def mc_options(row: Row) -> list[tuple[str, str]]:
    """The (label, text) options of a multiple-choice row, in label order.

    Option keys are single capital letters or numbers. Options with empty text are dropped
    (ARC-C 3-option questions come with an empty "D"), unless all are empty: the authors'
    ARC-C files lost the option texts of the 22 test (23 train) questions that AI2 labels
    1-4, and those are kept, rendered as the authors' prompt rendered them ("A. \\nB. \\n...").
    """
    options = [(k, "" if row[k] is None else str(row[k])) for k in _option_keys(row)]
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
    labels = _option_keys(row)
    if answer not in labels and answer.isdigit() and 1 <= int(answer) <= len(labels):
        answer = labels[int(answer) - 1]
    if answer not in [label for label, _ in mc_options(row)]:
        raise TaskError(f"gold answer {answer!r} is not an option of this row (options {labels})")
    return [answer]


def _mc_labels(row: Row) -> list[str]:
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
# Hub records -> our rows. Pure functions of one record, documented with the hub's columns.


def mmlu_from_hub(record: Row) -> Row:
    """cais/mmlu: {question, subject, choices: [4 str], answer: int 0-3}."""
    row = {"question": record["question"], "subject": record["subject"]}
    row.update(zip("ABCD", record["choices"]))
    row["answer"] = "ABCD"[int(record["answer"])]
    return row


def arc_from_hub(record: Row) -> Row:
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


def piqa_from_hub(record: Row) -> Row:
    """ybisk/piqa (parquet branch): {goal, sol1, sol2, label: 0/1}."""
    return {"question": record["goal"], "A": record["sol1"], "B": record["sol2"], "answer": "AB"[int(record["label"])]}


_GSM8K_CALCULATOR = re.compile(r"<<[^>]*>>")
_GSM8K_FINAL = re.compile(r"\n?####\s*(.+?)\s*$")


def gsm8k_from_hub(record: Row) -> Row:
    """openai/gsm8k main: {question, answer: "<steps with <<calc>> notes>\\n#### N"}.

    Rewritten the way the authors' cleaned files read: calculator notes removed and the
    final "#### N" turned into "The answer is N".
    """
    answer = _GSM8K_CALCULATOR.sub("", record["answer"])
    answer = _GSM8K_FINAL.sub(lambda m: f"\nThe answer is {m.group(1)}", answer)
    return {"question": record["question"], "answer": answer}


def triviaqa_from_hub(record: Row) -> Row:
    """mandarjoshi/trivia_qa rc.nocontext: {question, answer: {value, aliases, ...}}."""
    aliases = [record["answer"]["value"], *record["answer"]["aliases"]]
    return {"question": record["question"], "answer": list(dict.fromkeys(aliases))}


def nq_from_hub(record: Row) -> Row:
    """google-research-datasets/nq_open: {question, answer: [str]}."""
    return {"question": record["question"], "answer": list(record["answer"])}


def flores_from_hub(records: Sequence[Row]) -> Row:
    """openlanguagedata/flores_plus, one record per language config (source first, then target):
    {id, iso_639_3, iso_15924, glottocode, text, url, domain, topic, ...}. The two must be the
    same sentence (same id). facebook/flores' parquet configs, which call the text "sentence",
    map the same way."""
    source, target = records
    if source["id"] != target["id"]:
        raise TaskError(f"FLORES records are not aligned: source id {source['id']}, target id {target['id']}")
    text = lambda r: r["text"] if "text" in r else r["sentence"]  # noqa: E731
    return {"source": text(source), "target": text(target), "flores_id": source["id"]}


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


def translation_task(src: str, tgt: str) -> Task:
    """FLORES-200 translation from ``src`` to ``tgt`` (ISO 639-1 codes), 5-shot, BLEU (module docstring)."""
    return Task(
        name=f"flores_{src}_{tgt}",
        test_path=f"FLORES/{src}-{tgt}/devtest.jsonl",
        dev_path=f"FLORES/{src}-{tgt}/dev.jsonl",
        demos_path=f"FLORES/{src}-{tgt}/demos.jsonl",
        template=partial(translation_prompt, src=src, tgt=tgt),
        demo_template=partial(translation_demo, src=src, tgt=tgt),
        gold=translation_gold,
        n_shot=5,
        max_new_tokens=256,
        stop=("\n",),
        metric="bleu",
        header=translation_header(src, tgt),
        hub_id="openlanguagedata/flores_plus",
        hub_splits=(("test", "devtest"), ("dev", "dev[5:]"), ("demos", "dev[:5]")),
        hub_row=flores_from_hub,
        hub_configs=(flores_code(src), flores_code(tgt)),
        source=translation_source,
        source_lang=src,
        target_lang=tgt,
    )


# ---------------------------------------------------------------------------------------------
# Registry

_MC_STOP = ("\n",)
_NQ_TRAIN = "NaturalQuestions/dev/v1.0-simplified_simplified-nq-train.simpled"  # the authors' NQ-train samples

TASKS: dict[str, Task] = {
    task.name: task
    for task in [
        Task(
            name="mmlu",
            test_path="MMLU/test-jsonl",
            dev_path="MMLU/val-jsonl",
            demos_path="MMLU/dev-jsonl",
            template=mmlu_prompt,
            demo_template=mmlu_demo,
            gold=mc_gold,
            n_shot=5,
            max_new_tokens=1,
            stop=_MC_STOP,
            metric="choice",
            grouped=True,
            hub_id="cais/mmlu",
            hub_config="all",
            hub_splits=(("test", "test"), ("dev", "validation"), ("demos", "dev")),
            hub_row=mmlu_from_hub,
        ),
        Task(
            name="arc_c",
            test_path="ARC-Challenge/test.jsonl",
            dev_path="ARC-Challenge/train.jsonl",
            demos_path=None,
            template=arc_prompt,
            demo_template=None,
            gold=mc_gold,
            n_shot=0,
            max_new_tokens=1,
            stop=_MC_STOP,
            metric="choice",
            hub_id="allenai/ai2_arc",
            hub_config="ARC-Challenge",
            hub_splits=(("test", "test"), ("dev", "train")),
            hub_row=arc_from_hub,
        ),
        Task(
            name="piqa",
            test_path="PIQA/physicaliqa-train-dev/dev_our.jsonl",
            dev_path="PIQA/physicaliqa-train-dev/dev_our.jsonl",
            demos_path=None,
            template=piqa_prompt,
            demo_template=None,
            gold=mc_gold,
            n_shot=0,
            max_new_tokens=1,
            stop=_MC_STOP,
            metric="choice",
            dev_sample=300,
            dev_seed=43,
            # The default revision of ybisk/piqa is a loading script, which datasets>=4 refuses;
            # the Hub's auto-converted parquet branch has the same data (config "default").
            hub_id="ybisk/piqa",
            hub_config="default",
            hub_revision="refs/convert/parquet",
            hub_splits=(("test", "validation"), ("dev", "train[:300]")),
            hub_row=piqa_from_hub,
        ),
        Task(
            name="gsm8k",
            test_path="GSM/data/test.cleand.jsonl",
            dev_path="GSM/data/train_sample300_seed42.cleand.jsonl",
            demos_path="GSM/data/demon_4.jsonl",
            template=gsm8k_prompt,
            demo_template=gsm8k_demo,
            gold=gsm8k_gold,
            n_shot=4,
            max_new_tokens=512,
            stop=("\n\n",),
            metric="gsm8k",
            hub_id="openai/gsm8k",
            hub_config="main",
            hub_splits=(("test", "test"), ("dev", "train[:300]"), ("demos", "train[-4:]")),
            hub_row=gsm8k_from_hub,
        ),
        Task(
            name="triviaqa",
            test_path="TriviaQA/wikipedia-test-6000.jsonl",
            dev_path="TriviaQA/wikipedia-dev-1900.jsonl",
            demos_path="TriviaQA/wikipedia-demon-all_sample5_seed42.jsonl",
            template=qa_prompt,
            demo_template=qa_demo,
            gold=qa_gold,
            n_shot=5,
            max_new_tokens=10,
            stop=("\n",),
            metric="em",
            header="Answer this questions:\n",
            hub_id="mandarjoshi/trivia_qa",
            hub_config="rc.nocontext",
            hub_splits=(("test", "validation"), ("dev", "train[:1900]"), ("demos", "train[-5:]")),
            hub_row=triviaqa_from_hub,
        ),
        Task(
            name="nq",
            test_path="NaturalQuestions/test/natural-questions.jsonl",
            dev_path=f"{_NQ_TRAIN}_dev_100000_sample1600_seed42.jsonl",
            demos_path=f"{_NQ_TRAIN}_few_shot_doman_6926_sample5_seed43.jsonl",
            template=qa_prompt,
            demo_template=qa_demo,
            gold=qa_gold,
            n_shot=5,
            max_new_tokens=10,
            stop=("\n",),
            metric="em",
            header="Answer this questions:\n",
            hub_id="google-research-datasets/nq_open",
            hub_config="nq_open",
            hub_splits=(("test", "validation"), ("dev", "train[:1600]"), ("demos", "train[-5:]")),
            hub_row=nq_from_hub,
        ),
        # The LLM + specialist experiment: En<->De and En<->Ro.
        translation_task("en", "de"),
        translation_task("de", "en"),
        translation_task("en", "ro"),
        translation_task("ro", "en"),
    ]
}


def get_task(name: str | Task) -> Task:
    """The registered task called ``name`` (a `Task` is returned as is)."""
    if isinstance(name, Task):
        return name
    try:
        return TASKS[name]
    except KeyError:
        raise TaskError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None


def default_data_dir() -> Path:
    """$DEEPEN_DATA_DIR, else the authors' files shipped with this repository (``data/deepen_splits``)."""
    env = os.environ.get("DEEPEN_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / "data" / "deepen_splits"


# ---------------------------------------------------------------------------------------------
# Loading


def _check_jsonl(path: Path, gold: Callable[[Row], list[str]]) -> int:
    """Validate a JSONL file line by line; returns its number of rows.

    `datasets` reports malformed JSON without the line, so every line is parsed here first
    (cheap next to the load) to name ``file:line`` in errors.
    """
    count = 0
    with path.open("rb") as lines:
        for lineno, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue  # datasets' JSON reader skips blank lines too
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as err:
                raise TaskError(f"{path}:{lineno}: not UTF-8 ({err.reason})") from None
            except json.JSONDecodeError as err:
                raise TaskError(f"{path}:{lineno}: malformed JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise TaskError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            try:
                gold(row)
            except (ValueError, KeyError, TypeError) as err:
                raise TaskError(f"{path}:{lineno}: {err}") from None
            count += 1
    if count == 0:
        raise TaskError(f"{path}: empty split (no rows)")
    return count


def check_local(task: str | Task, split: str, data_dir: str | Path | None = None, hub: bool = False) -> int:
    """Check that ``split`` of ``task`` can be read from ``data_dir`` before any job starts; returns its rows (0 when
    the files are missing and ``hub`` will load the public benchmark instead).

    Raises `TaskDataNotFoundError` naming the path when the files are missing (and ``hub`` is off), and `TaskError`
    naming file and line for a malformed row, a row without a gold answer, or an empty split.
    """
    task = get_task(task)
    root = Path(data_dir if data_dir is not None else default_data_dir())
    path = root / task.path(split)
    if not path.exists():
        if hub:
            return 0
        if not root.is_dir():
            raise TaskDataNotFoundError(f"data directory not found: {root} (set data_dir in the config, or hub: true)")
        raise TaskDataNotFoundError(f"{task.name} {split} data not found: {path} (set data_dir, or hub: true)")
    files = _split_files(task, split, path)
    try:
        return sum(_check_jsonl(f, task.gold) for f in files)
    except PermissionError as err:
        raise TaskError(f"{err.filename}: not readable ({err.strerror})") from None
    except IsADirectoryError as err:
        raise TaskError(f"{err.filename}: is a directory, expected a JSONL file") from None


def _split_files(task: Task, split: str, path: Path) -> list[Path]:
    """The JSONL files of one split: the file itself, or a grouped task's per-subject files."""
    if not task.grouped:
        return [path]
    if not path.is_dir():
        raise TaskDataNotFoundError(f"{task.name} {split}: expected a directory of per-subject JSONL files: {path}")
    files = sorted(path.glob("*.jsonl"))
    if not files:
        raise TaskError(f"{path}: empty split (no *.jsonl files)")
    return files


def _load_local(task: Task, split: str, path: Path) -> list[Row]:
    import datasets  # imported here: importing it takes about a second and only loading needs it

    files = _split_files(task, split, path)
    counts = [_check_jsonl(f, task.gold) for f in files]
    # Split names must be identifiers; subject file names need not be, hence s0, s1, ...
    loaded = datasets.load_dataset("json", data_files={f"s{i}": str(f) for i, f in enumerate(files)})
    rows: list[Row] = []
    for i, (file, count) in enumerate(zip(files, counts)):
        part = loaded[f"s{i}"].to_list()
        if len(part) != count:
            raise RuntimeError(f"{file}: datasets read {len(part)} rows, the file has {count}")
        for index, row in enumerate(part):
            row["index"] = index
            if task.grouped:
                row["subject"] = file.stem
        rows.extend(part)
    if split == "dev" and task.dev_sample is not None:
        keep = sorted(random.Random(task.dev_seed).sample(range(len(rows)), min(task.dev_sample, len(rows))))
        rows = [rows[i] for i in keep]
    return rows


def _load_hub(task: Task, split: str) -> list[Row]:
    import datasets

    spec = dict(task.hub_splits).get(split)
    if task.hub_id is None or task.hub_row is None or spec is None:
        raise TaskError(f"task {task.name!r} has no Hub source for its {split} split")
    if task.hub_configs:  # parallel data stored one config per language: records aligned by position
        parts = [datasets.load_dataset(task.hub_id, config, split=spec, revision=task.hub_revision)
                 for config in task.hub_configs]
        if len({len(p) for p in parts}) != 1:
            raise TaskError(f"{task.hub_id} {spec}: configs {task.hub_configs} differ in length")
        records = [list(aligned) for aligned in zip(*parts)]
    else:
        records = datasets.load_dataset(task.hub_id, task.hub_config, split=spec, revision=task.hub_revision)
    rows = [task.hub_row(record) for record in records]
    where = f"{task.hub_id} ({'+'.join(task.hub_configs) or task.hub_config}) {spec}"
    if not rows:
        raise TaskError(f"{where}: empty split (no rows)")
    for i, row in enumerate(rows):
        try:
            task.gold(row)
        except (ValueError, KeyError, TypeError) as err:
            raise TaskError(f"{where} row {i}: {err}") from None
    if task.grouped:
        rows.sort(key=lambda row: row["subject"])  # stable: hub order within a subject
        seen: Counter[str] = Counter()
        for row in rows:
            row["index"] = seen[row["subject"]]
            seen[row["subject"]] += 1
    else:
        for i, row in enumerate(rows):
            row["index"] = i
    return rows


def load_rows(
    task: str | Task, split: str = "test", data_dir: str | Path | None = None, hub: bool = False
) -> list[Row]:
    """The rows of one split as dicts, in file order (MMLU: subjects sorted, then file order).

    Each row is the JSON object of its line plus ``index`` (0-based position in its source
    file) and, for grouped tasks, ``subject`` (the file name stem). Local files under
    ``data_dir`` (default `default_data_dir`) are used when present; when they are missing this
    raises `TaskDataNotFoundError` (a FileNotFoundError) naming the path, unless ``hub=True``,
    which loads the Hub copy. Malformed JSON, a row without a gold answer, or an empty split
    raise `TaskError` (a ValueError) naming the file and line.
    """
    task = get_task(task)
    path = Path(data_dir if data_dir is not None else default_data_dir()) / task.path(split)
    if path.exists():
        return _load_local(task, split, path)
    if hub:
        return _load_hub(task, split)
    raise TaskDataNotFoundError(
        f"{task.name} {split} data not found: {path} (set DEEPEN_DATA_DIR, pass data_dir, or use hub=True)"
    )


def _demo_prefixes(task: Task, data_dir: str | Path | None, hub: bool) -> dict[str | None, str]:
    """The concatenated demonstrations, per subject for grouped tasks (key None otherwise)."""
    if task.n_shot == 0:
        return {}
    assert task.demo_template is not None
    groups: dict[str | None, list[Row]] = {}
    for row in load_rows(task, "demos", data_dir, hub):
        groups.setdefault(row.get("subject") if task.grouped else None, []).append(row)
    prefixes = {}
    for key, rows in groups.items():
        if len(rows) < task.n_shot:
            where = f"subject {key!r}" if key is not None else task.path("demos")
            raise TaskError(
                f"{task.name}: {task.n_shot}-shot needs {task.n_shot} demonstrations, {where} has {len(rows)}"
            )
        prefixes[key] = "".join(task.demo_template(row) for row in rows[: task.n_shot])
    return prefixes


def _stratified_order(rows: list[Row]) -> list[Row]:
    # Row i of n in its subject sorts at (i + 1/2) / n: any prefix then holds each subject in
    # proportion to its size, like a proportionally stratified sample. Fractions keep ties exact.
    sizes = Counter(row["subject"] for row in rows)
    return sorted(rows, key=lambda row: (Fraction(2 * row["index"] + 1, 2 * sizes[row["subject"]]), row["subject"]))


def _row_id(task: Task, split: str, row: Row) -> str:
    parts = [task.name]
    if split != "test":
        parts.append(split)
    if task.grouped:
        parts.append(row["subject"])
    parts.append(f"{row['index']:05d}")
    return "/".join(parts)


def build_prompts(
    task: str | Task,
    split: str = "test",
    data_dir: str | Path | None = None,
    limit: int | None = None,
    offset: int = 0,
    hub: bool = False,
) -> list[Row]:
    """Prompt rows (schema in the module docstring) for ``split`` of ``task``.

    Rows come in file order (MMLU: the stratified order of the module docstring); ``offset``
    and ``limit`` then take ``rows[offset : offset + limit]``.
    """
    task = get_task(task)
    if offset < 0 or (limit is not None and limit < 0):
        raise TaskError(f"offset and limit must be >= 0, got offset={offset}, limit={limit}")
    rows = load_rows(task, split, data_dir, hub)
    if task.grouped:
        rows = _stratified_order(rows)
    rows = rows[offset : None if limit is None else offset + limit]
    demos = _demo_prefixes(task, data_dir, hub)
    prompts = []
    for row in rows:
        key = row["subject"] if task.grouped else None
        if task.n_shot and key not in demos:
            raise TaskError(f"{task.name}: no demonstrations for subject {key!r}")
        prompts.append(
            {
                "id": _row_id(task, split, row),
                "task": task.name,
                "prompt": task.header + demos.get(key, "") + task.template(row),
                "answers": task.gold(row),
                "choices": _mc_labels(row) if task.multiple_choice else [],
                "max_new_tokens": task.max_new_tokens,
                "stop": list(task.stop),
                "source": task.source(row) if task.source else None,
                "source_lang": task.source_lang,
                "target_lang": task.target_lang,
            }
        )
    return prompts


# ---------------------------------------------------------------------------------------------
# Parquet

PROMPT_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("task", pa.string()),
        ("prompt", pa.string()),
        ("answers", pa.list_(pa.string())),
        ("choices", pa.list_(pa.string())),
        ("max_new_tokens", pa.int32()),
        ("stop", pa.list_(pa.string())),
        ("source", pa.string()),
        ("source_lang", pa.string()),
        ("target_lang", pa.string()),
    ]
)
#: Columns a prompt row may leave out (null): only translation rows fill them.
OPTIONAL_COLUMNS = ("source", "source_lang", "target_lang")


def prompts_table(rows: Sequence[Row]) -> pa.Table:
    """Prompt rows as a table with `PROMPT_SCHEMA` (extra keys are dropped, optional ones default to null)."""
    columns = [{name: row[name] if name not in OPTIONAL_COLUMNS else row.get(name) for name in PROMPT_SCHEMA.names}
               for row in rows]
    return pa.Table.from_pylist(columns, schema=PROMPT_SCHEMA)


def write_prompts(rows: Sequence[Row], path: str | Path) -> None:
    """Write prompt rows to a Parquet file (parent directories are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(prompts_table(rows), path)


def read_prompts(path: str | Path) -> list[Row]:
    """Read prompt rows written by `write_prompts`."""
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise TaskError(f"{path} is not a readable Parquet file ({str(err).splitlines()[0]}): delete it and rerun "
                        "the pipeline, which rebuilds it") from err
    for name in OPTIONAL_COLUMNS:  # prompts files written before translation tasks existed
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, pa.string()))
    missing = [name for name in PROMPT_SCHEMA.names if name not in table.column_names]
    if missing:
        raise TaskError(f"{path}: not a prompts file, missing columns {missing}")
    return table.select(PROMPT_SCHEMA.names).cast(PROMPT_SCHEMA).to_pylist()
