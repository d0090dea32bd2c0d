"""Tiny, deterministic, heterogeneous causal LMs for fast exact tests.

Everything here is built in-process (no network, no downloads) in well under a
second per member, and saved as ordinary Hugging Face directories that load
with ``AutoTokenizer.from_pretrained(dir)`` / ``AutoModelForCausalLM.from_pretrained(dir)``.

Tokenizer styles
----------------
* ``"bytelevel"`` -- GPT-2 / SmolLM2 style byte-level BPE. Pieces use ``Ġ`` for a
  space and ``Ċ`` for a newline, all 256 byte characters are in the vocab.
  Specials ``<|endoftext|>`` (bos = eos = unk), ``<|im_start|>``, ``<|im_end|>``,
  ``<|pad|>``. No BOS is added automatically.
* ``"sentencepiece"`` -- Gemma-3 style SentencePiece-BPE built with ``tokenizers``:
  ``▁`` marks a space (no dummy prefix is prepended), ``byte_fallback=True`` with
  the 256 ``<0x00>``..``<0xFF>`` tokens as ordinary vocab entries, specials
  ``<pad>`` ``<eos>`` ``<bos>`` ``<unk>`` ``<start_of_turn>`` ``<end_of_turn>``.
  ``<bos>`` is prepended automatically. ``\\n`` and all CJK / emoji characters are
  *not* in the learned alphabet, so they always encode to byte tokens
  (``\\n`` -> ``<0x0A>``).
* ``"plain"`` -- plain BPE with no marker characters at all: whitespace runs and
  punctuation are separate pre-tokens, token strings are the literal text, and
  the decoder just concatenates. Characters never seen in training map to
  ``[UNK]`` (lossy, deliberately: a third, "awkward" vocabulary style).

Both main styles are trained on the same corpus so they share many whole-word
tokens (``Ġthe`` and ``▁the`` both decode to ``" the"``).

Encoder-decoder member
----------------------
``build_seq2seq_member`` makes a tiny NLLB look-alike: transformers' own
``NllbTokenizer`` around a BPE trained here (``▁`` word prefix, Metaspace), with
the language tokens ``eng_Latn`` ``deu_Latn`` ``ron_Latn`` as specials, and a
random ``M2M100ForConditionalGeneration`` (NLLB's architecture; decoder start
``</s>``, then the target language token).
"""

from __future__ import annotations

import functools
import json
import os
import random
from typing import List, Optional, Tuple

import torch
from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
    M2M100Config,
    M2M100ForConditionalGeneration,
    NllbTokenizer,
    PreTrainedTokenizerFast,
)

__all__ = [
    "STYLES",
    "BYTELEVEL_SPECIALS",
    "SENTENCEPIECE_SPECIALS",
    "PLAIN_SPECIALS",
    "make_corpus",
    "make_bytelevel_tokenizer",
    "make_sentencepiece_tokenizer",
    "make_plain_tokenizer",
    "make_tokenizer",
    "make_tiny_llama",
    "save_member",
    "load_member",
    "build_member",
    "build_pair",
    "decoded_vocab",
    "common_decoded_strings",
    "NLLB_LANGUAGES",
    "make_nllb_tokenizer",
    "make_tiny_m2m100",
    "build_seq2seq_member",
]

STYLES = ("bytelevel", "sentencepiece", "plain")

BYTELEVEL_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]
SENTENCEPIECE_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
PLAIN_SPECIALS = ["[PAD]", "[BOS]", "[EOS]", "[UNK]"]

SPIECE_UNDERLINE = "\u2581"  # "▁"

# ---------------------------------------------------------------------------
# Corpus
# ---------------------------------------------------------------------------

