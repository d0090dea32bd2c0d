"""The evaluation data ships with the repository: every file of data/deepen_splits matches SHA256SUMS, and nothing is
there that the checksum file does not list."""

import hashlib
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "data" / "deepen_splits"


def test_every_data_file_matches_its_checksum():
    listed = {}
    for line in (DATA / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        listed[name] = digest
    present = {str(p.relative_to(DATA)) for p in DATA.rglob("*.jsonl")}
    assert present == set(listed), f"unlisted or missing files: {sorted(present ^ set(listed))}"
    bad = [name for name, digest in listed.items() if hashlib.sha256((DATA / name).read_bytes()).hexdigest() != digest]
    assert not bad, f"files that differ from SHA256SUMS: {bad}"
    assert len(listed) == 183


def test_sources_document_names_every_file_and_a_licence_per_benchmark():
    sources = (DATA / "SOURCES.md").read_text()
    for name in (DATA / "SHA256SUMS").read_text().split()[1::2]:
        assert f"`{name}`" in sources
    for folder in ("MMLU/", "ARC-Challenge/", "PIQA/", "GSM/", "TriviaQA/", "NaturalQuestions/"):
        assert f"| `{folder}` |" in sources
