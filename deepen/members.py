"""Members of an ensemble: a causal LM (or an encoder-decoder model) and its tokenizer, loaded once from any source
(``deepen.sources``: an embedded demo name, a GGUF file, a checkpoint directory or a hub id).

Encoder-decoder checkpoints (``config.is_encoder_decoder``: NLLB, M2M100, Marian, T5) load as sequence-to-sequence
models. Such a *specialist* member reads a source text with its encoder and the ensemble's output so far with its
decoder: ``Member.encode_source``, ``Member.decoder_prefix`` and ``Member.encode_target`` say how, including the
language tokens of multilingual translators (NLLB's "deu_Latn", M2M100's "__de__").
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch

from deepen.errors import DeepenError, first_line
from deepen.fingerprint import fingerprint
from deepen.languages import flores_code
from deepen.memory import limit_heap_retention, release_freed_memory
from deepen.sources import locate


def resolve_dtype(dtype: str | torch.dtype | None, device: str) -> torch.dtype:
    """fp32 on CPU and bf16 on GPU unless asked otherwise."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in table:
        raise DeepenError(f"unknown dtype {dtype!r}; use one of: auto, {', '.join(sorted(table))}")
    return table[dtype]


def resolve_device(device: str | None) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'; any other device is checked here, before a model loads."""
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise DeepenError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise DeepenError(f"device {device!r}: no CUDA GPU is visible to this process (use --device cpu or auto)")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise DeepenError(f"device {device!r}: only {torch.cuda.device_count()} CUDA GPU(s) are visible")
    elif parsed.type != "cpu":
        raise DeepenError(f"device {device!r} is not supported; use auto, cpu, cuda or cuda:N")
    return device


def check_vocabulary(tokenizer, source: str) -> None:
    """Refuse a tokenizer with no ordinary tokens (only special tokens, or nothing at all): no anchors, no text."""
    vocab = tokenizer.get_vocab()
    special = {int(i) for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items() if t.special}
    ordinary = sum(1 for i in vocab.values() if int(i) not in special)
    if ordinary == 0:
        raise DeepenError(f"the tokenizer of {source!r} has no vocabulary ({len(vocab)} tokens, all special); "
                          "its tokenizer files are empty or broken")


def is_encoder_decoder(model_or_config) -> bool:
    """Whether a model (or its config) is an encoder-decoder (sequence-to-sequence) model."""
    config = getattr(model_or_config, "config", model_or_config)
    return bool(getattr(config, "is_encoder_decoder", False))


