"""Keeping members in sync: run a member on a batch of token sequences that change a little every step.

Every step the ensemble hands each member the token ids of what it should have read so far (main model: its prompt
ids plus the chosen tokens; assistant: its own re-encoding of the same text). ``CachedRunner`` keeps a KV cache and
only feeds what changed: it keeps the longest common prefix with the ids it already holds, rolls the cache back to
that prefix and feeds the new suffix (method.md §4). ``ReprefillRunner`` is the release's scheme (re-run the whole
sequence every step, one row at a time): slow, kept as the reference for tests and benchmarks.
``EncoderDecoderRunner`` does the same for an encoder-decoder member: its encoder reads each row's source once, its
decoder is resynchronised like ``CachedRunner`` (with its own batch layout, see the class).

Batch layout of ``CachedRunner``'s cache: each row is [left padding][its real tokens], all rows the same length.
Rows change by different amounts (an assistant's re-encoding may take back a token and feed two). The cache is cropped
by the largest amount any row must drop and every row re-feeds what it lost beyond its own need; a row that feeds
fewer tokens than the widest is padded on the left inside the chunk, so masked slots (holes) lie between its real
tokens and nothing is left to crop: the next step feeds one token per row again. Padding those rows on the right
instead would leave pads at the end that the next step must crop, which makes every other row re-feed, step after
step. A sliding-window layer counts cache slots, so holes inside its window would hide real tokens: with such layers
holes are used only while the whole cache fits in the window; beyond it a holey cache is re-read from scratch once
and chunks are padded on the right (those pads are cropped before the next forward).
"""

from __future__ import annotations

import inspect

import torch
from transformers import DynamicCache, EncoderDecoderCache

from deepen.errors import DeepenError
from deepen.members import context_window


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix of two id lists."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class ContextWindowError(DeepenError):
    """A row is longer than a member's context window (``Ensemble.generate`` turns it into an error row)."""


def check_length(ids: list[list[int]], max_len: int | None, what: str = "sequence") -> None:
    """Raise ContextWindowError when a row is longer than the model's context window ``max_len`` (None: unknown)."""
    if max_len is not None:
        for row in ids:
            if len(row) > max_len:
                raise ContextWindowError(
                    f"a {what} of {len(row)} tokens exceeds the model's context window of {max_len}")


