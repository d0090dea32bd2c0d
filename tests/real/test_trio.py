"""Three tokenizer families in one ensemble: Qwen2.5-Coder-0.5B (byte-level BPE, 152k) as main model, Gemma-3-270M
(SentencePiece, 262k) and SmolLM2-135M (byte-level BPE, 49k), through the library, the command line and the pipeline."""

import json

import pyarrow.parquet as pq
import pytest

from deepen import Ensemble
from deepen.cli import main
from helpers.pipeline import DATA_DIR, snakemake, workdir, write_config

pytestmark = pytest.mark.real

PROMPT = "Question: What is the capital of France?\nAnswer:"


@pytest.fixture(scope="module")
def trio(qwen_member, real_members):
    smol, gemma = real_members
    return [qwen_member, gemma, smol]


def test_three_vocabularies_share_anchors_and_decode(trio):
    ens = Ensemble(trio, eta=0.15, progress=False)
    assert len({m.tokenizer.__class__.__name__ for m in trio} | {len(m.tokenizer) for m in trio}) >= 4
    assert ens.method.anchors.ids.shape[0] == 3 and len(ens.method.anchors) > 20_000
    out = ens.generate([PROMPT], max_new_tokens=4)[0]
    assert out.ensembled >= 1 and 1 <= len(out.token_ids) <= 4
    assert "Paris" in out.text  # the three agree on this one


def test_the_command_line_takes_three_members(capsys):
    status = main(["generate", "qwen2.5-coder-0.5b", "gemma3-270m", "smollm2-135m", "--prompt", PROMPT,
                   "--max-new-tokens", "3", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert status == 0 and out["members"] == ["qwen2.5-coder-0.5b", "gemma3-270m", "smollm2-135m"]
    assert out["anchors"] > 20_000 and len(out["weights"]) == 3


def test_the_pipeline_runs_a_three_member_ensemble(tmp_path, trio):
    work = workdir(tmp_path)
    write_config(work, {
        "title": "trio", "data_dir": str(DATA_DIR),
        "models": {"qwen": {"source": "qwen2.5-coder-0.5b"}, "gemma3": {"source": "gemma3-270m"},
                   "smollm2": {"source": "smollm2-135m"}},
        "tasks": {"arc_c": {"limit": 2, "dev_limit": 1}},
        "ensembles": [{"name": "trio", "members": ["qwen", "gemma3", "smollm2"], "methods": ["deepen.avg"]}],
    })
    snakemake(work, "--cores", "2")
    summary = pq.read_table(work / "results/summary.parquet").to_pylist()
    rows = {r["method"] for r in summary}
    assert {"qwen", "gemma3", "smollm2", "trio.deepen.avg"} <= rows
    anchors = pq.read_table(work / "resources/anchors/trio.parquet")
    assert {"id_0", "id_1", "id_2"} <= set(anchors.column_names)
