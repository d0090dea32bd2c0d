"""Embedded models come from third-party packages: their bytes are located without importing them and accepted only
with the recorded size and sha256 (deepen.embedded)."""

import hashlib
import sys

import pytest

from deepen import embedded
from deepen.embedded import EmbeddedModel, embedded_gguf, embedded_name
from deepen.errors import DeepenError


def _chunk_packages(root, parts: list[bytes], prefix="fakechunk"):
    for i, data in enumerate(parts, start=1):
        pkg = root / f"{prefix}{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("raise RuntimeError('a chunk package must never be imported')\n")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(data)
    return [(f"{prefix}{i}", f"data/part{i:02d}.bin") for i in range(1, len(parts) + 1)]


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """Register a model in three chunk packages on sys.path; returns (name, its bytes, the spec's maker)."""
    parts = [b"GGUF" + bytes(range(200)), bytes(300), b"tail"]
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    layout = _chunk_packages(tmp_path / "site", parts)
    whole = b"".join(parts)

    def register(size=len(whole), digest=hashlib.sha256(whole).hexdigest()):
        spec = EmbeddedModel("fake-1m", ("fake",), "fake.gguf", size, digest, tuple(layout), "pip install fake",
                             "MIT", "nowhere")
        monkeypatch.setitem(embedded.EMBEDDED, "fake-1m", spec)
        return spec

    return whole, register


def test_chunks_are_assembled_verified_and_never_imported(fake, tmp_path):
    whole, register = fake
    register()
    path = embedded_gguf("fake-1m", tmp_path / "cache")
    assert path.read_bytes() == whole
    assert not any(m.startswith("fakechunk") for m in sys.modules)
    assert embedded_gguf("fake-1m", tmp_path / "cache") == path  # verified again and reused
    assert embedded_name("FAKE") == "fake-1m"


@pytest.mark.parametrize("change", ["size", "sha256"])
def test_bytes_that_do_not_match_are_refused(fake, tmp_path, change):
    whole, register = fake
    register(**({"size": len(whole) + 1} if change == "size" else {"digest": "0" * 64}))
    with pytest.raises(DeepenError, match="expected .* bytes with sha256") as err:
        embedded_gguf("fake-1m", tmp_path / "cache")
    assert "pip install --force-reinstall fake" in str(err.value)
    assert not (tmp_path / "cache" / "gguf" / "fake.gguf").exists()  # nothing half-written or unverified is kept


def test_a_missing_chunk_package_names_the_install_command(monkeypatch, tmp_path):
    spec = EmbeddedModel("gone-1m", (), "gone.gguf", 1, "0" * 64, (("no_such_chunk_pkg", "data/x.bin"),),
                         "pip install gone", "MIT", "nowhere")
    monkeypatch.setitem(embedded.EMBEDDED, "gone-1m", spec)
    with pytest.raises(DeepenError, match="not installed.*pip install gone"):
        embedded_gguf("gone-1m", tmp_path)


def test_the_registered_models_record_their_sizes_and_digests():
    for spec in embedded.EMBEDDED.values():
        assert spec.size > 10**7 and len(spec.sha256) == 64 and spec.parts and spec.licence
    assert {"smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"} <= set(embedded.EMBEDDED)
