"""Anchors: the tokens every member has, matched by the text they stand for.

One anchor = one byte string present in every member's normalised vocabulary, with one token id per member. All
members share one column order, so column ``a`` of every relative representation means the same text.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from deepen.errors import DeepenError
from deepen.vocabulary import Vocabulary, text_to_id

@dataclass(frozen=True)
class Anchors:
    """The anchor set of an ensemble.

    Attributes:
        texts: the bytes of each anchor, in column order.
        ids: [n_members, n_anchors] int64 token ids, row i for member i (main model first).
        members: member names, in row order.
    """

    texts: list[bytes]
    ids: np.ndarray
    members: list[str]

    def __len__(self) -> int:
        return len(self.texts)

    def to_table(self) -> pa.Table:
        cols = {
            "text": pa.array([t.decode("utf-8", "backslashreplace") for t in self.texts], pa.string()),
            "bytes": pa.array(self.texts, pa.binary()),
        }
        for i, name in enumerate(self.members):
            cols[f"id_{i}"] = pa.array(self.ids[i], pa.int64())
        return pa.table(cols, metadata={"members": "\t".join(self.members)})

    @classmethod
    def from_table(cls, table: pa.Table) -> "Anchors":
        members = (table.schema.metadata or {})[b"members"].decode().split("\t")
        ids = np.stack([table[f"id_{i}"].to_numpy() for i in range(len(members))]).astype(np.int64)
        return cls(table["bytes"].to_pylist(), ids, members)


def find_anchors(
    vocabularies: list[Vocabulary],
    members: list[str],
    *,
    min_anchors: int = 1000,
    max_anchors: int | None = None,
) -> Anchors:
    """Intersect the members' normalised vocabularies.

    Column order follows the main model's (first member's) token ids, which for BPE vocabularies also puts frequent
    strings first; ``max_anchors`` keeps the first ones in that order.

    Raises:
        DeepenError: fewer than ``min_anchors`` common strings (the relative space would be too coarse to fuse in).
    """
    if len(vocabularies) != len(members):
        raise ValueError("one vocabulary per member")
    maps = [text_to_id(v) for v in vocabularies]
    common = set(maps[0])
    for m in maps[1:]:
        common &= set(m)
    texts = sorted(common, key=lambda t: maps[0][t])
    shared = len(texts)
    if max_anchors is not None:
        if max_anchors < 1:
            raise DeepenError(f"max_anchors must be positive, got {max_anchors}")
        texts = texts[:max_anchors]
    if len(texts) < min_anchors:
        if len(texts) < shared:
            raise DeepenError(f"max_anchors {max_anchors} keeps {len(texts)} of the {shared} anchor tokens members "
                              f"{', '.join(members)} share, fewer than min_anchors ({min_anchors}); raise max_anchors")
        raise DeepenError(
            f"members {', '.join(members)} share only {shared} anchor tokens, fewer than the minimum of "
            f"{min_anchors}; DeePEn needs a common vocabulary to fuse in (lower min_anchors only if you know why)"
        )
    ids = np.array([[m[t] for t in texts] for m in maps], dtype=np.int64).reshape(len(maps), len(texts))
    return Anchors(texts, ids, list(members))