def auto_model_class(target: str, trust_remote_code: bool = False):
    """The transformers auto class that loads ``target``: AutoModelForSeq2SeqLM for encoder-decoder checkpoints,
    AutoModelForCausalLM otherwise (also when the config cannot be read here: the load then reports the problem)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    try:
        config = AutoConfig.from_pretrained(target, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError):
        return AutoModelForCausalLM
    return AutoModelForSeq2SeqLM if is_encoder_decoder(config) else AutoModelForCausalLM


def context_window(model) -> int | None:
    """The longest sequence ``model`` reads (``max_position_embeddings`` of its text config), None when unknown."""
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    n = getattr(cfg, "max_position_embeddings", None)
    return int(n) if n else None


@dataclass
class Member:
    """One model of the ensemble: a causal LM (or an encoder-decoder model), its tokenizer, and how it reads text.

    Attributes:
        name: short display name (used in tables and column names).
        model: a transformers causal LM, or a sequence-to-sequence model (``seq2seq``), in eval mode.
        tokenizer: its tokenizer.
        source: where it came from (embedded name, path or hub id).
        chat_template: wrap prompts in the tokenizer's chat template (off by default, as in the paper).
        src_lang / tgt_lang: default source and target languages of an encoder-decoder translator ("en", "de", or the
            model's own code such as "deu_Latn"), used where a prompt row names none.
    """

    name: str
    model: torch.nn.Module
    tokenizer: object
    source: str = ""
    chat_template: bool = False
    src_lang: str | None = None
    tgt_lang: str | None = None
    _fingerprint: str | None = field(default=None, repr=False)

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    @property
    def vocab_size(self) -> int:
        """Rows of the output layer (can exceed len(tokenizer) when the checkpoint pads its vocabulary)."""
        return self.model.get_output_embeddings().weight.shape[0]

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = fingerprint(self.tokenizer, self.model)
        return self._fingerprint

    @property
    def eos_ids(self) -> frozenset[int]:
        """Every id that ends a sequence for this member: the tokenizer's EOS and the generation config's."""
        ids = set()
        if self.tokenizer.eos_token_id is not None:
            ids.add(int(self.tokenizer.eos_token_id))
        gen = getattr(self.model, "generation_config", None)
        eos = getattr(gen, "eos_token_id", None) if gen is not None else None
        if eos is not None:
            ids.update(int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]))
        return frozenset(ids)

    @property
    def seq2seq(self) -> bool:
        """An encoder-decoder member: its encoder reads a source text, its decoder the generated text."""
        return is_encoder_decoder(self.model)

    def language_token(self, lang: str | None) -> str | None:
        """The vocabulary token that names language ``lang`` for this member, or None when it has none.

        ``lang`` is an ISO 639-1 code ("de") or already the member's own code. Tried in order, among the special
        tokens only (a code such as "en" is also an ordinary subword): its FLORES-200 code (NLLB: "deu_Latn"), the
        M2M100 form "__de__", and ``lang`` itself. A multilingual translator (a tokenizer with a ``src_lang``) that
        knows none of them is an error: decoding without the language token would translate into whatever language
        the model guesses.
        """
        if not lang:
            return None
        tok = self.tokenizer
        special = set(tok.all_special_tokens) | {t.content for t in tok.added_tokens_decoder.values() if t.special}
        for candidate in (flores_code(lang), f"__{lang}__", lang):
            if candidate and candidate in special:
                return candidate
        if hasattr(self.tokenizer, "src_lang"):
            raise DeepenError(f"member {self.name!r} has no language token for {lang!r} (tried "
                              f"{flores_code(lang)!r}, '__{lang}__', {lang!r})")
        return None

    def encode_source(self, texts: list[str], langs: list[str | None] | None = None) -> list[list[int]]:
        """Encoder ids of an encoder-decoder member for each source text, with the source language's token where
        the tokenizer uses one (NLLB: [eng_Latn] + text + [</s>]); rows are grouped by language because the
        tokenizer's ``src_lang`` is a setting, restored afterwards."""
        langs = list(langs) if langs is not None else [None] * len(texts)
        langs = [lang or self.src_lang for lang in langs]
        tok = self.tokenizer
        out: list[list[int] | None] = [None] * len(texts)
        for lang in dict.fromkeys(langs):
            rows = [i for i, x in enumerate(langs) if x == lang]
            code = self.language_token(lang)
            previous = getattr(tok, "src_lang", None)
            if code is not None and hasattr(tok, "src_lang"):
                # M2M100's tokenizer takes the bare code ("de") and adds the underscores itself
                bare = code[2:-2] if code.startswith("__") and code.endswith("__") else code
                tok.src_lang = bare if hasattr(tok, "get_lang_token") else code
            try:
                ids = tok([texts[i] for i in rows], add_special_tokens=True)["input_ids"]
            finally:
                if code is not None and hasattr(tok, "src_lang") and previous is not None:
                    tok.src_lang = previous
            for i, row in zip(rows, ids):
                out[i] = list(row)
        return out

    def decoder_prefix(self, lang: str | None = None) -> list[int]:
        """The ids an encoder-decoder member's decoder starts from: its decoder start token, then the target
        language's token where the model has one (NLLB and M2M100 force it as the first generated token)."""
        config = self.model.config
        gen = getattr(self.model, "generation_config", None)
        start = getattr(config, "decoder_start_token_id", None)
        if start is None and gen is not None:
            start = getattr(gen, "decoder_start_token_id", None)
        if start is None:
            start = config.pad_token_id if config.pad_token_id is not None else self.tokenizer.bos_token_id
        if start is None:
            raise DeepenError(f"member {self.name!r}: an encoder-decoder model without a decoder start token")
        prefix = [int(start)]
        code = self.language_token(lang or self.tgt_lang)
        if code is not None:
            prefix.append(int(self.tokenizer.convert_tokens_to_ids(code)))
        elif hasattr(self.tokenizer, "src_lang"):
            raise DeepenError(f"member {self.name!r} translates into many languages: give a target language "
                              "(the task's, or tgt_lang)")
        return prefix

    def encode_target(self, texts: list[str]) -> list[list[int]]:
        """Decoder ids (after ``decoder_prefix``) of an encoder-decoder member for the text generated so far.

        Leading whitespace is dropped: the text continues a prompt such as "German:" for the decoder-only members,
        while a translator's target starts at its first word (SentencePiece adds the word-initial '▁' itself).
        """
        if not texts:
            return []
        return [list(r) for r in self.tokenizer([t.lstrip() for t in texts], add_special_tokens=False)["input_ids"]]

    def format_prompt(self, prompt: str) -> str:
        """The text this member sees for a user prompt (plain, or through its chat template)."""
        if not self.chat_template:
            return prompt
        if not getattr(self.tokenizer, "chat_template", None):
            raise DeepenError(f"member {self.name!r} has no chat template; turn chat_template off for it")
        return self.tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )


def _load_error(source: str, exc: Exception) -> DeepenError:
    """transformers' error (missing files, unknown hub id, offline, a refused checkpoint) as one line naming the model."""
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    return DeepenError(
        f"cannot load model {source!r}: {exc.__class__.__name__}: {first_line(exc)}"
        + (" (HF_HUB_OFFLINE=1: only cached hub models load)" if offline else "")
    )


