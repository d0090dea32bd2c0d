"""Vocabulary normalisation and anchor matching across tokenizer styles."""

import numpy as np
import pytest

from deepen import DeepenError, find_anchors, normalise_vocabulary
from deepen.anchors import Anchors
from deepen.vocabulary import Vocabulary, byte_level_alphabet, piece_bytes
from helpers import synthetic


def test_byte_level_alphabet_is_gpt2s():
    alphabet = byte_level_alphabet()
    assert len(alphabet) == 256 and sorted(alphabet.values()) == list(range(256))
    assert alphabet["Ġ"] == 0x20 and alphabet["Ċ"] == 0x0A and alphabet["a"] == ord("a")


@pytest.mark.parametrize(
    "piece, style, expected, kind",
    [
        ("Ġthe", "bytelevel", b" the", "normal"),
        ("Ċ", "bytelevel", b"\n", "normal"),
        ("Ã©", "bytelevel", "é".encode(), "normal"),
        ("â", "bytelevel", b"\xe2", "normal"),  # a fragment of a multi-byte character stays bytes
        ("▁the", "sentencepiece", b" the", "normal"),
        ("<0x0A>", "sentencepiece", b"\n", "byte"),
        ("<0xE2>", "sentencepiece", b"\xe2", "byte"),
        ("the", "plain", b"the", "normal"),
    ],
)
def test_piece_bytes(piece, style, expected, kind):
    assert piece_bytes(piece, style) == (expected, kind)


def test_styles_detected():
    assert normalise_vocabulary(synthetic.make_bytelevel_tokenizer()).style == "bytelevel"
    assert normalise_vocabulary(synthetic.make_sentencepiece_tokenizer()).style == "sentencepiece"
    assert normalise_vocabulary(synthetic.make_plain_tokenizer()).style == "plain"


def test_specials_have_no_text_and_decoded_text_matches_the_tokenizer():
    for tok in (synthetic.make_bytelevel_tokenizer(), synthetic.make_sentencepiece_tokenizer()):
        vocab = normalise_vocabulary(tok)
        for i in tok.all_special_ids:
            assert vocab.kinds[i] == "special" and vocab.texts[i] == b""
        for i, (text, kind) in enumerate(zip(vocab.texts, vocab.kinds)):
            if kind == "special":
                continue
            decoded = tok.decode([i], clean_up_tokenization_spaces=False)
            if "\ufffd" not in decoded:  # fragments of characters decode to U+FFFD; their bytes are checked above
                assert text == decoded.encode(), (i, vocab.pieces[i])


def test_anchors_match_newline_bytes_and_words_across_styles():
    bpe, spm = synthetic.make_bytelevel_tokenizer(), synthetic.make_sentencepiece_tokenizer()
    vb, vs = normalise_vocabulary(bpe), normalise_vocabulary(spm)
    anchors = find_anchors([vb, vs], ["bpe", "spm"], min_anchors=10)
    by_text = dict(zip(anchors.texts, anchors.ids.T.tolist()))
    # newline: 'Ċ' in one, byte fallback '<0x0A>' in the other
    assert bpe.convert_ids_to_tokens(by_text[b"\n"][0]) == "Ċ"
    assert spm.convert_ids_to_tokens(by_text[b"\n"][1]) == "<0x0A>"
    # a raw byte (fragment of a UTF-8 character) is matched as that byte
    assert spm.convert_ids_to_tokens(by_text[b"\xe6"][1]) == "<0xE6>"
    # whole words with a leading space: 'Ġthe' <-> '▁the'
    assert bpe.convert_ids_to_tokens(by_text[b" the"][0]) == "Ġthe"
    assert spm.convert_ids_to_tokens(by_text[b" the"][1]) == "▁the"
    # no special token is an anchor
    for member, tok in enumerate((bpe, spm)):
        assert not set(anchors.ids[member].tolist()) & set(tok.all_special_ids)
    # one fixed column order: the main model's ids ascending
    assert anchors.ids[0].tolist() == sorted(anchors.ids[0].tolist())
    # every anchor decodes to the same text in both members
    for text, (i, j) in list(by_text.items())[:200]:
        assert vb.texts[i] == vs.texts[j] == text


def test_same_text_twice_prefers_the_ordinary_token():
    vocab = Vocabulary("sentencepiece", ["<0x0A>", "\n", "a"], [b"\n", b"\n", b"a"], ["byte", "added", "normal"])
    other = Vocabulary("bytelevel", ["Ċ", "a"], [b"\n", b"a"], ["normal", "normal"])
    anchors = find_anchors([vocab, other], ["x", "y"], min_anchors=1)
    assert dict(zip(anchors.texts, anchors.ids[0].tolist()))[b"\n"] == 1


def test_too_few_anchors_is_a_clear_error():
    bpe, spm = synthetic.make_bytelevel_tokenizer(), synthetic.make_sentencepiece_tokenizer()
    with pytest.raises(DeepenError, match=r"share only \d+ anchor tokens, fewer than the minimum of 1000"):
        find_anchors([normalise_vocabulary(bpe), normalise_vocabulary(spm)], ["bpe", "spm"])


def test_max_anchors_keeps_the_first_and_tables_round_trip():
    bpe, spm = synthetic.make_bytelevel_tokenizer(), synthetic.make_sentencepiece_tokenizer()
    vocabs = [normalise_vocabulary(bpe), normalise_vocabulary(spm)]
    full = find_anchors(vocabs, ["bpe", "spm"], min_anchors=10)
    capped = find_anchors(vocabs, ["bpe", "spm"], min_anchors=10, max_anchors=50)
    assert capped.texts == full.texts[:50]
    again = Anchors.from_table(capped.to_table())
    assert again.texts == capped.texts and np.array_equal(again.ids, capped.ids) and again.members == ["bpe", "spm"]
    v = Vocabulary.from_table(vocabs[1].to_table())
    assert v == vocabs[1]
