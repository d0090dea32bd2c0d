"""Tests for the synthetic tiny-model helpers in tests/helpers/synthetic.py."""

import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from helpers import synthetic as S

ROUND_TRIP_TEXTS = [
    "Hello, world! The cat sat on the mat.",
    "line one\nline two\n\nline four",
    "multiple   spaces  here ",
    "  leading and trailing  ",
    "café naïve",
    "日本",
    "I love 😀 emoji",
    "Mixed: 123 café\n日本 😀\tend.",
    "x",
    "",
]


@pytest.fixture(scope="module")
def bl():
    return S.make_bytelevel_tokenizer()


@pytest.fixture(scope="module")
def sp():
    return S.make_sentencepiece_tokenizer()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return S.build_pair(tmp_path_factory.mktemp("pair"))


# ----------------------------------------------------------------------------- corpus


def test_corpus_deterministic_and_rich():
    c1, c2 = S.make_corpus(), S.make_corpus()
    assert c1 == c2
    text = "\n".join(c1)
    assert text.count(".") > 300
    for needle in ["café", "naïve", "日本", "😀", "\n", "  ", "0", "9", ",", "?", "!", '"']:
        assert needle in text, needle


# ----------------------------------------------------------------------------- tokenizers


@pytest.mark.parametrize("text", ROUND_TRIP_TEXTS)
def test_bytelevel_round_trip(bl, text):
    ids = bl.encode(text)
    assert bl.decode(ids) == text
    assert bl.decode(ids, skip_special_tokens=True) == text


@pytest.mark.parametrize("text", ROUND_TRIP_TEXTS)
def test_sentencepiece_round_trip(sp, text):
    ids = sp.encode(text)
    assert ids[0] == sp.bos_token_id
    assert sp.decode(ids, skip_special_tokens=True) == text
    assert sp.decode(ids[1:]) == text


def test_bytelevel_no_bos(bl):
    ids = bl("The cat").input_ids
    assert bl.bos_token_id not in ids
    assert bl.convert_ids_to_tokens(ids) == ["The", "Ġcat"]


def test_bytelevel_vocab(bl):
    vocab = bl.get_vocab()
    assert len(bl) == 512
    assert "Ċ" in vocab and "Ġ" in vocab and "Ġthe" in vocab
    # all 256 byte-level characters are present
    from tokenizers import pre_tokenizers

    assert all(ch in vocab for ch in pre_tokenizers.ByteLevel.alphabet())
    for t in ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]:
        assert t in vocab and vocab[t] in bl.all_special_ids
    assert bl.bos_token == bl.eos_token == "<|endoftext|>"
    assert bl.pad_token == "<|pad|>"
    assert bl.convert_ids_to_tokens(bl.encode("a\nb")) == ["a", "Ċ", "b"]


def test_sentencepiece_vocab(sp):
    vocab = sp.get_vocab()
    assert len(sp) == 512
    assert "<0x0A>" in vocab and "\n" not in vocab
    assert all(f"<0x{b:02X}>" in vocab for b in range(256))
    # byte tokens are ordinary (non-special) vocab entries
    assert vocab["<0x0A>"] not in sp.all_special_ids
    assert "▁the" in vocab and "▁cat" in vocab
    assert not any(t.startswith("Ġ") for t in vocab)
    for t in S.SENTENCEPIECE_SPECIALS:
        assert vocab[t] in sp.all_special_ids
    assert (sp.pad_token, sp.eos_token, sp.bos_token, sp.unk_token) == ("<pad>", "<eos>", "<bos>", "<unk>")
    assert sp.convert_ids_to_tokens(sp.encode("a\nb")) == ["<bos>", "a", "<0x0A>", "b"]
    # no dummy prefix: a leading word has no "▁"
    assert sp.convert_ids_to_tokens(sp.encode("The cat")) == ["<bos>", "The", "▁cat"]


