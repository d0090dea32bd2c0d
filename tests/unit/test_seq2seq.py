"""Encoder-decoder (specialist) members: the runner's cache arithmetic, and such members in the decoding loop."""

import random

import pytest
import torch
from transformers import BartConfig, BartForConditionalGeneration, MarianConfig, MarianMTModel, T5Config
from transformers import T5ForConditionalGeneration

from deepen import DeepenError, Ensemble
from deepen.anchors import find_anchors
from deepen.decoding import _join
from deepen.members import context_error
from deepen.sync import EncoderDecoderRunner
from deepen.vocabulary import normalise_vocabulary
from helpers import synthetic

PROMPTS = [
    "Translate the following sentences from English to German.\nEnglish: The cat sat on the mat.\nGerman:",
    "English: Hello world, this is a longer sentence about café and naïve people.\nGerman:",
    "English: a\nGerman:",
]
SOURCES = ["The cat sat on the mat.", "Hello world, this is a longer sentence about café and naïve people.", "a"]


def _randomised(model, seed: int):
    """Weights drawn with std 0.2 (norms 1): logits far from zero, so that 1e-5 agreement means something."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return model.eval()


def _tiny(arch: str):
    """(model, pad id, decoder start id, vocabulary size) of a tiny random encoder-decoder model."""
    common = dict(vocab_size=96, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                  decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=128,
                  dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)
    if arch == "m2m100":  # NLLB's architecture: positions derived from the ids (padding-aware) and the cache length
        tok = synthetic.make_nllb_tokenizer()
        return synthetic.make_tiny_m2m100(tok, seed=3), tok.pad_token_id, tok.eos_token_id, len(tok)
    if arch == "marian":  # sinusoidal positions from the cache length
        torch.manual_seed(0)
        model = MarianMTModel(MarianConfig(pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, **common))
        return _randomised(model, 3), 0, 0, 96
    if arch == "bart":  # learned positions from the cache length
        torch.manual_seed(0)
        model = BartForConditionalGeneration(BartConfig(pad_token_id=1, bos_token_id=0, eos_token_id=2,
                                                        decoder_start_token_id=2, **common))
        return _randomised(model, 3), 1, 2, 96
    torch.manual_seed(0)  # t5: relative position buckets, no absolute positions
    model = T5ForConditionalGeneration(T5Config(vocab_size=96, d_model=32, d_kv=8, d_ff=64, num_layers=2,
                                                num_heads=4, dropout_rate=0.0, pad_token_id=0, eos_token_id=1,
                                                decoder_start_token_id=0))
    return _randomised(model, 3), 0, 0, 96


@pytest.mark.parametrize("arch", ["m2m100", "marian", "bart", "t5"])
def test_encoder_decoder_runner_matches_a_fresh_forward_after_arbitrary_edits(arch):
    """Rows shrink and grow by different amounts each step (and some leave the batch); the cached, right-padded
    logits must equal a fresh forward of each row alone, unpadded."""
    model, pad, start, vocab = _tiny(arch)
    rng = random.Random(0)
    sources = [[rng.randrange(5, vocab) for _ in range(n)] for n in (3, 9, 1, 6)]
    rows = [[start] + [rng.randrange(5, vocab) for _ in range(n)] for n in (0, 4, 2, 7)]

    def check(got):
        for b, (src, row) in enumerate(zip(sources, rows)):
            with torch.no_grad():
                ref = model(input_ids=torch.tensor([src]), decoder_input_ids=torch.tensor([row])).logits[0, -1]
            assert ref.abs().max() > 0.1  # not a trivially small comparison
            assert torch.allclose(got[b], ref, atol=1e-5), (arch, b, (got[b] - ref).abs().max())

    runner = EncoderDecoderRunner(model, pad)
    runner.encode(sources)
    check(runner.prefill(rows))
    for step in range(12):
        rows = [r[: len(r) - rng.randint(0, min(3, len(r) - 1))] + [rng.randrange(5, vocab)
                                                                     for _ in range(rng.randint(0, 3))]
                for r in rows]
        check(runner.step(rows))
        if step == 5:  # a row finishes: the batch shrinks, encoder outputs and caches follow
            runner.select([0, 2, 3])
            sources, rows = [sources[i] for i in (0, 2, 3)], [rows[i] for i in (0, 2, 3)]
    assert runner.tokens_fed < sum(len(r) for r in rows) * 13  # it did not re-read everything every step


def test_resync_across_retokenisation(seq2seq):
    """The decoder reads its own encoding of a text that grows character by character: earlier tokens merge and
    split, the runner crops to the common prefix and re-feeds; logits always equal a fresh forward."""
    text = "Hello world, the café is quiet and the children read books."
    source = seq2seq.encode_source([SOURCES[1]], ["en"])
    prefix = seq2seq.decoder_prefix("de")
    runner = EncoderDecoderRunner(seq2seq.model, seq2seq.tokenizer.pad_token_id)
    runner.encode(source)
    previous, rewrites = None, 0
    for end in range(0, len(text) + 1, 3):
        ids = [prefix + seq2seq.encode_target([text[:end]])[0]]
        got = runner.step(ids)
        with torch.no_grad():
            ref = seq2seq.model(input_ids=torch.tensor(source), decoder_input_ids=torch.tensor(ids)).logits[0, -1]
        assert torch.allclose(got[0], ref, atol=1e-5)
        if previous is not None and ids[0][: len(previous)] != previous:
            rewrites += 1  # a token the decoder had already read changed
        previous = ids[0]
    assert rewrites > 3


def test_language_tokens_source_and_decoder_prefix(seq2seq):
    tok = seq2seq.tokenizer
    deu, eng = tok.convert_tokens_to_ids("deu_Latn"), tok.convert_tokens_to_ids("eng_Latn")
    assert seq2seq.seq2seq
    assert seq2seq.language_token("de") == "deu_Latn" and seq2seq.language_token("ron_Latn") == "ron_Latn"
    assert "en" in tok.get_vocab() and seq2seq.language_token("en") == "eng_Latn"  # never the subword "en"
    ids = seq2seq.encode_source(["The cat sat.", "Der Hund."], ["en", "de"])
    assert ids[0][0] == eng and ids[1][0] == deu and ids[0][-1] == ids[1][-1] == tok.eos_token_id
    assert tok.src_lang == "eng_Latn"  # the tokenizer's setting is restored
    assert seq2seq.decoder_prefix("de") == [seq2seq.model.config.decoder_start_token_id, deu]
    assert seq2seq.encode_target([" The cat"]) == seq2seq.encode_target(["The cat"])
    with pytest.raises(DeepenError, match="no language token for 'xx'"):
        seq2seq.decoder_prefix("xx")
    with pytest.raises(DeepenError, match="give a target language"):
        seq2seq.decoder_prefix(None)
    # language codes and the other specials are never anchors
    vocab = normalise_vocabulary(tok)
    assert vocab.style == "sentencepiece"
    assert all(vocab.kinds[tok.convert_tokens_to_ids(t)] == "special" for t in synthetic.NLLB_LANGUAGES + ["<mask>"])


def test_anchors_with_a_byte_level_member(pair, seq2seq):
    vocabs = [normalise_vocabulary(m.tokenizer, m.vocab_size) for m in (pair[0], seq2seq)]
    anchors = find_anchors(vocabs, ["bpe", "nllb"], min_anchors=50)
    assert len(anchors) > 200
    assert b" the" in set(anchors.texts) and not any(b"_Latn" in t for t in anchors.texts)


def test_seq2seq_member_alone_matches_transformers_generate(seq2seq):
    tok = seq2seq.tokenizer
    ens = Ensemble([seq2seq], eta=0.0, progress=False)
    out = ens.generate(PROMPTS, sources=SOURCES, src_lang="en", tgt_lang="de", max_new_tokens=12, batch_size=3)
    for o, source in zip(out, SOURCES):
        enc = tok([source], return_tensors="pt")
        ref = seq2seq.model.generate(**enc, forced_bos_token_id=tok.convert_tokens_to_ids("deu_Latn"),
                                     max_new_tokens=13, do_sample=False)[0, 2:].tolist()
        assert o.token_ids == ref[: len(o.token_ids)] and len(o.token_ids) == 12 or o.stop_reason == "eos"
        assert o.text == tok.decode(o.token_ids, skip_special_tokens=True)


@pytest.mark.parametrize("order", [("bpe", "nllb"), ("nllb", "bpe"), ("nllb", "spm", "bpe")])
def test_encoder_decoder_members_in_the_decoding_loop(pair, seq2seq, order):
    """Decoder-only main + encoder-decoder assistant, encoder-decoder main, and three members: the KV-cache resync
    gives the tokens of the reference scheme (every member re-run from scratch on each row alone), fusion changes the
    output, and a batch decodes as its rows do one by one."""
    by_name = {"bpe": pair[0], "spm": pair[1], "nllb": seq2seq}
    members = [by_name[n] for n in order]
    kw = dict(eta=0.5, min_anchors=50, progress=False)
    io = dict(sources=SOURCES, src_lang="en", tgt_lang="de", max_new_tokens=10)
    cached = Ensemble(members, sync="cache", **kw).generate(PROMPTS, batch_size=3, **io)
    ref = Ensemble(members, sync="reprefill", **kw).generate(PROMPTS, batch_size=1, **io)
    assert [o.token_ids for o in cached] == [o.token_ids for o in ref]
    alone = Ensemble(members, eta=0.0, progress=False).generate(PROMPTS, batch_size=3, **io)
    assert [o.token_ids for o in cached] != [o.token_ids for o in alone]
    if order == ("bpe", "nllb"):
        ens = Ensemble(members, **kw)
        singles = [ens.generate([p], sources=[s], src_lang="en", tgt_lang="de", max_new_tokens=10)[0]
                   for p, s in zip(PROMPTS, SOURCES)]
        assert [o.token_ids for o in singles] == [o.token_ids for o in cached]
    if order[0] == "nllb":  # the translator's output is its decoded target, without the prompt's separator
        assert all(not o.text.startswith(" ") for o in cached if o.text)


def test_paper_mode_with_an_encoder_decoder_assistant(pair, seq2seq):
    kw = dict(eta=0.5, min_anchors=50, mode="paper", progress=False)
    io = dict(sources=SOURCES[:2], tgt_lang="de", max_new_tokens=8)
    cached = Ensemble([pair[0], seq2seq], **kw).generate(PROMPTS[:2], batch_size=2, **io)
    ref = Ensemble([pair[0], seq2seq], sync="reprefill", **kw).generate(PROMPTS[:2], batch_size=1, **io)
    assert [o.token_ids for o in cached] == [o.token_ids for o in ref]


def test_sources_default_to_the_prompt_and_languages_are_checked(pair, seq2seq):
    ens = Ensemble([pair[0], seq2seq], eta=0.5, min_anchors=50, progress=False)
    a = ens.generate(SOURCES[:2], tgt_lang="de", max_new_tokens=6)
    b = ens.generate(SOURCES[:2], sources=SOURCES[:2], tgt_lang="de", max_new_tokens=6)
    assert [o.token_ids for o in a] == [o.token_ids for o in b]
    with pytest.raises(DeepenError, match="give a target language"):
        ens.generate(SOURCES[:1], max_new_tokens=2)
    with pytest.raises(DeepenError, match="sources: got 1 values for 2 prompts"):
        ens.generate(SOURCES[:2], sources=["x"], tgt_lang="de", max_new_tokens=2)


def test_a_translators_output_follows_the_prompt_after_a_space():
    assert _join("German:", "Hallo Welt", True) == " Hallo Welt"
    assert _join("German: ", "Hallo", True) == "Hallo" and _join("German:", "", True) == ""
    assert _join("German:", " Hallo", False) == " Hallo" and _join("German:", "Hallo", False) == "Hallo"


def test_context_error_counts_the_source_for_an_encoder_decoder_member(seq2seq):
    long_source = "the cat " * 400
    assert "source of" in context_error([seq2seq], "short prompt", 8, source=long_source, tgt_lang="de")
    assert context_error([seq2seq], "x " * 2000, 8, source="a short source", tgt_lang="de") is None
    assert "decoder's context window" in context_error([seq2seq], "x", 600, source="a", tgt_lang="de")