_DET = ["the", "a", "this", "that", "every", "one", "my", "your", "our", "their", "some", "no"]
_ADJ = [
    "small", "large", "old", "new", "red", "blue", "green", "happy", "quiet", "bright",
    "dark", "warm", "cold", "quick", "slow", "good", "bad", "strange", "simple", "naïve",
]
_NOUN = [
    "cat", "dog", "house", "tree", "river", "city", "child", "teacher", "book", "car",
    "bird", "garden", "table", "window", "friend", "model", "story", "music", "morning",
    "road", "water", "school", "computer", "language", "word", "number", "day", "night",
    "café", "train",
]
_NOUNS_PL = [
    "cats", "dogs", "houses", "trees", "rivers", "children", "teachers", "books", "cars",
    "birds", "friends", "models", "stories", "words", "numbers", "days", "people", "apples",
]
_VERB = [
    "sees", "likes", "finds", "reads", "makes", "takes", "loves", "wants", "needs", "helps",
    "opens", "watches", "follows", "builds", "writes", "knows",
]
_VERB_INTR = ["runs", "sleeps", "walks", "sings", "waits", "falls", "works", "plays", "smiles", "stops"]
_ADV = ["quickly", "slowly", "quietly", "often", "never", "always", "today", "again", "together", "there"]
_PREP = ["in", "on", "under", "near", "behind", "with", "from", "to", "at", "by", "for", "of"]
_NAMES = ["Alice", "Bob", "Carol", "Dave", "Emma", "Frank", "Grace", "Henry", "Tokyo", "Paris", "London"]
_CONJ = ["and", "but", "because", "so", "while", "when", "if"]
_EXTRA = ["日本", "東京", "😀", "🙂", "résumé", "über", "naïve", "café", "Zürich", "señor"]


