"""The two embedded real models: SmolLM2-135M (byte-level BPE, 49k) and Gemma-3-270M (SentencePiece, 262k)."""

import pytest

from deepen import Ensemble

pytestmark = pytest.mark.real

PROMPT = "Once upon a time, in a small village by the sea,"


def test_all_common_anchors(real_members):
    ens = Ensemble(list(real_members), progress=False)
    # the release's rule finds 45,589; matching by decoded bytes adds multi-byte and newline tokens and drops
    # its false matches between byte symbols and literal characters
    assert 46_000 <= len(ens.method.anchors) <= 46_300


@pytest.mark.parametrize("order", ["smollm2-main", "gemma3-main"])
def test_fast_mode_generates_32_tokens_with_all_anchors(real_members, order):
    members = list(real_members) if order == "smollm2-main" else list(real_members[::-1])
    ens = Ensemble(members, eta=0.15, mode="fast", progress=False)
    out = ens.generate([PROMPT], max_new_tokens=32, timings=True)[0]
    assert len(out.token_ids) == 32 or out.stop_reason == "eos"
    assert len(out.text.split()) >= 5
    alone = Ensemble(members[:1]).generate([PROMPT], max_new_tokens=32)[0]
    assert alone.text.split()[0] == out.text.split()[0]  # same model family of answer, not noise


def test_cache_resync_equals_reprefill_past_gemmas_sliding_window(real_members):
    """Gemma-3 as assistant on a prompt longer than its 512-token sliding window: cropping must still be exact."""
    smol, gemma = real_members
    prompt = " ".join(f"Item {i} is a {'red' if i % 2 else 'blue'} box." for i in range(90)) + " The last item is"
    assert len(gemma.tokenizer(prompt)["input_ids"]) > 520
    kw = dict(eta=0.5, certify=False, progress=False)  # the sync under test, not the certificate
    cached = Ensemble([smol, gemma], sync="cache", **kw).generate([prompt], max_new_tokens=6)[0]
    ref = Ensemble([smol, gemma], sync="reprefill", **kw).generate([prompt], max_new_tokens=6)[0]
    assert cached.token_ids == ref.token_ids