def compact_tokenizer(tokenizer) -> None:
    """Drop the Python copies of the vocabulary and merges that some transformers tokenizer classes keep after
    building their Rust backend from them (GemmaTokenizer, LlamaTokenizer: ~150 MB for a 262k vocabulary). They are
    constructor inputs only; encoding, decoding, ``get_vocab`` and ``save_pretrained`` use the backend."""
    if getattr(tokenizer, "_tokenizer", None) is None:
        return
    for attr in ("_vocab", "_merges"):
        if isinstance(getattr(tokenizer, attr, None), (dict, list)):
            setattr(tokenizer, attr, None)


def load_member(
    source: str,
    *,
    dtype: str | torch.dtype | None = "auto",
    device: str | None = "auto",
    device_map: str | dict | None = None,
    cache_dir: str | os.PathLike | None = None,
    chat_template: bool = False,
    name: str | None = None,
    trust_remote_code: bool = False,
    src_lang: str | None = None,
    tgt_lang: str | None = None,
) -> Member:
    """Load one member from an embedded name, a GGUF file, a checkpoint directory or a hub id.

    Args:
        dtype: "auto" (fp32 on CPU, bf16 on GPU), or "float32"/"bfloat16"/"float16".
        device: "auto", "cpu", "cuda", "cuda:1"...; ignored when ``device_map`` is given.
        device_map: passed to transformers for models that need several GPUs ("auto").
        cache_dir: where GGUF files are materialised (default ``$DEEPEN_HOME`` or ``~/.cache/deepen``).
        trust_remote_code: allow a hub model's own modelling code (InternLM, Skywork need it).
        src_lang / tgt_lang: default languages of an encoder-decoder translator (see ``Member``).

    Encoder-decoder checkpoints (``config.is_encoder_decoder``) load with AutoModelForSeq2SeqLM.
    """
    from transformers import AutoTokenizer

    display, target = locate(source, cache_dir)
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(target, trust_remote_code=trust_remote_code)
    except (ValueError, TypeError) as exc:  # no tokenizer files, or files transformers cannot turn into a tokenizer
        raise DeepenError(f"cannot load the tokenizer of {source!r}: {first_line(exc)} (a model directory "
                          "needs tokenizer.json, tokenizer.model or vocab.json + merges.txt)") from exc
    except OSError as exc:
        raise _load_error(source, exc) from exc
    check_vocabulary(tokenizer, source)
    compact_tokenizer(tokenizer)
    limit_heap_retention()
    try:
        kwargs = {"dtype": torch_dtype, "trust_remote_code": trust_remote_code}
        if device_map is not None:
            kwargs["device_map"] = device_map
        model = auto_model_class(target, trust_remote_code).from_pretrained(target, **kwargs)
    except (OSError, ValueError, pickle.UnpicklingError) as exc:  # missing files, offline, or refused: remote code,
        raise _load_error(source, exc) from exc  # a pickled checkpoint holding more than tensors
    if device_map is None:
        model.to(device)
    model.eval()
    meta = Path(target) / "deepen.json"
    fp = json.loads(meta.read_text()).get("fingerprint") if meta.is_file() else None
    release_freed_memory()
    return Member(name=name or display, model=model, tokenizer=tokenizer, source=str(source),
                  chat_template=chat_template, src_lang=src_lang, tgt_lang=tgt_lang, _fingerprint=fp)


def context_error(members: list[Member], prompt: str, max_new_tokens: int, source: str | None = None,
                  src_lang: str | None = None, tgt_lang: str | None = None) -> str | None:
    """Why ``prompt`` cannot be decoded for ``max_new_tokens`` tokens within every member's context window, or None.

    A member reads its prompt plus all generated tokens but the last, so a prompt of n tokens fits a window of W when
    n + max_new_tokens - 1 <= W. Assistants are checked on their own encoding of the prompt with the main model's
    budget (their encoding of the continuation may differ; ``deepen.sync`` then raises ``ContextWindowError``).
    An encoder-decoder member reads ``source`` (default: the prompt) with its encoder and only its decoder prefix and
    the generated tokens with its decoder; both must fit.
    """
    for member in members:
        window = context_window(member.model)
        if window is None:
            continue
        if member.seq2seq:
            n = len(member.encode_source([source if source is not None else prompt], [src_lang])[0])
            if n > window:
                return f"source of {n} tokens exceeds the context window of {window} tokens of {member.name}"
            n = len(member.decoder_prefix(tgt_lang))
            if n + max_new_tokens - 1 > window:
                return (f"{max_new_tokens} new tokens exceed the decoder's context window of {window} tokens of "
                        f"{member.name}")
            continue
        n = len(member.tokenizer(member.format_prompt(prompt), add_special_tokens=True)["input_ids"])
        if n + max_new_tokens - 1 > window:
            return (f"prompt of {n} tokens + {max_new_tokens} new tokens exceeds the context window of {window} "
                    f"tokens of {member.name}")
    return None