def _np(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.15:
        return rng.choice(_NAMES)
    if r < 0.45:
        return f"{rng.choice(_DET)} {rng.choice(_NOUN)}"
    if r < 0.8:
        return f"{rng.choice(_DET)} {rng.choice(_ADJ)} {rng.choice(_NOUN)}"
    return f"{rng.choice(['the', 'some', 'many', 'two', 'three', 'all'])} {rng.choice(_NOUNS_PL)}"


def _clause(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.45:
        s = f"{_np(rng)} {rng.choice(_VERB)} {_np(rng)}"
    elif r < 0.75:
        s = f"{_np(rng)} {rng.choice(_VERB_INTR)} {rng.choice(_ADV)}"
    else:
        s = f"{_np(rng)} {rng.choice(_VERB_INTR)} {rng.choice(_PREP)} {_np(rng)}"
    return s


def _sentence(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.55:
        s = _clause(rng)
        if rng.random() < 0.35:
            s += f"{rng.choice([',', ''])} {rng.choice(_CONJ)} {_clause(rng)}"
        s = s[0].upper() + s[1:] + rng.choice([".", ".", ".", "!", "?", ";"])
    elif r < 0.7:
        n = rng.randint(0, 999)
        s = rng.choice(
            [
                f"There are {n} {rng.choice(_NOUNS_PL)} {rng.choice(_PREP)} the {rng.choice(_NOUN)}.",
                f"In {rng.randint(1900, 2030)}, {_clause(rng)}.",
                f"It costs ${rng.randint(1, 99)}.{rng.randint(0, 99):02d} at {rng.randint(1, 12)}:{rng.randint(0, 59):02d}.",
                f"About {rng.randint(1, 100)}% of the {rng.choice(_NOUNS_PL)} are {rng.choice(_ADJ)}.",
                f"Call {rng.randint(100, 999)}-{rng.randint(1000, 9999)} (or {n + 1}) now!",
            ]
        )
    elif r < 0.82:
        who = rng.choice(_NAMES)
        s = f'{who} said, "{_clause(rng).capitalize()}!" and {rng.choice(_VERB_INTR)}.'
    elif r < 0.92:
        s = f"{rng.choice(_NAMES)}'s {rng.choice(_NOUN)} - {rng.choice(_ADJ)}, {rng.choice(_ADJ)} and {rng.choice(_ADJ)}: {_clause(rng)}."
    else:
        s = f"{_clause(rng).capitalize()} {rng.choice(_PREP)} {rng.choice(_EXTRA)} {rng.choice(_EXTRA)}."
    return s


@functools.lru_cache(maxsize=None)
def _corpus(n_paragraphs: int, seed: int) -> Tuple[str, ...]:
    rng = random.Random(seed)
    paragraphs = []
    for _ in range(n_paragraphs):
        sents = [_sentence(rng) for _ in range(rng.randint(2, 6))]
        text = ""
        for i, s in enumerate(sents):
            if i:
                text += rng.choice([" ", " ", " ", "  ", "\n"])
            text += s
        if rng.random() < 0.2:
            text = "  " + text  # some leading indentation
        paragraphs.append(text)
    # A few fixed lines so some edge characters are guaranteed to be present.
    paragraphs += [
        "The café in Zürich is naïve about 日本 and 東京 😀.",
        "Hello, world! 0123456789 (a) [b] {c} <d> #e @f &g *h +i =j ~k ^l |m /n \\o `p _q",
        "Tabs\tand\ttabs.\nNew line.\n\nTwo new lines.",
    ]
    return tuple(paragraphs)


def make_corpus(n_paragraphs: int = 200, seed: int = 0) -> List[str]:
    """Deterministic synthetic English corpus (list of paragraphs; ~700 sentences).

    Paragraphs contain ordinary words, digits, punctuation, single/double spaces,
    newlines, and some non-ASCII text ("café", "naïve", "日本", "😀", ...).
    """
    return list(_corpus(n_paragraphs, seed))


# ---------------------------------------------------------------------------
# Tokenizers
# ---------------------------------------------------------------------------


def _model_vocab_and_merges(tk: Tokenizer):
    """(vocab dict, merges list of (a, b)) of a trained BPE ``Tokenizer``."""
    m = json.loads(tk.to_str())["model"]
    merges = [tuple(x) if isinstance(x, list) else tuple(x.split(" ", 1)) for x in m["merges"]]
    return dict(m["vocab"]), merges


@functools.lru_cache(maxsize=None)
def _bytelevel_json(vocab_size: int) -> str:
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=BYTELEVEL_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator(make_corpus(), trainer=trainer)
    tk.post_processor = processors.ByteLevel(trim_offsets=False)
    return tk.to_str()


_BYTELEVEL_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_SP_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] + '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


def _wrap(tk: Tokenizer, *, bos: str, eos: str, unk: str, pad: str, specials, add_bos: bool,
          chat_template) -> PreTrainedTokenizerFast:
    """A transformers tokenizer around ``tk`` with the given special tokens (no EOS appended, no clean-up)."""
    extra = {"additional_special_tokens": specials} if specials else {}
    extra |= {"chat_template": chat_template} if chat_template else {}
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token=bos, eos_token=eos, unk_token=unk, pad_token=pad,
                                   add_bos_token=add_bos, add_eos_token=False, clean_up_tokenization_spaces=False,
                                   model_max_length=2048, **extra)


def make_bytelevel_tokenizer(vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """GPT-2 / SmolLM2 style byte-level BPE (``len(tok) == vocab_size``).

    ids 0..3 are ``<|endoftext|>`` (bos/eos/unk), ``<|im_start|>``, ``<|im_end|>``,
    ``<|pad|>``; then the 256 byte characters; then merges. No BOS is added.
    """
    tk = Tokenizer.from_str(_bytelevel_json(vocab_size))
    return _wrap(tk, bos="<|endoftext|>", eos="<|endoftext|>", unk="<|endoftext|>", pad="<|pad|>",
                 specials=["<|im_start|>", "<|im_end|>"], add_bos=False, chat_template=_BYTELEVEL_CHAT_TEMPLATE)


# Characters the SentencePiece-style tokenizer may learn; everything else
# (newline, tab, CJK, emoji, ...) is left to byte fallback.
def _sp_char_ok(c: str) -> bool:
    return (" " <= c <= "~") or c in "éïü"


@functools.lru_cache(maxsize=None)
def _sentencepiece_json(vocab_size: int) -> str:
    n_fixed = len(SENTENCEPIECE_SPECIALS) + 256
    if vocab_size <= n_fixed + 100:
        raise ValueError(f"vocab_size must be > {n_fixed + 100} for the sentencepiece style")
    lines = []
    for para in make_corpus():
        for line in para.split("\n"):
            line = "".join(c for c in line if _sp_char_ok(c))
            if line:
                lines.append(line)

    normalizer = normalizers.Replace(" ", SPIECE_UNDERLINE)
    pre_tok = pre_tokenizers.Split(SPIECE_UNDERLINE, behavior="merged_with_next")

    tr = Tokenizer(models.BPE())
    tr.normalizer = normalizer
    tr.pre_tokenizer = pre_tok
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - n_fixed, min_frequency=2, special_tokens=[], show_progress=False
    )
    tr.train_from_iterator(lines, trainer=trainer)
    learned, merges = _model_vocab_and_merges(tr)

    vocab = {}
    for t in SENTENCEPIECE_SPECIALS:
        vocab[t] = len(vocab)
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for t, _ in sorted(learned.items(), key=lambda kv: kv[1]):
        if t not in vocab:
            vocab[t] = len(vocab)

    tk = Tokenizer(
        models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True)
    )
    tk.normalizer = normalizer
    tk.pre_tokenizer = pre_tok
    tk.decoder = decoders.Sequence(
        [decoders.Replace(SPIECE_UNDERLINE, " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    tk.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SENTENCEPIECE_SPECIALS])
    bos_id = vocab["<bos>"]
    tk.post_processor = processors.TemplateProcessing(
        single="<bos>:0 $A:0", pair="<bos>:0 $A:0 <bos>:1 $B:1", special_tokens=[("<bos>", bos_id)]
    )
    return tk.to_str()


def make_sentencepiece_tokenizer(vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """Gemma-3 style SentencePiece-BPE with byte fallback (``len(tok) == vocab_size``).

    ids: 0 ``<pad>``, 1 ``<eos>``, 2 ``<bos>``, 3 ``<unk>``, 4 ``<start_of_turn>``,
    5 ``<end_of_turn>``, 6..261 ``<0x00>``..``<0xFF>``, then learned pieces.
    ``<bos>`` is prepended automatically (``add_special_tokens=True``).
    """
    tk = Tokenizer.from_str(_sentencepiece_json(vocab_size))
    return _wrap(tk, bos="<bos>", eos="<eos>", unk="<unk>", pad="<pad>", specials=["<start_of_turn>", "<end_of_turn>"],
                 add_bos=True, chat_template=_SP_CHAT_TEMPLATE)


@functools.lru_cache(maxsize=None)
def _plain_json(vocab_size: int) -> str:
    tk = Tokenizer(models.BPE(unk_token="[UNK]", fuse_unk=False))
    # whitespace runs, letter runs, digit runs and other symbols are separate pre-tokens
    tk.pre_tokenizer = pre_tokenizers.Split(
        Regex(r"\s+|[^\W\d_]+|\d+|[^\w\s]+|_+"), behavior="isolated"
    )
    tk.decoder = decoders.Fuse()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=PLAIN_SPECIALS, show_progress=False
    )
    tk.train_from_iterator(make_corpus(), trainer=trainer)
    tk.post_processor = processors.TemplateProcessing(
        single="[BOS]:0 $A:0", pair="[BOS]:0 $A:0 $B:1", special_tokens=[("[BOS]", 1)]
    )
    return tk.to_str()


def make_plain_tokenizer(vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """Plain BPE, no marker characters (token string == its text), ``[BOS]`` prepended.

    ids: 0 ``[PAD]``, 1 ``[BOS]``, 2 ``[EOS]``, 3 ``[UNK]``. Characters not seen in
    training (e.g. most emoji) become ``[UNK]``, so round trips are lossy for them.
    """
    tk = Tokenizer.from_str(_plain_json(vocab_size))
    return _wrap(tk, bos="[BOS]", eos="[EOS]", unk="[UNK]", pad="[PAD]", specials=None, add_bos=True,
                 chat_template=None)


def make_tokenizer(style: str, vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """Dispatch on ``style`` in :data:`STYLES`."""
    if style == "bytelevel":
        return make_bytelevel_tokenizer(vocab_size)
    if style == "sentencepiece":
        return make_sentencepiece_tokenizer(vocab_size)
    if style == "plain":
        return make_plain_tokenizer(vocab_size)
    raise ValueError(f"unknown tokenizer style {style!r}; expected one of {STYLES}")


def decoded_vocab(tokenizer, skip_special: bool = True) -> dict:
    """``{id: tokenizer.decode([id])}`` for every id (special/added-special ids skipped)."""
    special = set(tokenizer.all_special_ids) if skip_special else set()
    return {
        i: tokenizer.decode([i], clean_up_tokenization_spaces=False)
        for i in range(len(tokenizer))
        if i not in special
    }


def common_decoded_strings(tok_a, tok_b) -> set:
    """Set of strings that some non-special token of each tokenizer decodes to."""
    return set(decoded_vocab(tok_a).values()) & set(decoded_vocab(tok_b).values())


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------


def make_tiny_llama(
    tokenizer,
    seed: int,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int = 64,
    max_position_embeddings: int = 512,
    init_std: float = 0.2,
    embed_std: float = 1.0,
    logit_scale: float = 4.0,
) -> LlamaForCausalLM:
    """Random tiny ``LlamaForCausalLM`` (float32, eval mode) matching ``tokenizer``.

    Weights are a pure function of ``seed`` and the shapes: every parameter is
    re-drawn from a ``torch.Generator(seed)`` in ``named_parameters`` order
    (norm weights = 1). Linear layers use std ``init_std``, embeddings
    ``embed_std`` and ``lm_head`` std ``logit_scale / sqrt(hidden_size)`` so that
    logits have std ~``logit_scale`` (peaked, non-trivial greedy decoding).
    """
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings,
        initializer_range=init_std,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        attention_bias=False,
        mlp_bias=False,
    )
    try:
        config.dtype = torch.float32
    except Exception:  # pragma: no cover - older transformers
        config.torch_dtype = torch.float32

    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.to(torch.float32)

    gen = torch.Generator().manual_seed(seed)
    head_std = logit_scale / hidden_size**0.5
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * embed_std)
            elif name.startswith("lm_head"):
                p.copy_(torch.randn(p.shape, generator=gen) * head_std)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * init_std)

    gc = model.generation_config
    gc.bos_token_id = tokenizer.bos_token_id
    gc.eos_token_id = tokenizer.eos_token_id
    gc.pad_token_id = tokenizer.pad_token_id
    gc.do_sample = False
    for attr in ("temperature", "top_p", "top_k"):
        if hasattr(gc, attr):
            setattr(gc, attr, None)
    model.eval()
    return model


def make_tiny_sliding(tokenizer, window: int, seed: int = 0) -> Gemma3ForCausalLM:
    """Random tiny Gemma-3 (a sliding-window layer of ``window`` slots, then a full-attention layer), fp32, eval mode:
    for the cache's layout around sliding windows."""
    config = Gemma3TextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=window,
                              layer_types=["sliding_attention", "full_attention"], max_position_embeddings=256,
                              pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = Gemma3ForCausalLM(config).to(torch.float32).eval()
    with torch.no_grad():
        for p in model.parameters():  # larger than the default init, so that logits differ visibly
            p.normal_(0.0, 0.3)
    return model


NLLB_LANGUAGES = ["eng_Latn", "deu_Latn", "ron_Latn"]


@functools.lru_cache(maxsize=None)
def _nllb_vocab_and_merges(vocab_size: int):
    lines = [line for para in make_corpus() for line in para.split("\n") if line]
    tr = Tokenizer(models.BPE(unk_token="<unk>"))
    tr.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SPIECE_UNDERLINE, prepend_scheme="always", split=True)
    n_special = 5 + len(NLLB_LANGUAGES)  # <s> <pad> </s> <unk> + <mask> and the language codes, added after
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - n_special + 4, min_frequency=2,
                                  special_tokens=["<s>", "<pad>", "</s>", "<unk>"], show_progress=False)
    tr.train_from_iterator(lines, trainer=trainer)
    return _model_vocab_and_merges(tr)