def test_sentencepiece_byte_fallback(sp):
    for text in ["日本", "😀"]:
        toks = sp.convert_ids_to_tokens(sp.encode(text, add_special_tokens=False))
        assert toks and all(t.startswith("<0x") and t.endswith(">") for t in toks), toks
        assert len(toks) == len(text.encode("utf-8"))
        assert sp.decode(sp.encode(text, add_special_tokens=False)) == text


def test_common_decoded_strings(bl, sp):
    common = S.common_decoded_strings(bl, sp)
    assert len(common) >= 150
    multi = {s for s in common if len(s) > 1}
    assert len(multi) >= 100
    for w in [" the", " cat", " and"]:
        assert w in common


def test_plain_tokenizer():
    pl = S.make_plain_tokenizer()
    text = "The café in Zürich.\n  Two  spaces."
    ids = pl.encode(text)
    assert ids[0] == pl.bos_token_id
    assert pl.decode(ids, skip_special_tokens=True) == text
    toks = pl.convert_ids_to_tokens(ids)
    assert not any(("Ġ" in t or "▁" in t) for t in toks)


def test_tokenizers_deterministic(bl, sp):
    assert S.make_bytelevel_tokenizer().get_vocab() == bl.get_vocab()
    assert S.make_sentencepiece_tokenizer().get_vocab() == sp.get_vocab()
    S._bytelevel_json.cache_clear()
    S._sentencepiece_json.cache_clear()
    assert S.make_bytelevel_tokenizer().backend_tokenizer.to_str() == bl.backend_tokenizer.to_str()
    assert S.make_sentencepiece_tokenizer().backend_tokenizer.to_str() == sp.backend_tokenizer.to_str()


# ----------------------------------------------------------------------------- models


def test_tiny_llama_shapes(bl, sp):
    m = S.make_tiny_llama(bl, seed=0)
    assert m.config.vocab_size == len(bl)
    assert m.dtype == torch.float32 and not m.training
    assert m.config.tie_word_embeddings is False
    assert m.lm_head.weight.data_ptr() != m.model.embed_tokens.weight.data_ptr()
    assert m.config.bos_token_id == bl.bos_token_id
    assert m.config.eos_token_id == bl.eos_token_id
    assert m.config.pad_token_id == bl.pad_token_id
    m2 = S.make_tiny_llama(sp, seed=1, hidden_size=48)
    assert m2.get_input_embeddings().weight.shape == (len(sp), 48)
    assert m2.config.pad_token_id == sp.pad_token_id == 0


def test_model_deterministic(bl):
    a = S.make_tiny_llama(bl, seed=3)
    torch.manual_seed(12345)  # global RNG state must not matter
    torch.randn(10)
    b = S.make_tiny_llama(bl, seed=3)
    c = S.make_tiny_llama(bl, seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["lm_head.weight"], sc["lm_head.weight"])


def test_build_pair_reload_identical_logits(pair):
    bl_dir, sp_dir = pair
    assert os.path.basename(bl_dir) == "bytelevel" and os.path.basename(sp_dir) == "sentencepiece"
    hidden = {}
    for d, style, seed, h in [(bl_dir, "bytelevel", 0, 32), (sp_dir, "sentencepiece", 1, 48)]:
        assert os.path.isfile(os.path.join(d, "tokenizer.json"))
        assert os.path.isfile(os.path.join(d, "config.json"))
        tok = AutoTokenizer.from_pretrained(d)
        model = AutoModelForCausalLM.from_pretrained(d)
        model.eval()
        assert model.dtype == torch.float32
        ref_tok = S.make_tokenizer(style)
        ref_model = S.make_tiny_llama(ref_tok, seed=seed, hidden_size=h)
        assert tok.get_vocab() == ref_tok.get_vocab()
        assert len(tok) == model.config.vocab_size
        text = "The cat said, \"café\"\n日本 😀"
        enc = tok(text, return_tensors="pt")
        assert enc.input_ids.tolist() == ref_tok(text, return_tensors="pt").input_ids.tolist()
        assert tok.decode(enc.input_ids[0], skip_special_tokens=True) == text
        with torch.no_grad():
            l1 = model(**enc).logits
            l2 = ref_model(**enc).logits
        assert torch.equal(l1, l2)
        hidden[style] = model.get_input_embeddings().weight.shape[1]
    assert hidden == {"bytelevel": 32, "sentencepiece": 48}
    # SP member still adds BOS after reload; byte-level never does
    tok_sp = AutoTokenizer.from_pretrained(sp_dir)
    assert tok_sp("hi").input_ids[0] == tok_sp.bos_token_id
    tok_bl = AutoTokenizer.from_pretrained(bl_dir)
    assert tok_bl.bos_token_id not in tok_bl("hi").input_ids


