"""The evaluation tasks of the DeePEn paper, as data in a registry: the six benchmarks of its Table 1 and the
translation directions of its LLM + specialist experiment (LLaMA2-13B with the translator NLLB-600M).

A `Task` says where a task's rows live (the authors' split files under the data dir, or a
Hugging Face Hub fallback), how one row becomes prompt text, how many demonstrations precede
it, how long to generate, where to stop, and which metric (`deepen.eval.metrics`) grades it.
`deepen.eval.task_data` reads the files and turns a split into prompt rows.

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
(sacreBLEU corpus BLEU; see `deepen.eval.metrics`). Local files, one JSON object per line with the
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

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from deepen.errors import TaskError
from deepen.eval import hub_records as hub
from deepen.eval.metrics import BLEU, CHOICE, EXACT_MATCH, GSM8K, Metric
from deepen.eval.templates import (Row, arc_prompt, gsm8k_demo, gsm8k_gold, gsm8k_prompt, mc_gold, mc_options,
                                   mmlu_demo, mmlu_prompt, option_keys, piqa_prompt, qa_demo, qa_gold, qa_prompt,
                                   translation_demo, translation_gold, translation_header, translation_prompt,
                                   translation_source)
from deepen.languages import flores_code

SPLITS = ("test", "dev", "demos")


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
    title: str  # how tables and plots name it ("ARC-C")
    test_path: str
    dev_path: str
    demos_path: str | None
    template: Callable[[Row], str]  # the question part of the prompt
    demo_template: Callable[[Row], str] | None  # one demonstration, answer included
    gold: Callable[[Row], list[str]]  # raises ValueError when the row has no usable gold
    fields: tuple[str, ...]  # text fields every row must have (non-empty strings): what the prompt reads
    n_shot: int
    max_new_tokens: int
    stop: tuple[str, ...]
    metric: Metric  # deepen.eval.metrics: how rows are scored and aggregated
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
        return self.metric.multiple_choice

    def check_row(self, row: Row, demo: bool = False) -> None:
        """Raise TaskError naming what is wrong with a row: a missing or empty field its prompt reads, no usable
        gold answer, or a prompt that cannot be built (``demo``: as a demonstration)."""
        self.gold(row)
        for name in self.fields:
            value = row.get(name)
            if value is not None and not isinstance(value, str):
                raise TaskError(f"field {name!r} must be text, got {type(value).__name__}")
            if value is None or not value.strip():
                raise TaskError(f"field {name!r} is missing or empty")
        if self.multiple_choice and len(mc_options(row)) < 2:
            raise TaskError(f"a multiple-choice row needs at least two options (keys A, B, ...), got {option_keys(row)}")
        try:
            (self.demo_template if demo and self.demo_template else self.template)(row)
        except (KeyError, TypeError, AttributeError) as err:
            raise TaskError(f"cannot build the prompt: {type(err).__name__}: {err}") from None


def translation_task(src: str, tgt: str) -> Task:
    """FLORES-200 translation from ``src`` to ``tgt`` (ISO 639-1 codes), 5-shot, BLEU (module docstring)."""
    return Task(
        name=f"flores_{src}_{tgt}",
        title=f"{src.capitalize()}→{tgt.capitalize()}",
        test_path=f"FLORES/{src}-{tgt}/devtest.jsonl",
        dev_path=f"FLORES/{src}-{tgt}/dev.jsonl",
        demos_path=f"FLORES/{src}-{tgt}/demos.jsonl",
        template=partial(translation_prompt, src=src, tgt=tgt),
        demo_template=partial(translation_demo, src=src, tgt=tgt),
        gold=translation_gold,
        fields=("source", "target"),
        n_shot=5,
        max_new_tokens=256,
        stop=("\n",),
        metric=BLEU,
        header=translation_header(src, tgt),
        hub_id="openlanguagedata/flores_plus",
        hub_splits=(("test", "devtest"), ("dev", "dev[5:]"), ("demos", "dev[:5]")),
        hub_row=hub.flores,
        hub_configs=(flores_code(src), flores_code(tgt)),
        source=translation_source,
        source_lang=src,
        target_lang=tgt,
    )


# ---------------------------------------------------------------------------------------------
# Registry (in the order of the paper's Table 1)

_MC_STOP = ("\n",)
_NQ_TRAIN = "NaturalQuestions/dev/v1.0-simplified_simplified-nq-train.simpled"  # the authors' NQ-train samples

TASKS: dict[str, Task] = {
    task.name: task
    for task in [
        Task(
            name="mmlu",
            title="MMLU",
            test_path="MMLU/test-jsonl",
            dev_path="MMLU/val-jsonl",
            demos_path="MMLU/dev-jsonl",
            template=mmlu_prompt,
            demo_template=mmlu_demo,
            gold=mc_gold,
            fields=("question",),
            n_shot=5,
            max_new_tokens=1,
            stop=_MC_STOP,
            metric=CHOICE,
            grouped=True,
            hub_id="cais/mmlu",
            hub_config="all",
            hub_splits=(("test", "test"), ("dev", "validation"), ("demos", "dev")),
            hub_row=hub.mmlu,
        ),
        Task(
            name="arc_c",
            title="ARC-C",
            test_path="ARC-Challenge/test.jsonl",
            dev_path="ARC-Challenge/train.jsonl",
            demos_path=None,
            template=arc_prompt,
            demo_template=None,
            gold=mc_gold,
            fields=("question",),
            n_shot=0,
            max_new_tokens=1,
            stop=_MC_STOP,
            metric=CHOICE,
            hub_id="allenai/ai2_arc",
            hub_config="ARC-Challenge",
            hub_splits=(("test", "test"), ("dev", "train")),
            hub_row=hub.arc,
        ),
        Task(
            name="gsm8k",
            title="GSM8K",
            test_path="GSM/data/test.cleand.jsonl",
            dev_path="GSM/data/train_sample300_seed42.cleand.jsonl",
            demos_path="GSM/data/demon_4.jsonl",
            template=gsm8k_prompt,
            demo_template=gsm8k_demo,
            gold=gsm8k_gold,
            fields=("question", "answer"),
            n_shot=4,
            max_new_tokens=512,
            stop=("\n\n",),
            metric=GSM8K,
            hub_id="openai/gsm8k",
            hub_config="main",
            hub_splits=(("test", "test"), ("dev", "train[:300]"), ("demos", "train[-4:]")),
            hub_row=hub.gsm8k,
        ),
        Task(
            name="piqa",
            title="PIQA",
            test_path="PIQA/physicaliqa-train-dev/dev_our.jsonl",
            dev_path="PIQA/physicaliqa-train-dev/dev_our.jsonl",
            demos_path=None,
            template=piqa_prompt,
            demo_template=None,
            gold=mc_gold,
            fields=("question",),
            n_shot=0,
            max_new_tokens=1,
            stop=_MC_STOP,
            metric=CHOICE,
            dev_sample=300,
            dev_seed=43,
            # The default revision of ybisk/piqa is a loading script, which datasets>=4 refuses;
            # the Hub's auto-converted parquet branch has the same data (config "default").
            hub_id="ybisk/piqa",
            hub_config="default",
            hub_revision="refs/convert/parquet",
            hub_splits=(("test", "validation"), ("dev", "train[:300]")),
            hub_row=hub.piqa,
        ),
        Task(
            name="triviaqa",
            title="TriviaQA",
            test_path="TriviaQA/wikipedia-test-6000.jsonl",
            dev_path="TriviaQA/wikipedia-dev-1900.jsonl",
            demos_path="TriviaQA/wikipedia-demon-all_sample5_seed42.jsonl",
            template=qa_prompt,
            demo_template=qa_demo,
            gold=qa_gold,
            fields=("question",),
            n_shot=5,
            max_new_tokens=10,
            stop=("\n",),
            metric=EXACT_MATCH,
            header="Answer this questions:\n",
            hub_id="mandarjoshi/trivia_qa",
            hub_config="rc.nocontext",
            hub_splits=(("test", "validation"), ("dev", "train[:1900]"), ("demos", "train[-5:]")),
            hub_row=hub.triviaqa,
        ),
        Task(
            name="nq",
            title="NQ",
            test_path="NaturalQuestions/test/natural-questions.jsonl",
            dev_path=f"{_NQ_TRAIN}_dev_100000_sample1600_seed42.jsonl",
            demos_path=f"{_NQ_TRAIN}_few_shot_doman_6926_sample5_seed43.jsonl",
            template=qa_prompt,
            demo_template=qa_demo,
            gold=qa_gold,
            fields=("question",),
            n_shot=5,
            max_new_tokens=10,
            stop=("\n",),
            metric=EXACT_MATCH,
            header="Answer this questions:\n",
            hub_id="google-research-datasets/nq_open",
            hub_config="nq_open",
            hub_splits=(("test", "validation"), ("dev", "train[:1600]"), ("demos", "train[-5:]")),
            hub_row=hub.nq,
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
