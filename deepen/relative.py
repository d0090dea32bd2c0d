"""Relative representations: each token of a member as a distribution over the shared anchors.

For token v of member i, with E_i its INPUT embedding matrix and A the anchors (method.md §2, the release's formula):

    c[v, a] = cos(E_i[v], E_i[A_a])                      [|A|]
    R_i[v]  = softmax(100 * c[v] / ||c[v]||_2)           [|A|], sums to 1

Dense R_i is |V_i| x |A| floats (48 GB for Gemma-3 against 45.6k anchors), so this module computes rows on demand
from what is cheap to keep: the anchors' unit embeddings [|A|, d] and the norms of all embedding rows [|V|]. A small
LRU cache keeps the rows of recently seen tokens. ``dense()`` builds the whole matrix for paper mode.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

TEMPERATURE = 100.0
FULL_VOCAB_RATIO = 1.25  # see RelativeSpace.__init__
_EPS = 1e-8


class RelativeSpace:
    """Member i's relative representation against the ensemble's anchors.

    Args:
        embeddings: the member's input embedding matrix [|V|, d] (any float dtype; computed in fp32).
        anchor_ids: [|A|] this member's token id of each anchor, in the shared column order.
        temperature: the softmax scale (100 in the release).
        cache_rows: how many computed rows to keep (LRU); 0 disables the cache.
        mean_sample: the mean relative row (used for the probability mass outside the rows fast mode computes) is
            exact when |V| <= mean_sample, else estimated on ``mean_sample`` evenly spaced token ids.
    """

    def __init__(
        self,
        embeddings: torch.Tensor,
        anchor_ids,
        *,
        temperature: float = TEMPERATURE,
        cache_rows: int = 256,
        mean_sample: int = 4096,
        anchor_unit: torch.Tensor | None = None,
        mean_row: torch.Tensor | None = None,
    ):
        self.embeddings = embeddings.detach()
        self.device = self.embeddings.device
        if isinstance(anchor_ids, torch.Tensor):
            anchor_ids = anchor_ids.detach().cpu().numpy()
        self.anchor_ids = torch.as_tensor(np.array(anchor_ids, dtype=np.int64), device=self.device)
        self.temperature = float(temperature)
        self.vocab_size = self.embeddings.shape[0]
        self.norms = self.embeddings.float().norm(dim=-1).clamp_min(_EPS)  # [|V|]
        self.n_anchors = len(self.anchor_ids)
        # When the anchors are most of the vocabulary (SmolLM2: 46k of 49k), a copy of their unit embeddings would
        # nearly duplicate the embedding matrix; multiplying by all of it and picking the anchor columns costs only
        # |V|/|A| more and no memory. Otherwise (Gemma-3: 46k of 262k) the copy [d, |A|] is kept.
        self._over_vocab = (anchor_unit is None and self.embeddings.dtype == torch.float32
                            and self.vocab_size <= FULL_VOCAB_RATIO * self.n_anchors)
        self.anchor_unit_t = None
        if not self._over_vocab:
            if anchor_unit is None:
                anchor_unit = self.embeddings[self.anchor_ids].float() / self.norms[self.anchor_ids, None]
            self.anchor_unit_t = anchor_unit.to(self.device, torch.float32).T.contiguous()  # [d, |A|]
        self._cache_cap = int(cache_rows)
        self._slot_of = torch.full((self.vocab_size,), -1, dtype=torch.long)
        self._id_of = torch.full((max(self._cache_cap, 0),), -1, dtype=torch.long)
        self._last_used = torch.zeros(max(self._cache_cap, 0), dtype=torch.long)
        self._clock = 0
        self._store = None
        self._mean_sample = int(mean_sample)
        self._mean_row = None if mean_row is None else mean_row.to(self.device, torch.float32)

    @property
    def anchor_unit(self) -> torch.Tensor:
        """The anchors' unit embeddings [|A|, d] fp32."""
        if self.anchor_unit_t is not None:
            return self.anchor_unit_t.T
        return self.embeddings[self.anchor_ids].float() / self.norms[self.anchor_ids, None]

    # -- the formula ---------------------------------------------------------------------------------------------
    def compute_rows(self, ids: torch.Tensor) -> torch.Tensor:
        """R_i[ids] computed from scratch: [len(ids), |A|] fp32, rows sum to 1."""
        ids = ids.to(self.device)
        unit = self.embeddings[ids].float() / self.norms[ids, None]
        if self._over_vocab:
            cos = (unit @ self.embeddings.T)[:, self.anchor_ids] / self.norms[self.anchor_ids]  # [k, |A|]
        else:
            cos = unit @ self.anchor_unit_t  # [k, |A|]
        # in place: one [k, |A|] temporary besides the result (these are 12 MB per 64 rows at 46k anchors)
        cos.mul_(self.temperature / cos.norm(p=2, dim=-1, keepdim=True).clamp_min(1e-12))
        return torch.softmax(cos, dim=-1)

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """R_i[ids]: [len(ids), |A|] fp32, from the row cache where possible. ``ids`` must be unique."""
        if self._cache_cap <= 0:
            return self.compute_rows(ids)
        ids_cpu = ids.detach().to("cpu", torch.long)
        if len(ids_cpu) > self._cache_cap:
            return self.compute_rows(ids)
        if self._store is None:
            self._store = torch.empty(self._cache_cap, self.n_anchors, dtype=torch.float32, device=self.device)
        self._clock += 1
        slots = self._slot_of[ids_cpu]
        missing = slots < 0
        if missing.any():
            new_ids = ids_cpu[missing]
            # evict the least recently used slots not needed now
            self._last_used[slots[~missing]] = self._clock
            free = torch.argsort(self._last_used)[: len(new_ids)]
            old = self._id_of[free]
            self._slot_of[old[old >= 0]] = -1
            self._store[free.to(self.device)] = self.compute_rows(new_ids)
            self._id_of[free] = new_ids
            self._slot_of[new_ids] = free
            slots = self._slot_of[ids_cpu]
        self._last_used[slots] = self._clock
        return self._store[slots.to(self.device)]

    # -- summaries kept in the relative cache --------------------------------------------------------------------
    @property
    def mean_row(self) -> torch.Tensor:
        """Mean of R_i over the vocabulary [|A|] (exact for small vocabularies, else over evenly spaced ids)."""
        if self._mean_row is None:
            if self.vocab_size <= self._mean_sample:
                sample = torch.arange(self.vocab_size)
            else:
                sample = torch.linspace(0, self.vocab_size - 1, self._mean_sample).round().long().unique()
            total = torch.zeros(self.n_anchors, dtype=torch.float64, device=self.device)
            for block in sample.split(128):  # small blocks: [128, |A|] intermediates, low peak memory
                total += self.compute_rows(block).sum(0, dtype=torch.float64)
            self._mean_row = (total / len(sample)).float()
        return self._mean_row

    def dense(self, block: int = 512, out: torch.Tensor | None = None) -> torch.Tensor:
        """The whole R_i [|V|, |A|] fp32 (paper mode). Check the size first: see ``dense_bytes``."""
        out = out if out is not None else torch.empty(self.vocab_size, self.n_anchors, device=self.device)
        for start in range(0, self.vocab_size, block):
            ids = torch.arange(start, min(start + block, self.vocab_size), device=self.device)
            out[start : start + len(ids)] = self.compute_rows(ids)
        return out

    def dense_bytes(self) -> int:
        return self.vocab_size * self.n_anchors * 4

    def to_table(self) -> pa.Table:
        """What fast mode needs, as a Parquet-ready table: one row per anchor (its unit embedding) + the mean row."""
        unit = self.anchor_unit.cpu().numpy()
        return pa.table(
            {
                "anchor_id": pa.array(self.anchor_ids.cpu().numpy(), pa.int64()),
                "unit_embedding": pa.FixedSizeListArray.from_arrays(
                    pa.array(unit.reshape(-1), pa.float32()), unit.shape[1]
                ),
                "mean_row": pa.array(self.mean_row.cpu().numpy(), pa.float32()),
            }
        )

    @classmethod
    def from_table(cls, table: pa.Table, embeddings: torch.Tensor, **kwargs) -> "RelativeSpace":
        """Rebuild from ``to_table`` output and the member's embeddings (the norms are recomputed, cheaply)."""
        d = table.schema.field("unit_embedding").type.list_size
        mean_row = torch.from_numpy(table["mean_row"].to_numpy().copy())
        if embeddings.dtype == torch.float32 and embeddings.shape[0] <= FULL_VOCAB_RATIO * table.num_rows:
            kwargs.setdefault("anchor_unit", None)  # recomputed from the embeddings without a copy
        else:
            unit = table["unit_embedding"].combine_chunks().flatten().to_numpy().reshape(-1, d)
            kwargs.setdefault("anchor_unit", torch.from_numpy(unit.copy()))
        return cls(embeddings, table["anchor_id"].to_numpy(), mean_row=mean_row, **kwargs)