def test_greedy_generation_non_degenerate(pair):
    prompts = ["The cat", "Alice said,", "In 1999, the", "My old friend", "There are 42"]
    for d in pair:
        tok, model = S.load_member(d)
        outs = []
        for p in prompts:
            enc = tok(p, return_tensors="pt")
            with torch.no_grad():
                out = model.generate(**enc, do_sample=False, max_new_tokens=8)
            new = out[0, enc.input_ids.shape[1]:].tolist()
            assert len(new) >= 1
            outs.append(tuple(new))
            # greedy is reproducible
            with torch.no_grad():
                again = model.generate(**enc, do_sample=False, max_new_tokens=8)
            assert torch.equal(out, again)
        assert len(set(outs)) == len(prompts), outs  # differ across prompts
        for o in outs:
            if len(o) == 8:
                assert len(set(o)) >= 3, o  # not a single repeated token
        # distributions are peaked, not uniform
        enc = tok("The cat sat on the mat.", return_tensors="pt")
        with torch.no_grad():
            probs = model(**enc).logits.softmax(-1)
        assert probs.max(-1).values.mean() > 20.0 / len(tok)


def test_build_member_and_chat_template(tmp_path):
    d = S.build_member(tmp_path, "sentencepiece", seed=7, hidden_size=32)
    assert os.path.isdir(d)
    tok, model = S.load_member(d)
    assert model.config.hidden_size == 32
    s = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert s == "<bos><start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n"
    d2 = S.build_member(tmp_path, "bytelevel", seed=7, hidden_size=32, name="bl")
    tok2, _ = S.load_member(d2)
    s2 = tok2.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert s2 == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    with pytest.raises(ValueError):
        S.make_tokenizer("nope")


def test_build_pair_from_cold_caches(tmp_path):
    S._bytelevel_json.cache_clear()
    S._sentencepiece_json.cache_clear()
    S._corpus.cache_clear()
    S.build_pair(tmp_path)


_HASH_SNIPPET = r"""
import hashlib, json, sys, tempfile
sys.path.insert(0, sys.argv[1])
from helpers import synthetic as S
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
d = tempfile.mkdtemp()
res = {}
for p in S.build_pair(d):
    tok = AutoTokenizer.from_pretrained(p)
    m = AutoModelForCausalLM.from_pretrained(p)
    h = hashlib.sha256()
    for k, v in sorted(m.state_dict().items()):
        h.update(k.encode()); h.update(v.numpy().tobytes())
    res[p.rsplit("/", 1)[-1]] = [json.dumps(tok.get_vocab(), sort_keys=True), h.hexdigest()]
print("RESULT" + json.dumps(res))
"""


def _start_hash_subprocess(hashseed):
    env = dict(os.environ, PYTHONHASHSEED=str(hashseed))
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.Popen(
        [sys.executable, "-c", _HASH_SNIPPET, tests],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _collect(proc):
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    line = [l for l in out.splitlines() if l.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])


def test_deterministic_across_processes():
    """Vocab and weights do not depend on the process (hash seed, RNG state)."""
    procs = [_start_hash_subprocess(1), _start_hash_subprocess(2)]  # run concurrently
    a, b = (_collect(p) for p in procs)
    assert a == b
    assert set(a) == {"bytelevel", "sentencepiece"}
