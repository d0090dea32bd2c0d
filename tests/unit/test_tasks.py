"""Tests of deepen.eval.tasks, deepen.eval.task_data and deepen.eval.hub_records: prompts against hand-written text,
split sizes, data errors, Parquet."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from deepen.errors import DeepenError
from deepen.eval import hub_records
from deepen.eval.metrics import last_number
from deepen.eval.task_data import build_prompts, load_rows, prompts_table, read_prompts, write_prompts
from deepen.eval.tasks import TASKS, get_task
from deepen.eval.templates import mc_gold, mc_options

DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "deepen_splits"  # shipped with the repository

_cache: dict[tuple[str, str], list[dict]] = {}


def prompts(task: str, split: str = "test") -> list[dict]:
    """build_prompts over the real data, built once per (task, split) for the whole module."""
    if (task, split) not in _cache:
        _cache[task, split] = build_prompts(task, split, data_dir=DATA_DIR)
    return _cache[task, split]


def by_id(task: str, row_id: str, split: str = "test") -> dict:
    return next(row for row in prompts(task, split) if row["id"] == row_id)


# ---------------------------------------------------------------------------------------------
# Prompt text, written out by hand from the data files and docs/method.md §5

MMLU_HEADER = "There is a single choice question about anatomy. Answer the question by replying A, B, C or D.\n"

MMLU_ANATOMY_0 = (
    MMLU_HEADER + "Question: What is the embryological origin of the hyoid bone?\n"
    "A. The first pharyngeal arch\n"
    "B. The first and second pharyngeal arches\n"
    "C. The second pharyngeal arch\n"
    "D. The second and third pharyngeal arches\n"
    "Answer: D\n"
    + MMLU_HEADER
    + "Question: Which of these branches of the trigeminal nerve contain somatic motor processes?\n"
    "A. The supraorbital nerve\n"
    "B. The infraorbital nerve\n"
    "C. The mental nerve\n"
    "D. None of the above\n"
    "Answer: D\n"
    + MMLU_HEADER
    + "Question: The pleura\n"
    "A. have no sensory innervation.\n"
    "B. are separated by a 2 mm space.\n"
    "C. extend into the neck.\n"
    "D. are composed of respiratory epithelium.\n"
    "Answer: C\n"
    + MMLU_HEADER
    + "Question: In Angle's Class II Div 2 occlusion there is\n"
    "A. excess overbite of the upper lateral incisors.\n"
    "B. negative overjet of the upper central incisors.\n"
    "C. excess overjet of the upper lateral incisors.\n"
    "D. excess overjet of the upper central incisors.\n"
    "Answer: C\n"
    + MMLU_HEADER
    + "Question: Which of the following is the body cavity that contains the pituitary gland?\n"
    "A. Abdominal\n"
    "B. Cranial\n"
    "C. Pleural\n"
    "D. Spinal\n"
    "Answer: B\n"
    + MMLU_HEADER
    + "Question: A lesion causing compression of the facial nerve at the stylomastoid foramen will cause ipsilateral\n"
    "A. paralysis of the facial muscles.\n"
    "B. paralysis of the facial muscles and loss of taste.\n"
    "C. paralysis of the facial muscles, loss of taste and lacrimation.\n"
    "D. paralysis of the facial muscles, loss of taste, lacrimation and decreased salivation.\n"
    "Answer:"
)


def test_mmlu_first_anatomy_prompt_is_exact():
    row = by_id("mmlu", "mmlu/anatomy/00000")
    assert row["prompt"].startswith(MMLU_HEADER + "Question: What is the embryological origin")
    assert row["prompt"].endswith("decreased salivation.\nAnswer:")
    assert row["prompt"] == MMLU_ANATOMY_0
    assert row["prompt"].count("There is a single choice question") == 6  # 5 demos + the question
    assert row["answers"] == ["A"]
    assert row["choices"] == ["A", "B", "C", "D"]
    assert row["max_new_tokens"] == 1
    assert row["stop"] == ["\n"]
    assert row["task"] == "mmlu"


def test_mmlu_subject_text_has_spaces_and_demos_are_per_subject():
    row = by_id("mmlu", "mmlu/high_school_physics/00000")
    assert row["prompt"].startswith("There is a single choice question about high school physics. ")
    # The question must follow the subject's own demos, not another subject's.
    assert "about anatomy" not in row["prompt"]
    assert row["prompt"].count("about high school physics.") == 6


def test_mmlu_limit_is_stratified_and_shards_partition():
    full = prompts("mmlu")
    head = build_prompts("mmlu", data_dir=DATA_DIR, limit=100)
    assert [r["id"] for r in head] == [r["id"] for r in full[:100]]
    assert len({r["id"].split("/")[1] for r in head}) >= 40  # a small slice covers most subjects
    shards = [build_prompts("mmlu", data_dir=DATA_DIR, offset=o, limit=7000) for o in (0, 7000, 14000)]
    assert [r["id"] for shard in shards for r in shard] == [r["id"] for r in full]
    assert len({r["id"] for r in full}) == len(full)


def test_arc_first_prompt():
    row = by_id("arc_c", "arc_c/00000")
    assert row["prompt"] == (
        "Question: An astronomer observes that a planet rotates faster after a meteorite impact. "
        "Which is the most likely effect of this increase in rotation?\n"
        "A. Planetary density will decrease.\n"
        "B. Planetary years will become longer.\n"
        "C. Planetary days will become shorter.\n"
        "D. Planetary gravity will become stronger.\n"
        "Answer:"
    )
    assert row["answers"] == ["C"] and row["choices"] == ["A", "B", "C", "D"]


def test_arc_three_options_and_numeric_labels_in_authors_file():
    # Line 122: a 3-option question stored with an empty "D": no "D." line, no "D" choice.
    row = by_id("arc_c", "arc_c/00121")
    assert row["prompt"].endswith("\nA. slower\nB. faster\nC. at the same speed\nAnswer:")
    assert row["choices"] == ["A", "B", "C"] and row["answers"] == ["A"]
    # Line 45: AI2 labels this one 1-4; the authors' file kept answer "2" and lost the option
    # texts. The gold maps to the second label; the empty options are rendered as they were.
    row = by_id("arc_c", "arc_c/00044")
    assert row["prompt"].endswith("snow-covered hill?\nA. \nB. \nC. \nD. \nAnswer:")
    assert row["answers"] == ["B"] and row["choices"] == ["A", "B", "C", "D"]
    assert all(r["answers"][0] in r["choices"] for r in prompts("arc_c"))


def test_mc_rows_with_five_options_and_numeric_keys():
    five = {"question": "q", "A": "a", "B": "b", "C": "c", "D": "d", "E": "e", "answer": "E"}
    assert [label for label, _ in mc_options(five)] == ["A", "B", "C", "D", "E"]
    assert mc_gold(five) == ["E"]
    numeric = {"question": "q", "1": "one", "2": "two", "3": "three", "answer": "3"}
    assert mc_options(numeric) == [("1", "one"), ("2", "two"), ("3", "three")]
    assert mc_gold(numeric) == ["3"]
    with pytest.raises(ValueError, match="not an option"):
        mc_gold({"question": "q", "A": "a", "B": "b", "C": "", "answer": "C"})


def test_arc_from_hub_relabels_numeric_and_five_options():
    numeric = {
        "question": "q",
        "choices": {"text": ["w", "x", "y", "z"], "label": ["1", "2", "3", "4"]},
        "answerKey": "3",
    }
    assert hub_records.arc(numeric) == {"question": "q", "A": "w", "B": "x", "C": "y", "D": "z", "answer": "C"}
    five = {"question": "q", "choices": {"text": list("vwxyz"), "label": list("ABCDE")}, "answerKey": "E"}
    row = hub_records.arc(five)
    assert row["E"] == "z" and mc_gold(row) == ["E"]


def test_other_hub_mappers():
    mmlu = hub_records.mmlu({"question": "q", "subject": "anatomy", "choices": ["a", "b", "c", "d"], "answer": 3})
    assert mmlu == {"question": "q", "subject": "anatomy", "A": "a", "B": "b", "C": "c", "D": "d", "answer": "D"}
    assert hub_records.piqa({"goal": "g", "sol1": "s1", "sol2": "s2", "label": 1}) == {
        "question": "g",
        "A": "s1",
        "B": "s2",
        "answer": "B",
    }
    gsm = hub_records.gsm8k({"question": "q", "answer": "He pays 2*3=<<2*3=6>>6 dollars.\n#### 1,006"})
    assert gsm["answer"] == "He pays 2*3=6 dollars.\nThe answer is 1,006"
    assert last_number(gsm["answer"]) == "1006"
    tqa = hub_records.triviaqa({"question": "q", "answer": {"value": "Paris", "aliases": ["Paris", "Paree"]}})
    assert tqa["answer"] == ["Paris", "Paree"]
    assert hub_records.nq({"question": "q", "answer": ["x", "y"]}) == {"question": "q", "answer": ["x", "y"]}


def test_piqa_prompt():
    row = by_id("piqa", "piqa/00000")
    assert row["prompt"] == (
        "How do I ready a guinea pig cage for it's new occupants?\n"
        "A. Provide the guinea pig with a cage full of a few inches of bedding made of ripped paper strips, "
        "you will also need to supply it with a water bottle and a food dish.\n"
        "B. Provide the guinea pig with a cage full of a few inches of bedding made of ripped jeans material, "
        "you will also need to supply it with a water bottle and a food dish.\n"
        "Answer:"
    )
    assert row["answers"] == ["A"] and row["choices"] == ["A", "B"]


def test_gsm8k_prompt_structure_and_gold():
    row = by_id("gsm8k", "gsm8k/00000")
    prompt = row["prompt"]
    assert prompt.startswith("Question: Angelo and Melanie want to plan how many hours")
    assert prompt.count("Question: ") == 5 and prompt.count("\nLet's think step by step\nAnswer:") == 5
    # Each of the 4 demos is "...Answer:{solution}" ending "The answer is N", then a blank line;
    # the blank line appears nowhere else, so the "\n\n" stop ends exactly one answer.
    assert prompt.count("\n\n") == 4
    demos = prompt.split("\n\n")[:4]
    assert [d.rsplit("\n", 1)[1] for d in demos] == [
        "The answer is 4",
        "The answer is 201",
        "The answer is 140",
        "The answer is 146",
    ]
    assert demos[0].split("\n")[2].startswith("Answer:Angelo, and Melanie")  # the authors' "Answer:{}"
    assert prompt.endswith(
        "\n\nQuestion: Janet’s ducks lay 16 eggs per day. She eats three for breakfast every morning and "
        "bakes muffins for her friends every day with four. She sells the remainder at the farmers' market "
        "daily for $2 per fresh duck egg. How much in dollars does she make every day at the farmers' market?"
        "\nLet's think step by step\nAnswer:"
    )
    assert row["answers"] == ["18"] and row["choices"] == []
    assert row["max_new_tokens"] == 512 and row["stop"] == ["\n\n"]
    # Every gold solution ends "Therefore, the answer is N" and N is what we keep.
    for raw, built in zip(load_rows("gsm8k", data_dir=DATA_DIR), prompts("gsm8k")):
        tail = raw["answer"].rsplit("Therefore, the answer is ", 1)[1]
        assert built["answers"] == [tail.replace(",", "")]


TRIVIAQA_DEMOS = (
    "Answer this questions:\n"
    "Question:In the 1971 Number One hit Ernie by Benny Hill, what was the name of Ernie's horse who was "
    "kicked by his rival, Two-ton Ted from Teddington?\nAnswer:Triggers\n"
    "Question:Which British king married Mary of Teck?\nAnswer:George V of Great Britain and Ireland\n"
    "Question:Which war veterna, who died in 2009 had the nickname 'The Last Fighting Tommy'?\nAnswer:Harry Patch\n"
    "Question:The traditional Royal Navy game of Uckers, invented in the late 18th century was an early version "
    "of which now popular board game?\nAnswer:Ludo (album)\n"
    "Question:Which Englsih football club play home matches at the Sports Direct Arena?\nAnswer:United For Newcastle\n"
)


def test_triviaqa_prompt_exact():
    row = by_id("triviaqa", "triviaqa/00000")
    assert row["prompt"] == (
        TRIVIAQA_DEMOS + "Question:Which Lloyd Webber musical premiered in the US on 10th December 1993?\nAnswer:"
    )
    assert row["answers"] == [
        "Sunset Blvd",
        "West Sunset Boulevard",
        "Sunset Boulevard",
        "Sunset Bulevard",
        "Sunset Blvd.",
    ]
    assert row["max_new_tokens"] == 10 and row["stop"] == ["\n"] and row["choices"] == []


def test_nq_prompt_exact():
    row = by_id("nq", "nq/00000")
    assert row["prompt"] == (
        "Answer this questions:\n"
        "Question:who sings that song nothing compares to you\nAnswer:Prince\n"
        "Question:real housewives of atlanta married to nfl player\nAnswer:Kim Zolciak\n"
        "Question:who played slim robinson in tour de pharmacy\nAnswer:Daveed Diggs\n"
        "Question:what city is 50 shades of grey set in\nAnswer:Vancouver , Washington\n"
        "Question:the first movie of planet of the apes\nAnswer:Planet of the Apes\n"
        "Question:when was the last time anyone was on the moon\nAnswer:"
    )
    assert row["answers"] == ["14 December 1972 UTC", "December 1972"]


@pytest.mark.parametrize(
    "task, n_test, n_dev",
    [
        ("mmlu", 14042, 1531),
        ("arc_c", 1172, 1119),
        ("piqa", 1838, 300),
        ("gsm8k", 1319, 300),
        ("triviaqa", 6000, 1900),
        ("nq", 3610, 1600),
    ],
)
def test_row_counts(task, n_test, n_dev):
    assert len(prompts(task)) == n_test
    assert len(prompts(task, "dev")) == n_dev
    assert len({r["id"] for r in prompts(task)}) == n_test


def test_dev_ids_and_piqa_dev_sample():
    dev = prompts("piqa", "dev")
    assert all(r["id"].startswith("piqa/dev/") for r in dev)
    assert dev == build_prompts("piqa", "dev", data_dir=DATA_DIR)  # the seeded sample is stable
    # A PIQA dev row is the test row with the same index (documented overlap).
    test_by_index = {r["id"].split("/")[-1]: r for r in prompts("piqa")}
    assert all(test_by_index[r["id"].split("/")[-1]]["prompt"] == r["prompt"] for r in dev)
    assert prompts("mmlu", "dev")[0]["id"].startswith("mmlu/dev/")


def test_registry_and_unknown_task():
    assert set(TASKS) == {"mmlu", "arc_c", "piqa", "gsm8k", "triviaqa", "nq",
                          "flores_en_de", "flores_de_en", "flores_en_ro", "flores_ro_en"}
    assert get_task("gsm8k").max_new_tokens == 512
    with pytest.raises(ValueError, match=r"unknown task 'mmlu_pro'.*arc_c"):
        get_task("mmlu_pro")
    with pytest.raises(ValueError, match="unknown split"):
        load_rows("gsm8k", "validation", data_dir="/nonexistent")


# ---------------------------------------------------------------------------------------------
# Data errors, on a temporary data dir


def _write_gsm8k_test(data_dir: Path, lines: list[str]) -> Path:
    path = data_dir / get_task("gsm8k").test_path
    path.parent.mkdir(parents=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


GOOD = json.dumps({"question": "1+1?", "answer": "1+1=2\nTherefore, the answer is 2"})


def test_malformed_jsonl_names_file_and_line(tmp_path):
    path = _write_gsm8k_test(tmp_path, [GOOD, GOOD, '{"question": "broken", "answer": '])
    with pytest.raises(ValueError, match=re.escape(f"{path}:3: malformed JSON")) as err:
        load_rows("gsm8k", data_dir=tmp_path)
    assert isinstance(err.value, DeepenError)  # the CLI reports it as one line
    path.write_bytes(GOOD.encode() + b"\n" + b'{"question": "\xff"}\n')
    with pytest.raises(ValueError, match=re.escape(f"{path}:2: not UTF-8")):
        load_rows("gsm8k", data_dir=tmp_path)


def test_missing_gold_names_file_and_line(tmp_path):
    path = _write_gsm8k_test(tmp_path, [GOOD, json.dumps({"question": "no answer here"})])
    with pytest.raises(ValueError, match=re.escape(f"{path}:2: missing gold answer")):
        load_rows("gsm8k", data_dir=tmp_path)
    qa = tmp_path / get_task("nq").test_path
    qa.parent.mkdir(parents=True)
    qa.write_text("".join(json.dumps({"question": "q", "answer": a}) + "\n" for a in (["a"], [])))
    with pytest.raises(ValueError, match=re.escape(f"{qa}:2: missing gold answer")):
        load_rows("nq", data_dir=tmp_path)


def test_empty_split(tmp_path):
    path = _write_gsm8k_test(tmp_path, [])
    with pytest.raises(ValueError, match=re.escape(f"{path}: empty split")):
        load_rows("gsm8k", data_dir=tmp_path)
    (tmp_path / "MMLU" / "test-jsonl").mkdir(parents=True)
    with pytest.raises(ValueError, match="empty split"):
        load_rows("mmlu", data_dir=tmp_path)


def test_missing_files_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "GSM/data/test.cleand.jsonl"))) as err:
        load_rows("gsm8k", data_dir=tmp_path)
    assert isinstance(err.value, DeepenError)


def test_small_data_dir_end_to_end(tmp_path):
    # Blank lines are skipped; indices count rows. Too few demonstrations is an error.
    _write_gsm8k_test(tmp_path, [GOOD, "", GOOD])
    demos = tmp_path / get_task("gsm8k").demos_path
    demos.write_text(json.dumps({"question": "d?", "answer": "d\nThe answer is 1\n"}) + "\n")
    with pytest.raises(ValueError, match="needs 4 demonstrations"):
        build_prompts("gsm8k", data_dir=tmp_path)
    demos.write_text((json.dumps({"question": "d?", "answer": "d\nThe answer is 1\n"}) + "\n") * 4)
    rows = build_prompts("gsm8k", data_dir=tmp_path)
    assert [r["id"] for r in rows] == ["gsm8k/00000", "gsm8k/00001"]
    assert rows[0]["prompt"] == "Question: d?\nLet's think step by step\nAnswer:d\nThe answer is 1\n\n" * 4 + (
        "Question: 1+1?\nLet's think step by step\nAnswer:"
    )
    assert rows[1]["answers"] == ["2"]


# ---------------------------------------------------------------------------------------------
# Parquet


def test_parquet_round_trip(tmp_path):
    rows = [
        {
            "id": "gsm8k/00000",
            "task": "gsm8k",
            "prompt": "Question: x\nAnswer:",
            "answers": ["18"],
            "choices": [],
            "max_new_tokens": 512,
            "stop": ["\n\n"],
        },
        {
            "id": "mmlu/anatomy/00000",
            "task": "mmlu",
            "prompt": "Q ’ é\nAnswer:",
            "answers": ["A"],
            "choices": ["A", "B", "C", "D"],
            "max_new_tokens": 1,
            "stop": ["\n"],
        },
    ]
    table = prompts_table(rows)
    assert str(table.schema.field("max_new_tokens").type) == "int32"
    assert str(table.schema.field("answers").type) == "list<item: string>"
    path = tmp_path / "sub" / "prompts.parquet"
    write_prompts(rows, path)
    # the translation columns are optional and read back as null
    assert read_prompts(path) == [row | {"source": None, "source_lang": None, "target_lang": None} for row in rows]


def test_parquet_round_trip_real_prompts(tmp_path):
    rows = prompts("triviaqa")[:50] + prompts("arc_c")[40:50]
    write_prompts(rows, tmp_path / "p.parquet")
    assert read_prompts(tmp_path / "p.parquet") == rows