class CachedRunner:
    """Runs one member over a batch with a KV cache, feeding only the ids that changed since the last call.

    Args:
        model: a transformers causal LM.
        pad_id: any valid id for padding slots (they are masked).
        rollback: prepare the cache for cropping (sliding-window layers must record their past to be cropped).
    """

    def __init__(self, model, pad_id: int, rollback: bool = True):
        self.model = model
        self.pad_id = int(pad_id)
        self.rollback = rollback
        self.device = model.get_input_embeddings().weight.device
        self.max_len = context_window(model)
        self.cache = None
        self.ids: list[list[int]] = []
        self.mask: torch.Tensor | None = None
        self.holes = False  # whether masked slots lie between real tokens (left padding inside a chunk)
        self.last_width = 0
        self.tokens_fed = 0  # counts real tokens fed (for benchmarks)

    def _new_cache(self):
        cache = DynamicCache(config=self.model.config)
        if self.rollback:
            cache.activate_past_recording()
        return cache

    def _has_sliding(self) -> bool:
        return any(getattr(layer, "is_sliding", False) for layer in getattr(self.cache, "layers", []))

    @torch.no_grad()
    def _forward(self, chunk: list[list[int]], chunk_mask: list[list[int]], positions: list[list[int]],
                 keep: int) -> torch.Tensor:
        """Feed a [B, W] chunk; return the logits of its last ``keep`` columns [B, keep, V] (fp32)."""
        inp = torch.tensor(chunk, dtype=torch.long, device=self.device)
        cmask = torch.tensor(chunk_mask, dtype=torch.long, device=self.device)
        self.mask = cmask if self.mask is None else torch.cat([self.mask, cmask], dim=1)
        pos = torch.tensor(positions, dtype=torch.long, device=self.device)
        out = self.model(input_ids=inp, attention_mask=self.mask, position_ids=pos, cache=self.cache, use_cache=True,
                         logits_to_keep=keep)
        self.last_width = len(chunk[0])
        self.tokens_fed += sum(sum(m) for m in chunk_mask)
        return out.logits[:, -keep:].float()

    def prefill(self, ids: list[list[int]]) -> torch.Tensor:
        """Start from scratch on ``ids`` (left padded); returns next-token logits [B, V]."""
        return self._prefill(ids, [len(r) - 1 for r in ids])[:, -1]

    def _prefill(self, ids: list[list[int]], start: list[int]) -> torch.Tensor:
        """Read ``ids`` from scratch (left padded); logits [B, K, V] of the last K positions, K covering every row's
        positions from ``start``."""
        check_length(ids, self.max_len)
        if any(len(r) == 0 for r in ids):
            raise DeepenError("empty prompt: a member got no tokens to read")
        self.cache = self._new_cache()
        self.mask = None
        width = max(len(r) for r in ids)
        chunk = [[self.pad_id] * (width - len(r)) + list(r) for r in ids]
        cmask = [[0] * (width - len(r)) + [1] * len(r) for r in ids]
        positions = [[0] * (width - len(r)) + list(range(len(r))) for r in ids]
        logits = self._forward(chunk, cmask, positions, width - min(s + width - len(r) for s, r in zip(start, ids)))
        self.ids = [list(r) for r in ids]
        self.holes = False
        return logits

    def step(self, ids: list[list[int]]) -> torch.Tensor:
        """Bring every row to ``ids`` (feeding only the changed suffix); returns next-token logits [B, V]."""
        return torch.stack([x[-1] for x in self.span(ids, [len(r) - 1 for r in ids])])

    def span(self, ids: list[list[int]], start: list[int]) -> list[torch.Tensor]:
        """Bring every row to ``ids`` (feeding the changed suffix, and at least the tokens from ``start[b]``); returns
        each row's logits at its positions start[b] .. len(ids[b]) - 1, [len - start, V] (what a verifier of a draft
        needs: its distribution after every token of the draft)."""
        if self.cache is None:
            return self._reread(ids, start)
        check_length(ids, self.max_len)
        # keep the common prefix, but always feed at least one token (and the tokens from `start`)
        keep = [min(common_prefix(old, new), len(new) - 1, s) for old, new, s in zip(self.ids, ids, start)]
        # per row, the cache slots after its last kept token (its real tokens are where the mask is 1)
        keep_t = torch.tensor(keep, device=self.mask.device)
        ends = (self.mask.cumsum(1) < keep_t[:, None]).sum(1) + (keep_t > 0)
        crop = self.mask.shape[1] - int(ends.min())
        if crop > self.last_width and self._has_sliding():
            # a sliding-window layer only recorded the last forward's states: roll back by re-reading from scratch
            return self._reread(ids, start)
        if self.rollback or crop:
            self.cache.crop(-crop)
        if crop:
            self.mask = self.mask[:, : self.mask.shape[1] - crop]
        # each row keeps the real tokens left in its slots and feeds the rest of its ids
        kept = self.mask.sum(1).tolist()
        width = max(len(new) - k for new, k in zip(ids, kept))
        holes = self._holes_fit(width)
        if self.holes and not holes:  # the window would pass over holes: re-read from scratch, compact
            return self._reread(ids, start)
        chunk, cmask, positions, need = [], [], [], []
        for new, first, s in zip(ids, kept, start):
            toks = new[first:]
            # left: masked slots between real tokens (holes), nothing to crop next step; right: pads to crop
            pads, right = (width - len(toks), 0) if holes else (0, width - len(toks))
            self.holes |= pads > 0
            chunk.append([self.pad_id] * pads + toks + [self.pad_id] * right)
            cmask.append([0] * pads + [1] * len(toks) + [0] * right)
            positions.append([0] * pads + list(range(first, first + len(toks))) + [first + len(toks)] * right)
            need.append((pads + s - first, pads + len(toks)))  # chunk columns of positions start .. end
        keep_cols = width - min(lo for lo, _ in need)
        logits = self._forward(chunk, cmask, positions, keep_cols)
        self.ids = [list(r) for r in ids]
        return [lg[lo - (width - keep_cols): hi - (width - keep_cols)] for lg, (lo, hi) in zip(logits, need)]

    def _reread(self, ids: list[list[int]], start: list[int]) -> list[torch.Tensor]:
        """``span`` by reading every row from scratch (a fresh cache)."""
        logits = self._prefill(ids, start)
        return [lg[lg.shape[0] - (len(r) - s):] for lg, r, s in zip(logits, ids, start)]

    def _holes_fit(self, width: int) -> bool:
        """Whether a chunk of ``width`` may be padded on the left (leaving masked holes between real tokens): always
        for full attention, which masks them exactly; with sliding-window layers only while the whole cache stays
        within the window, since a window counts cache slots and holes inside it would hide real tokens."""
        if not self._has_sliding():
            return True
        window = getattr(self.model.config, "sliding_window", None)
        return window is not None and self.mask.shape[1] + width <= window

    def select(self, rows: list[int]) -> None:
        """Keep only ``rows`` of the batch (finished rows leave)."""
        if self.cache is None or len(rows) == len(self.ids):
            return
        idx = torch.tensor(rows, dtype=torch.long, device=self.device)
        self.cache.batch_select_indices(idx)
        self.mask = self.mask[idx]
        self.ids = [self.ids[i] for i in rows]


