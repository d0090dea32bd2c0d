"""Translation with an encoder-decoder specialist: the FLORES tasks (local files and the hub mapping), BLEU scores
(corpus BLEU as the task score), the pipeline stages and the CLI with a synthetic NLLB member. (The dry run of
config/paper_translation.yaml is in tests/integration/test_dry_runs.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from deepen.errors import TaskError
from deepen.eval.hub_records import flores as flores_from_hub
from deepen.eval.metrics import BLEU, corpus_bleu, sentence_bleu
from deepen.eval.task_data import build_prompts, load_rows, write_prompts
from deepen.eval.tasks import get_task
from deepen.pipeline.decode import decode_shard, load_ensemble
from deepen.pipeline.io import read_table, write_table
from deepen.pipeline.models import anchors_table, materialise, relative_table, vocabulary_table
from deepen.pipeline.prompts import prompts_file
from deepen.pipeline.summary import summarise, summary_markdown
from deepen.pipeline.schemas import PREDICTION_SCHEMA
from deepen.pipeline.score import dev_weights, gather, score

MADE_FROM = {"settings": {"test": True}}  # a shard's provenance (the score stage that checks it is not run here)


def score_row(task: str, text: str, answers: list[str]) -> float:
    return get_task(task).metric.row(text, answers, [])

PAIRS = [
    ("The cat sat on the mat.", "Die Katze saß auf der Matte."),
    ("Every child reads a book.", "Jedes Kind liest ein Buch."),
    ("The river is cold today.", "Der Fluss ist heute kalt."),
    ("Alice said hello.", "Alice sagte hallo."),
    ("Two birds sing in the garden.", "Zwei Vögel singen im Garten."),
    ("My friend walks slowly.", "Mein Freund geht langsam."),
    ("The old house is quiet.", "Das alte Haus ist ruhig."),
]


def _write(path: Path, pairs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"source": s, "target": t}, ensure_ascii=False) + "\n" for s, t in pairs))


@pytest.fixture
def data_dir(tmp_path):
    root = tmp_path / "data"
    _write(root / "FLORES/en-de/devtest.jsonl", PAIRS[5:] + PAIRS[:2])
    _write(root / "FLORES/en-de/dev.jsonl", PAIRS[5:])
    _write(root / "FLORES/en-de/demos.jsonl", PAIRS[:5])
    return root


# -- the task ---------------------------------------------------------------------------------------------------------


def test_translation_prompt_rows_from_local_files(data_dir):
    rows = build_prompts("flores_en_de", "test", data_dir=data_dir)
    assert [r["id"] for r in rows] == ["flores_en_de/00000", "flores_en_de/00001", "flores_en_de/00002",
                                       "flores_en_de/00003"]
    first = rows[0]
    demos = "".join(f"English: {s}\nGerman: {t}\n" for s, t in PAIRS[:5])
    assert first["prompt"] == ("Translate the following sentences from English to German.\n" + demos
                               + "English: My friend walks slowly.\nGerman:")
    assert first["source"] == "My friend walks slowly." and first["answers"] == ["Mein Freund geht langsam."]
    assert (first["source_lang"], first["target_lang"]) == ("en", "de")
    assert first["stop"] == ["\n"] and first["max_new_tokens"] == 256 and first["choices"] == []
    assert build_prompts("flores_en_de", "dev", data_dir=data_dir)[0]["id"] == "flores_en_de/dev/00000"
    task = get_task("flores_ro_en")
    assert task.metric is BLEU and task.hub_configs == ("ron_Latn", "eng_Latn")
    assert task.template({"source": "Bună ziua."}) == "Romanian: Bună ziua.\nEnglish:"


def test_translation_rows_need_source_and_reference(tmp_path):
    _write(tmp_path / "FLORES/en-de/devtest.jsonl", PAIRS[:1])
    (tmp_path / "FLORES/en-de/devtest.jsonl").open("a").write(json.dumps({"source": "x", "target": " "}) + "\n")
    with pytest.raises(TaskError, match=r"devtest.jsonl:2: missing reference translation"):
        load_rows("flores_en_de", "test", data_dir=tmp_path)


def test_flores_hub_records_are_joined_by_sentence_id(monkeypatch):
    eng = {"id": 7, "iso_639_3": "eng", "iso_15924": "Latn", "glottocode": "stan1293", "text": "Hello.",
           "url": "u", "domain": "wikinews", "topic": "t"}
    deu = dict(eng, iso_639_3="deu", glottocode="stan1295", text="Hallo.")
    assert flores_from_hub([eng, deu]) == {"source": "Hello.", "target": "Hallo.", "flores_id": 7}
    assert flores_from_hub([{"id": 1, "sentence": "a"}, {"id": 1, "sentence": "b"}])["target"] == "b"
    with pytest.raises(TaskError, match="not aligned"):
        flores_from_hub([eng, dict(deu, id=8)])

    import datasets

    calls = []

    def fake_load_dataset(name, config, split, revision=None):
        calls.append((name, config, split))
        text = {"eng_Latn": ["One.", "Two."], "deu_Latn": ["Eins.", "Zwei."]}[config]
        return [{"id": i, "text": t} for i, t in enumerate(text)]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    rows = load_rows("flores_de_en", "test", data_dir="/nonexistent", hub=True)
    assert calls == [("openlanguagedata/flores_plus", "deu_Latn", "devtest"),
                     ("openlanguagedata/flores_plus", "eng_Latn", "devtest")]
    assert [(r["source"], r["target"], r["index"]) for r in rows] == [("Eins.", "One.", 0), ("Zwei.", "Two.", 1)]


# -- BLEU -------------------------------------------------------------------------------------------------------------


def test_bleu_on_hand_checked_examples():
    # 13a tokens: 7 each; matching 1-4-grams 6/7, 4/6, 2/5, 1/4, no brevity penalty -> (48/840) ** (1/4)
    assert sentence_bleu(" The cat is on the mat.\nEnglish: next", "The cat sat on the mat.") == pytest.approx(
        100 * (48 / 840) ** 0.25)
    assert sentence_bleu("The cat sat on the mat.", ["x", "The cat sat on the mat."]) == 100.0
    assert score_row("flores_en_de", "The cat sat on the mat.", ["The cat sat on the mat."]) == 1.0
    score, signature = corpus_bleu(["The cat is on the mat.", ""], [["The cat sat on the mat."], ["Hello."]])
    assert 0 < score < 48.9 and "tok:13a" in signature and "nrefs:1" in signature
    with pytest.raises(ValueError, match="same number"):
        corpus_bleu(["a", "b"], [["a"], ["b", "c"]])


def test_score_stores_corpus_bleu_and_summary_and_weights_use_it(tmp_path, data_dir):
    rows = build_prompts("flores_en_de", "test", data_dir=data_dir)
    write_prompts(rows, tmp_path / "prompts.parquet")
    texts = [" Mein Freund geht langsam.", "Das Haus", "", " Die Katze saß auf der Matte.\nEnglish: x"]
    preds = pa.Table.from_pylist([{"id": r["id"], "text": t, "token_ids": [1], "choice": None, "stop_reason": "stop"}
                                  for r, t in zip(rows, texts)], schema=PREDICTION_SCHEMA)
    write_table(preds, tmp_path / "pred.parquet")
    got = score("flores_en_de", tmp_path / "prompts.parquet", tmp_path / "pred.parquet", None,
                tmp_path / "scores.parquet")
    expected, _ = corpus_bleu(texts, [r["answers"] for r in rows])
    table = read_table(tmp_path / "scores.parquet")
    per_row = [sentence_bleu(t, r["answers"]) / 100 for t, r in zip(texts, rows)]
    assert got == pytest.approx(expected) and table["correct"].to_pylist() == pytest.approx(per_row)
    assert table.schema.metadata[b"metric"] == b"bleu" and b"tok:13a" in table.schema.metadata[b"signature"]
    mean = 100 * sum(per_row) / len(per_row)
    assert abs(mean - expected) > 1  # the corpus score is not the mean of the rows ...
    summary = summarise([{"method": "m", "row": "M", "kind": "single", "task": "flores_en_de",
                          "path": str(tmp_path / "scores.parquet")}]).to_pylist()[0]
    assert summary["acc"] == pytest.approx(expected) and summary["acc_free"] == pytest.approx(expected)  # ... it wins
    assert "En→De" in summary_markdown(summarise([{"method": "m", "row": "M", "kind": "single",
                                                   "task": "flores_en_de", "scores": table}]))
    dev_weights([str(tmp_path / "scores.parquet")] * 2, ["a", "b"], tmp_path / "w.json")
    assert json.loads((tmp_path / "w.json").read_text())["dev_accuracy"] == pytest.approx([expected, expected])


# -- the pipeline stages and the CLI with an encoder-decoder member ---------------------------------------------------


def test_pipeline_stages_with_an_encoder_decoder_member(tmp_path, pair_dirs, seq2seq_dir, data_dir):
    res = tmp_path / "resources"
    names, dirs, metas, vocabs = ["bl", "nllb"], [], [], []
    for name, source in zip(names, [pair_dirs[0], seq2seq_dir]):
        dirs.append(str(res / "models" / name))
        metas.append(str(res / "models" / f"{name}.json"))
        materialise(source, dirs[-1], metas[-1], dtype="float32")
        vocabs.append(str(res / "vocabularies" / f"{name}.parquet"))
        vocabulary_table(dirs[-1], metas[-1], vocabs[-1])
    assert json.loads(Path(dirs[1], "config.json").read_text())["is_encoder_decoder"]
    anchors = str(res / "anchors" / "e.parquet")
    assert anchors_table(vocabs, names, anchors, min_anchors=50) > 200
    relative = [str(res / "relative" / f"{n}.parquet") for n in names]
    for i, (d, m, r) in enumerate(zip(dirs, metas, relative)):  # exact tail: η 0.5, T 5 is certified
        relative_table(d, m, anchors, i, r, exact_tail=True)
    prompts = tmp_path / "prompts.parquet"
    prompts_file("flores_en_de", "test", prompts, data_dir=str(data_dir), max_new_tokens=6)
    ens = load_ensemble(dirs, metas, names, method="deepen", options={"eta": 0.5}, anchors_path=anchors,
                        relative_paths=relative, dtype="float32")
    assert ens.members[1].seq2seq and ens.method.fuses
    out = tmp_path / "shard.parquet"
    assert decode_shard(ens, prompts, 0, 1, out, batch_size=2, made_from=MADE_FROM) == 4
    pred = read_table(out).to_pylist()
    assert all(p["stop_reason"] in ("stop", "length", "eos") and p["token_ids"] for p in pred)
    gather([str(out)], tmp_path / "pred.parquet", tmp_path / "timings.parquet")
    bleu = score("flores_en_de", prompts, tmp_path / "pred.parquet", tmp_path / "timings.parquet",
                 tmp_path / "scores.parquet")
    assert bleu >= 0 and read_table(tmp_path / "scores.parquet").schema.metadata[b"metric"] == b"bleu"
    # the translator alone, as the main model, reads the source sentences
    alone = load_ensemble(dirs[1:], metas[1:], names[1:], dtype="float32")
    decode_shard(alone, prompts, 0, 1, tmp_path / "alone.parquet", batch_size=4, made_from=MADE_FROM)
    texts = [p["text"] for p in read_table(tmp_path / "alone.parquet").to_pylist()]
    rows = build_prompts("flores_en_de", "test", data_dir=data_dir)
    direct = alone.generate([r["source"] for r in rows], max_new_tokens=6, stop=["\n"], src_lang="en",
                            tgt_lang="de")
    assert texts == [g.text for g in direct]


def test_cli_generate_with_an_encoder_decoder_member(pair_dirs, seq2seq_dir, capsys):
    from deepen.cli import main

    args = ["generate", pair_dirs[0], seq2seq_dir, "--prompt", "English: The cat sat.\nGerman:", "--prompt",
            "English: Hello world.\nGerman:", "--source", "The cat sat.", "--source", "Hello world.", "--src-lang",
            "en", "--tgt-lang", "de", "--min-anchors", "50", "--max-new-tokens", "5", "--eta", "0.5", "--json"]
    assert main(args) == 0
    records = json.loads(capsys.readouterr().out)
    assert [len(r["token_ids"]) for r in records] == [5, 5] and records[0]["members"][1] == "nllb"
    assert main(args[:-1] + ["--source", "x"]) == 2
    assert "--source: give one per --prompt" in capsys.readouterr().err
