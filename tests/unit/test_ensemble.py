"""The decoding loop on tiny synthetic members of different tokenizer styles."""

import random

import pytest
import torch

from deepen import DeepenError, Ensemble, load_member
from deepen.sync import CachedRunner, common_prefix
from helpers import synthetic

PROMPTS = [
    "The cat sat on the",
    "Hello world, this is a longer prompt about café and naïve people.\nNext line:",
    "日本 😀 numbers 12 34",
    "a",
]


def test_eta_zero_is_the_main_model_alone(pair):
    for main, other in (pair, pair[::-1]):
        ens = Ensemble([main, other], eta=0.0, min_anchors=50, progress=False)
        for prompt in PROMPTS[:3]:
            out = ens.generate([prompt], max_new_tokens=10)[0]
            enc = main.tokenizer(prompt, return_tensors="pt")
            ref = main.model.generate(**enc, max_new_tokens=10, do_sample=False,
                                      eos_token_id=sorted(main.eos_ids), pad_token_id=0)
            ref_ids = ref[0, enc.input_ids.shape[1]:].tolist()
            assert out.token_ids == ref_ids[: len(out.token_ids)]
            assert len(out.token_ids) == 10 or out.stop_reason == "eos"


@pytest.mark.parametrize("mode", ["fast", "paper"])
def test_kv_cache_resync_gives_the_tokens_of_the_reprefill_reference(pair, mode):
    for members in (list(pair), list(pair[::-1])):
        kw = dict(eta=0.5, min_anchors=50, mode=mode, progress=False)
        cached = Ensemble(members, sync="cache", **kw).generate(PROMPTS, max_new_tokens=16, batch_size=4)
        ref = Ensemble(members, sync="reprefill", **kw).generate(PROMPTS, max_new_tokens=16, batch_size=1)
        assert [o.token_ids for o in cached] == [o.token_ids for o in ref]
        assert [o.text for o in cached] == [o.text for o in ref]


def test_fusion_changes_something_and_batch_of_four_equals_four_single_runs(pair):
    ens = Ensemble(list(pair), eta=0.5, min_anchors=50, progress=False)
    batched = ens.generate(PROMPTS, max_new_tokens=16, batch_size=4)
    singles = [ens.generate([p], max_new_tokens=16)[0] for p in PROMPTS]
    assert [o.token_ids for o in batched] == [o.token_ids for o in singles]
    alone = Ensemble(list(pair), eta=0.0, min_anchors=50, progress=False).generate(PROMPTS, max_new_tokens=16)
    assert [o.token_ids for o in batched] != [o.token_ids for o in alone]
    again = ens.generate(PROMPTS, max_new_tokens=16, batch_size=3)
    assert [o.token_ids for o in again] == [o.token_ids for o in batched]


def test_cached_runner_matches_a_fresh_forward_after_arbitrary_edits(pair):
    """Rows shrink and grow by different amounts each step; logits must equal a fresh full forward."""
    member = pair[1]
    tok = member.tokenizer
    rng = random.Random(0)
    rows = [tok(p)["input_ids"] for p in PROMPTS]
    runner = CachedRunner(member.model, pad_id=0)
    runner.prefill(rows)
    vocab = len(tok)
    for _ in range(12):
        new = []
        for r in rows:
            cut = rng.randint(0, min(3, len(r) - 1))
            r = r[: len(r) - cut] + [rng.randrange(10, vocab) for _ in range(rng.randint(0, 3))]
            new.append(r if len(r) else [5])
        rows = new
        got = runner.step(rows)
        for b, r in enumerate(rows):
            with torch.no_grad():
                ref = member.model(input_ids=torch.tensor([r])).logits[0, -1]
            assert torch.allclose(got[b], ref, atol=1e-4), b


def test_cached_runner_holes_never_enter_a_sliding_window(pair):
    """A sliding window counts cache slots: rows padded on the left inside a chunk (holes) must be compacted before the
    window would reach them. Rows grow past a 64-slot window; every step's logits equal a fresh forward's."""
    tok = pair[1].tokenizer
    model = synthetic.make_tiny_sliding(tok, window=64)
    rng = random.Random(0)
    rows = [tok(p)["input_ids"] for p in PROMPTS]
    runner = CachedRunner(model, pad_id=0)
    runner.prefill(rows)
    holey, widths = [], []
    for _ in range(20):
        rows = [r[: len(r) - rng.randint(0, 1)] + [rng.randrange(10, len(tok)) for _ in range(rng.randint(1, 3))]
                for r in rows]
        got = runner.step(rows)
        holey.append(runner.holes)
        widths.append(runner.mask.shape[1])
        for b, r in enumerate(rows):
            with torch.no_grad():
                ref = model(input_ids=torch.tensor([r])).logits[0, -1]
            assert torch.allclose(got[b], ref, atol=1e-4), b
    assert any(holey) and not holey[-1] and max(widths) > 64  # holes used, then compacted past the window


def test_common_prefix():
    assert common_prefix([1, 2, 3], [1, 2, 4, 5]) == 2
    assert common_prefix([], [1]) == 0
    assert common_prefix([1, 2], [1, 2]) == 2


def test_stop_strings_eos_and_choices(pair):
    ens = Ensemble(list(pair), eta=0.5, min_anchors=50, progress=False)
    free = ens.generate(PROMPTS[:2], max_new_tokens=16)
    # stop at the first character the free run produced at position >= 1 (so the stop truly triggers)
    stops = [o.text[1:3] or "zzz" for o in free]
    cut = ens.generate(PROMPTS[:2], max_new_tokens=16, stop=[[s] for s in stops])
    for o, s, f in zip(cut, stops, free):
        assert o.stop_reason == "stop" and s not in o.text and f.text.startswith(o.text)
    mc = ens.generate(["Question: pick one\nA. x\nB. y\nAnswer:"] * 2, max_new_tokens=1,
                      choices=[["A", "B"], ["A", "B", "C", "D"]])
    assert mc[0].choice in ("A", "B") and mc[1].choice in ("A", "B", "C", "D")
    with pytest.raises(DeepenError, match="max_new_tokens"):
        ens.generate(["x"], max_new_tokens=0)


def test_weights_are_validated(pair):
    with pytest.raises(DeepenError, match="one weight per member"):
        Ensemble(list(pair), weights=[1.0], min_anchors=50, progress=False)
    with pytest.raises(DeepenError, match="sum to 1"):
        Ensemble(list(pair), weights=[0.7, 0.7], min_anchors=50, progress=False)
    with pytest.raises(DeepenError, match="fewer than the minimum"):
        Ensemble(list(pair), progress=False)  # the synthetic pair shares ~400 strings < 1000


def test_paper_mode_refuses_what_would_not_fit(pair):
    with pytest.raises(DeepenError, match=r"paper mode needs dense relative matrices of .* GB .*--mode fast"):
        Ensemble(list(pair), mode="paper", min_anchors=50, max_dense_bytes=1000, progress=False)


def test_unknown_sources_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DeepenError, match="cannot load model 'no-such-org/no-such-model'"):
        load_member("no-such-org/no-such-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DeepenError, match="not a model checkpoint"):
        load_member(str(tmp_path / "empty"))
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights" / "config.json").write_text("{}")
    with pytest.raises(DeepenError, match="no weights"):
        load_member(str(tmp_path / "noweights"))
    with pytest.raises(DeepenError, match="GGUF file not found"):
        load_member(str(tmp_path / "missing.gguf"))
    with pytest.raises(DeepenError, match="unknown model"):
        load_member("no such model!")