class EncoderDecoderRunner:
    """Runs an encoder-decoder member over a batch: the encoder reads each row's source once (``encode``), the decoder
    reads ids that change a little every step, with a KV cache that keeps only what is still valid.

    Batch layout. Sequence-to-sequence decoders in transformers (BART, Marian, M2M100/NLLB) take their positions from
    the cache length and accept no position ids, so left padding would shift every real token of a shorter row. Rows
    are therefore RIGHT-padded, [real tokens][padding], every real token at its true position. To resynchronise, the
    self-attention cache is cropped to the shortest kept prefix of any row (slots before it hold real, still valid
    tokens of every row), each row feeds its ids from there, padded on the right, and those pads are cropped again
    before the next forward. A row that kept more than the shortest one re-feeds the difference: exact for every
    architecture at the price of a few extra decoder tokens. The encoder outputs and the cross-attention cache are
    computed once per batch and kept (cropping touches only the self-attention cache).

    Args:
        model: a transformers sequence-to-sequence model (``config.is_encoder_decoder``).
        pad_id: its padding id (masked; M2M100 also gives it no position).
        reprefill: the release's scheme as a reference: every step re-runs encoder and decoder on each row alone,
            without padding and without a cache.
    """

    def __init__(self, model, pad_id: int, reprefill: bool = False):
        self.model = model
        self.pad_id = int(pad_id)
        self.reprefill = reprefill
        self.device = model.get_input_embeddings().weight.device
        self.max_len = context_window(model)
        self.keeps_logits = "logits_to_keep" in inspect.signature(model.forward).parameters
        self.sources: list[list[int]] = []
        self.encoder_out = None  # BaseModelOutput with last_hidden_state [B, S, d]
        self.source_mask: torch.Tensor | None = None  # [B, S]
        self.cache = None
        self.ids: list[list[int]] = []
        self.tokens_fed = 0  # real decoder tokens fed (for benchmarks)

    @torch.no_grad()
    def encode(self, source_ids: list[list[int]]) -> None:
        """Run the encoder once on each row's source ids (right padded) and start the decoder afresh."""
        check_length(source_ids, self.max_len, "source")
        if any(len(r) == 0 for r in source_ids):
            raise DeepenError("empty source: an encoder-decoder member got no tokens to read")
        self.sources = [list(r) for r in source_ids]
        self.cache = None
        self.ids = []
        if self.reprefill:
            return
        width = max(len(r) for r in source_ids)
        inp = torch.tensor([list(r) + [self.pad_id] * (width - len(r)) for r in source_ids], device=self.device)
        self.source_mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in source_ids],
                                        dtype=torch.long, device=self.device)
        self.encoder_out = self.model.get_encoder()(input_ids=inp, attention_mask=self.source_mask, return_dict=True)

    def _new_cache(self):
        return EncoderDecoderCache(DynamicCache(), DynamicCache())

    @torch.no_grad()
    def _feed(self, ids: list[list[int]], start: int) -> torch.Tensor:
        """Feed ids[b][start:] of every row on top of a cache holding ``start`` valid slots; logits [B, V] (fp32)."""
        rows = [r[start:] for r in ids]
        width = max(len(r) for r in rows)
        chunk = torch.tensor([r + [self.pad_id] * (width - len(r)) for r in rows], device=self.device)
        mask = torch.tensor([[1] * (start + len(r)) + [0] * (width - len(r)) for r in rows], dtype=torch.long,
                            device=self.device)
        last = [len(r) - 1 for r in rows]
        kwargs = {}
        if self.keeps_logits:
            kwargs["logits_to_keep"] = width - min(last)
        out = self.model(encoder_outputs=self.encoder_out, attention_mask=self.source_mask, decoder_input_ids=chunk,
                         decoder_attention_mask=mask, cache=self.cache, use_cache=True, **kwargs)
        offset = width - out.logits.shape[1]
        idx = torch.tensor([i - offset for i in last], device=self.device)
        self.tokens_fed += sum(len(r) for r in rows)
        return out.logits[torch.arange(len(rows), device=self.device), idx].float()

    @torch.no_grad()
    def _reprefill(self, ids: list[list[int]]) -> torch.Tensor:
        out = []
        for src, row in zip(self.sources, ids):
            logits = self.model(input_ids=torch.tensor([src], device=self.device),
                                decoder_input_ids=torch.tensor([row], device=self.device), use_cache=False).logits
            out.append(logits[0, -1].float())
            self.tokens_fed += len(row)
        return torch.stack(out)

    def prefill(self, ids: list[list[int]]) -> torch.Tensor:
        """Start the decoder from scratch on ``ids`` (after ``encode``); returns next-token logits [B, V]."""
        if len(ids) != len(self.sources):
            raise DeepenError(f"{len(ids)} decoder rows for {len(self.sources)} encoded sources; call encode first")
        check_length(ids, self.max_len)
        if any(len(r) == 0 for r in ids):
            raise DeepenError("empty decoder prefix: an encoder-decoder member needs at least its start token")
        self.ids = [list(r) for r in ids]
        if self.reprefill:
            return self._reprefill(ids)
        self.cache = self._new_cache()
        return self._feed(ids, 0)

    def step(self, ids: list[list[int]]) -> torch.Tensor:
        """Bring every row's decoder to ``ids`` (feeding only what changed); returns next-token logits [B, V]."""
        if not self.ids:
            return self.prefill(ids)
        check_length(ids, self.max_len)
        if self.reprefill:
            self.ids = [list(r) for r in ids]
            return self._reprefill(ids)
        # keep the common prefix, but always feed at least one token: we need logits after the last one
        start = min(min(common_prefix(old, new), len(new) - 1) for old, new in zip(self.ids, ids))
        held = self.cache.get_seq_length()
        if held > start:
            self.cache.crop(start - held)
        self.ids = [list(r) for r in ids]
        return self._feed(ids, start)

    def select(self, rows: list[int]) -> None:
        """Keep only ``rows`` of the batch (finished rows leave)."""
        if len(rows) == len(self.sources):
            return
        self.sources = [self.sources[i] for i in rows]
        self.ids = [self.ids[i] for i in rows] if self.ids else []
        if self.reprefill or self.encoder_out is None:
            return
        idx = torch.tensor(rows, dtype=torch.long, device=self.device)
        self.encoder_out.last_hidden_state = self.encoder_out.last_hidden_state[idx]
        self.source_mask = self.source_mask[idx]
        if self.cache is not None:
            self.cache.batch_select_indices(idx)


class ReprefillRunner:
    """The release's scheme: re-run the member on the whole sequence every step, one row at a time, no cache."""

    def __init__(self, model):
        self.model = model
        self.device = model.get_input_embeddings().weight.device
        self.max_len = context_window(model)
        self.tokens_fed = 0
        self.ids: list[list[int]] = []

    @torch.no_grad()
    def step(self, ids: list[list[int]]) -> torch.Tensor:
        check_length(ids, self.max_len)
        out = []
        for row in ids:
            inp = torch.tensor([row], dtype=torch.long, device=self.device)
            out.append(self.model(input_ids=inp, use_cache=False, logits_to_keep=1).logits[0, -1].float())
            self.tokens_fed += len(row)
        self.ids = [list(r) for r in ids]
        return torch.stack(out)

    prefill = step

    def select(self, rows: list[int]) -> None:
        self.ids = [self.ids[i] for i in rows]
