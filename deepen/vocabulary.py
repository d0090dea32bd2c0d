"""Vocabulary normalisation: every token id -> the bytes of text it stands for.

Tokenizers spell the same text differently: byte-level BPE writes " the" as 'Ġthe' and a newline as 'Ċ',
SentencePiece writes '▁the' and, with byte fallback, '<0x0A>'. Anchors (the next module) are matched on the text a
token decodes to, so we map each token to its UTF-8 *bytes* (bytes, not str: a byte-fallback token or a byte-level
piece can be a fragment of a multi-byte character, and fragments must still match each other exactly).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache

import pyarrow as pa

_BYTE_PIECE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


@lru_cache(maxsize=1)
def byte_level_alphabet() -> dict[str, int]:
    """GPT-2's byte-level alphabet: the printable character standing for each byte (e.g. 'Ġ' -> 0x20)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1)
    )
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


def tokenizer_style(tokenizer) -> str:
    """'bytelevel', 'sentencepiece' or 'plain', read from the fast tokenizer's decoder (vocabulary as fallback)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        decoder = json.dumps(json.loads(backend.to_str()).get("decoder"))
        if '"ByteLevel"' in decoder:
            return "bytelevel"
        if '"ByteFallback"' in decoder or '"Metaspace"' in decoder or "\\u2581" in decoder or "▁" in decoder:
            return "sentencepiece"
        return "plain"
    pieces = tokenizer.get_vocab()
    if any(p.startswith("▁") for p in pieces):
        return "sentencepiece"
    if any(p.startswith("Ġ") for p in pieces):
        return "bytelevel"
    return "plain"


def piece_bytes(piece: str, style: str) -> tuple[bytes, str]:
    """The bytes a vocabulary piece stands for, and its kind ('normal' or 'byte')."""
    if style == "bytelevel":
        alphabet = byte_level_alphabet()
        if all(ch in alphabet for ch in piece):
            return bytes(alphabet[ch] for ch in piece), "normal"
        return piece.encode("utf-8"), "normal"
    m = _BYTE_PIECE.match(piece)
    if m:
        return bytes([int(m.group(1), 16)]), "byte"
    if style == "sentencepiece":
        return piece.replace("▁", " ").encode("utf-8"), "normal"
    return piece.encode("utf-8"), "normal"


@dataclass(frozen=True)
class Vocabulary:
    """A member's normalised vocabulary. Lists are indexed by token id.

    Attributes:
        style: 'bytelevel' | 'sentencepiece' | 'plain'.
        pieces: raw vocabulary strings.
        texts: the bytes each token stands for (b'' for special/control tokens).
        kinds: 'normal' | 'added' (non-special added token, literal text) | 'byte' (<0xNN>) | 'special'.
    """

    style: str
    pieces: list[str]
    texts: list[bytes]
    kinds: list[str]

    def __len__(self) -> int:
        return len(self.pieces)

    def to_table(self) -> pa.Table:
        """Parquet-ready table: id, piece, text (UTF-8, invalid bytes escaped), bytes, kind."""
        return pa.table(
            {
                "id": pa.array(range(len(self.pieces)), pa.int64()),
                "piece": pa.array(self.pieces, pa.string()),
                "text": pa.array([t.decode("utf-8", "backslashreplace") for t in self.texts], pa.string()),
                "bytes": pa.array(self.texts, pa.binary()),
                "kind": pa.array(self.kinds, pa.string()),
            },
            metadata={"style": self.style},
        )

    @classmethod
    def from_table(cls, table: pa.Table) -> "Vocabulary":
        style = (table.schema.metadata or {}).get(b"style", b"plain").decode()
        return cls(style, table["piece"].to_pylist(), table["bytes"].to_pylist(), table["kind"].to_pylist())


def normalise_vocabulary(tokenizer, size: int | None = None) -> Vocabulary:
    """Map every id of ``tokenizer`` (and padded output rows up to ``size``) to the bytes it stands for.

    Special and control tokens (BOS/EOS/PAD, chat markers, unused slots) are kind 'special' with empty text, so they
    never become anchors. Non-special added tokens hold literal text and are kept.
    """
    style = tokenizer_style(tokenizer)
    n = max(len(tokenizer), size or 0)
    pieces = [""] * n
    for piece, i in tokenizer.get_vocab().items():
        if i < n:
            pieces[i] = piece
    special = {int(i) for i in getattr(tokenizer, "all_special_ids", [])}
    added = {}
    for i, tok in tokenizer.added_tokens_decoder.items():
        if tok.special:
            special.add(int(i))
        else:
            added[int(i)] = tok.content
    texts, kinds = [], []
    for i, piece in enumerate(pieces):
        if i in special or piece == "":
            texts.append(b"")
            kinds.append("special")
        elif i in added:
            texts.append(added[i].encode("utf-8"))
            kinds.append("added")
        else:
            text, kind = piece_bytes(piece, style)
            texts.append(text)
            kinds.append(kind)
    return Vocabulary(style, pieces, texts, kinds)


#: Preference when a vocabulary holds the same text twice (Gemma has both '\n' and '<0x0A>'): the token a tokenizer
#: actually emits for that text is the ordinary one, not the byte fallback.
_KIND_RANK = {"normal": 0, "added": 1, "byte": 2}


def text_to_id(vocab: Vocabulary) -> dict[bytes, int]:
    """Each text of the vocabulary -> the token that stands for it (the ordinary one where several do)."""
    best: dict[bytes, tuple[int, int]] = {}
    for i, (text, kind) in enumerate(zip(vocab.texts, vocab.kinds)):
        if kind == "special" or not text:
            continue
        key = (_KIND_RANK[kind], i)
        if text not in best or key < best[text]:
            best[text] = key
    return {text: i for text, (_, i) in best.items()}