def make_nllb_tokenizer(vocab_size: int = 512) -> NllbTokenizer:
    """NLLB-style tokenizer (transformers' ``NllbTokenizer``) over a BPE trained on the synthetic corpus.

    ids: 0 ``<s>``, 1 ``<pad>``, 2 ``</s>``, 3 ``<unk>``, then learned pieces with the ``▁`` word prefix, then
    ``<mask>`` and the language tokens (special). Encoding a source gives ``[eng_Latn] + pieces + [</s>]``
    (``src_lang``); characters outside the learned alphabet (newline) become ``<unk>``.
    """
    vocab, merges = _nllb_vocab_and_merges(vocab_size)
    return NllbTokenizer(vocab=dict(vocab), merges=list(merges), extra_special_tokens=list(NLLB_LANGUAGES),
                         src_lang="eng_Latn", model_max_length=1024)


def make_tiny_m2m100(tokenizer, seed: int, d_model: int = 32, layers: int = 2, heads: int = 4, ffn: int = 64,
                     max_position_embeddings: int = 512, init_std: float = 0.2, embed_std: float = 1.0,
                     logit_scale: float = 4.0) -> M2M100ForConditionalGeneration:
    """Random tiny ``M2M100ForConditionalGeneration`` (NLLB's architecture, float32, eval) for ``tokenizer``.

    Weights are a pure function of ``seed`` and the shapes (as ``make_tiny_llama``). Unlike NLLB, the output layer
    is not tied to the input embeddings: a random tied model just repeats its last input token (the residual stream
    carries that token's embedding), which makes dull tests.
    """
    config = M2M100Config(
        vocab_size=len(tokenizer), d_model=d_model, encoder_layers=layers, decoder_layers=layers,
        encoder_attention_heads=heads, decoder_attention_heads=heads, encoder_ffn_dim=ffn, decoder_ffn_dim=ffn,
        max_position_embeddings=max_position_embeddings, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
        encoder_layerdrop=0.0, decoder_layerdrop=0.0, scale_embedding=True, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.eos_token_id, tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = M2M100ForConditionalGeneration(config).to(torch.float32)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            elif name.startswith("lm_head"):
                p.copy_(torch.randn(p.shape, generator=gen) * logit_scale / d_model**0.5)
            elif "shared" in name or "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * embed_std)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * init_std)
    gc = model.generation_config
    gc.decoder_start_token_id = tokenizer.eos_token_id
    gc.bos_token_id = tokenizer.bos_token_id
    gc.eos_token_id = tokenizer.eos_token_id
    gc.pad_token_id = tokenizer.pad_token_id
    gc.do_sample = False
    model.eval()
    return model


def build_seq2seq_member(tmpdir, seed: int = 2, d_model: int = 32, name: str = "nllb", vocab_size: int = 512,
                         **model_kwargs) -> str:
    """Build the NLLB-style tokenizer + tiny M2M100 and save them to ``tmpdir/name``; returns the directory."""
    tok = make_nllb_tokenizer(vocab_size)
    model = make_tiny_m2m100(tok, seed=seed, d_model=d_model, **model_kwargs)
    return save_member(os.path.join(os.fspath(tmpdir), name), tok, model)


def save_member(dirpath, tokenizer, model) -> str:
    """``save_pretrained`` tokenizer and model into ``dirpath``; returns ``str(dirpath)``."""
    dirpath = os.fspath(dirpath)
    os.makedirs(dirpath, exist_ok=True)
    tokenizer.save_pretrained(dirpath)
    model.save_pretrained(dirpath)
    return dirpath


def load_member(dirpath):
    """``(AutoTokenizer, AutoModelForCausalLM)`` loaded from ``dirpath`` (float32, eval)."""
    tok = AutoTokenizer.from_pretrained(dirpath)
    model = AutoModelForCausalLM.from_pretrained(dirpath, dtype=torch.float32)
    model.eval()
    return tok, model


def build_member(
    tmpdir,
    style: str,
    seed: int,
    hidden_size: int = 32,
    name: Optional[str] = None,
    vocab_size: int = 512,
    **model_kwargs,
) -> str:
    """Build tokenizer (``style``) + tiny Llama (``seed``, ``hidden_size``) and save to
    ``tmpdir/<name or f"{style}-s{seed}-h{hidden_size}">``. Returns the directory path."""
    tok = make_tokenizer(style, vocab_size)
    model = make_tiny_llama(tok, seed=seed, hidden_size=hidden_size, **model_kwargs)
    name = name or f"{style}-s{seed}-h{hidden_size}"
    return save_member(os.path.join(os.fspath(tmpdir), name), tok, model)


def build_pair(tmpdir) -> Tuple[str, str]:
    """Two heterogeneous members: ``(bytelevel_dir, sentencepiece_dir)``.

    bytelevel: seed 0, hidden 32; sentencepiece: seed 1, hidden 48.
    """
    a = build_member(tmpdir, "bytelevel", seed=0, hidden_size=32, name="bytelevel")
    b = build_member(tmpdir, "sentencepiece", seed=1, hidden_size=48, name="sentencepiece")
    return a, b
