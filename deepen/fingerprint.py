"""A member's fingerprint: what every cache derived for it depends on.

Anchors and relative representations depend on exactly two things of a member, its vocabulary and its input
embedding matrix, so a cache keyed by the fingerprints of its members is invalidated by a changed model and by
nothing else.
"""

from __future__ import annotations

import hashlib
import json

import torch

from deepen.row_order import vocabulary_order


def fingerprint(tokenizer, model) -> str:
    """sha256 (first 16 hex digits) over the tokenizer's vocabulary (pieces, ids, special flags) and the input
    embedding matrix, hashed in token order whatever the order of its rows (``deepen.row_order``)."""
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
