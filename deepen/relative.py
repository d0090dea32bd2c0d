"""Relative representations: each token of a member as a distribution over the shared anchors.

For token v of member i, with E_i its INPUT embedding matrix and A the anchors (method.md §2, the release's formula):

    c[v, a] = cos(E_i[v], E_i[A_a])                      [|A|]
    R_i[v]  = softmax(100 * c[v] / ||c[v]||_2)           [|A|], sums to 1

Dense R_i is |V_i| x |A| floats (48 GB for Gemma-3 against 45.6k anchors), so this module computes rows on demand
from what is cheap to keep: the anchors' unit embeddings [|A|, d] and the norms of all embedding rows [|V|]. A small
LRU cache keeps the rows of recently seen tokens. ``dense()`` builds the whole matrix for paper mode.

Fast mode computes rows only for the tokens that carry a member's probability mass; the rest of the vocabulary (the
tail) is summarised by **tail clusters**: the tokens are grouped by direction of their embedding (spherical k-means,
C clusters), and each cluster keeps its mean relative row [C, |A|]. The tail's contribution sum_j p_j R_i[j] is then
sum_c (tail mass in c) * mean row of c. Tokens with close embeddings have close rows, so this is far more accurate
than one mean row for the whole tail (measured in the README's Performance section).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

TEMPERATURE = 100.0
CACHE_FORMAT = 2  # of ``to_table``: 2 = tail clusters (1 had one mean row)
FULL_VOCAB_RATIO = 1.25  # see RelativeSpace.__init__
TAIL_CLUSTERS = 192  # C: clusters summarising the tail of the vocabulary
TAIL_SAMPLE = 32  # rows averaged per cluster for its mean row (all of them when the cluster is smaller)
KMEANS_SAMPLE = 16384  # tokens the k-means centroids are fitted on (every token is then assigned)
KMEANS_ITERATIONS = 8
_EPS = 1e-8


def tail_clusters(embeddings: torch.Tensor, norms: torch.Tensor, n_clusters: int,
                  iterations: int = KMEANS_ITERATIONS, sample: int = KMEANS_SAMPLE, block: int = 16384) -> torch.Tensor:
    """Spherical k-means of the embeddings' directions: each token's cluster [|V|] int64, deterministic.

    Centroids start at evenly spaced tokens and are fitted on an evenly spaced sample of the vocabulary; then every
    token goes to its nearest centroid (cosine), a block at a time (no unit copy of the whole matrix). A cluster left
    empty keeps its previous centroid."""
    n = embeddings.shape[0]
    n_clusters = max(1, min(int(n_clusters), n))

    def unit(ids):
        return embeddings[ids].float() / norms[ids, None]

    fit = unit(torch.linspace(0, n - 1, min(sample, n), device=embeddings.device).round().long().unique())
    centroids = fit[torch.linspace(0, len(fit) - 1, n_clusters, device=fit.device).round().long()].clone()
    for _ in range(iterations):
        nearest = (fit @ centroids.T).argmax(-1)
        sums = torch.zeros_like(centroids).index_add_(0, nearest, fit)
        length = sums.norm(dim=-1, keepdim=True)
        centroids = torch.where(length > 1e-12, sums / length.clamp_min(1e-12), centroids)
    ids = torch.arange(n, device=embeddings.device)
    return torch.cat([(unit(b) @ centroids.T).argmax(-1) for b in ids.split(block)])


class RelativeSpace:
    """Member i's relative representation against the ensemble's anchors.

    Args:
        embeddings: the member's input embedding matrix [|V|, d] (any float dtype; computed in fp32).
        anchor_ids: [|A|] this member's token id of each anchor, in the shared column order.
        temperature: the softmax scale (100 in the release).
        cache_rows: how many computed rows to keep (LRU); 0 disables the cache.
        n_clusters: C, the tail clusters (see the module docstring).
        tail_sample: rows averaged per cluster for its mean row; exact for clusters no larger than this.
        tail_cluster / tail_rows: the clusters [|V|] and their mean rows [C, |A|] when already computed (a cache).
    """

    def __init__(
        self,
        embeddings: torch.Tensor,
        anchor_ids,
        *,
        temperature: float = TEMPERATURE,
        cache_rows: int = 128,
        n_clusters: int = TAIL_CLUSTERS,
        tail_sample: int = TAIL_SAMPLE,
        anchor_unit: torch.Tensor | None = None,
        tail_cluster: torch.Tensor | None = None,
        tail_rows: torch.Tensor | None = None,
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
        self.rows_computed = 0  # rows computed from scratch so far (the benchmark's cost counter)
        self._slot_of = torch.full((self.vocab_size,), -1, dtype=torch.long)
        self._id_of = torch.full((max(self._cache_cap, 0),), -1, dtype=torch.long)
        self._last_used = torch.zeros(max(self._cache_cap, 0), dtype=torch.long)
        self._clock = 0
        self._store = None
        self._n_clusters = int(n_clusters)
        self._tail_sample = int(tail_sample)
        self._tail = None
        if (tail_cluster is None) != (tail_rows is None):
            raise ValueError("tail_cluster and tail_rows go together")
        if tail_cluster is not None:
            self._set_tail(tail_cluster, tail_rows)

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
        self.rows_computed += len(ids)
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
    def _set_tail(self, cluster: torch.Tensor, rows: torch.Tensor) -> None:
        cluster = cluster.to(self.device, torch.long)
        if cluster.shape != (self.vocab_size,) or rows.shape[-1] != self.n_anchors or int(cluster.max()) >= len(rows):
            raise ValueError(f"tail clusters do not fit this space: {tuple(cluster.shape)} clusters for {self.vocab_size}"
                             f" tokens, rows {tuple(rows.shape)} for {self.n_anchors} anchors")
        sizes = torch.bincount(cluster, minlength=len(rows)).float()
        self._tail = (cluster, rows.to(self.device, torch.float32).contiguous(), sizes)

    @property
    def tail(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(cluster of each token [|V|], mean relative row of each cluster [C, |A|], cluster sizes [C]).

        Built once: spherical k-means on the unit embeddings, then each cluster's mean row over up to ``tail_sample``
        of its tokens, a seeded uniform sample (exact when the cluster is no larger)."""
        if self._tail is None:
            cluster = tail_clusters(self.embeddings, self.norms, self._n_clusters)
            n_clusters = max(1, min(self._n_clusters, self.vocab_size))
            # each cluster's tokens in a fixed pseudo-random order (seeded: deterministic), so that the tokens averaged
            # are a uniform sample of the cluster rather than its lowest ids (BPE ids follow merge order)
            perm = torch.randperm(self.vocab_size, generator=torch.Generator().manual_seed(0)).to(cluster.device)
            order = perm[torch.argsort(cluster[perm], stable=True)]
            sizes = torch.bincount(cluster, minlength=n_clusters)
            starts = torch.cumsum(sizes, 0) - sizes
            take = torch.minimum(sizes, torch.tensor(self._tail_sample, device=sizes.device))
            # for cluster c: positions starts[c] + floor(k * sizes[c] / take[c]), k < take[c]
            owner = torch.repeat_interleave(torch.arange(n_clusters, device=sizes.device), take)
            k = torch.arange(len(owner), device=sizes.device) - (torch.cumsum(take, 0) - take)[owner]
            picked = order[starts[owner] + torch.div(k * sizes[owner], take[owner], rounding_mode="floor")]
            # accumulated in place in fp32 (sums of at most tail_sample rows), small blocks: no large temporaries
            rows = torch.zeros(n_clusters, self.n_anchors, dtype=torch.float32, device=self.device)
            for ids, who in zip(picked.split(128), owner.split(128)):
                rows.index_add_(0, who, self.compute_rows(ids))
            rows.div_(take.clamp_min(1)[:, None].float())
            self._set_tail(cluster, rows)
        return self._tail

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
        """What fast mode needs, as a Parquet-ready table with one row per anchor:

        - ``anchor_id``, ``unit_embedding``: the anchor's token id and unit input embedding;
        - ``tail_rows``: this anchor's column of the cluster mean rows (C values);
        - ``tail_cluster``: the clusters of the vocabulary [|V|], laid out m = ceil(|V| / |A|) per row (row k holds
          tokens k*m .. k*m+m-1), padded with -1."""
        unit = self.anchor_unit.cpu().numpy()
        cluster, rows, _ = self.tail
        per_row = -(-self.vocab_size // self.n_anchors)
        laid = np.full(per_row * self.n_anchors, -1, dtype=np.int32)
        laid[: self.vocab_size] = cluster.cpu().numpy()
        columns = rows.T.contiguous().cpu().numpy()  # [|A|, C]
        return pa.table(
            {
                "anchor_id": pa.array(self.anchor_ids.cpu().numpy(), pa.int64()),
                "unit_embedding": pa.FixedSizeListArray.from_arrays(
                    pa.array(unit.reshape(-1), pa.float32()), unit.shape[1]
                ),
                "tail_rows": pa.FixedSizeListArray.from_arrays(pa.array(columns.reshape(-1), pa.float32()),
                                                               columns.shape[1]),
                "tail_cluster": pa.FixedSizeListArray.from_arrays(pa.array(laid), per_row),
            }
        )

    @classmethod
    def from_table(cls, table: pa.Table, embeddings: torch.Tensor, **kwargs) -> "RelativeSpace":
        """Rebuild from ``to_table`` output and the member's embeddings (the norms are recomputed, cheaply)."""
        d = table.schema.field("unit_embedding").type.list_size
        if "tail_rows" not in table.column_names or "tail_cluster" not in table.column_names:
            raise ValueError("this relative cache predates the tail clusters (no tail_rows / tail_cluster columns); "
                             "delete it and rerun, which rebuilds it")
        n_clusters = table.schema.field("tail_rows").type.list_size
        tail_rows = torch.from_numpy(
            table["tail_rows"].combine_chunks().flatten().to_numpy().reshape(-1, n_clusters).T.copy())
        laid = table["tail_cluster"].combine_chunks().flatten().to_numpy()
        tail_cluster = torch.from_numpy(laid[: embeddings.shape[0]].astype(np.int64))
        if embeddings.dtype == torch.float32 and embeddings.shape[0] <= FULL_VOCAB_RATIO * table.num_rows:
            kwargs.setdefault("anchor_unit", None)  # recomputed from the embeddings without a copy
        else:
            unit = table["unit_embedding"].combine_chunks().flatten().to_numpy().reshape(-1, d)
            kwargs.setdefault("anchor_unit", torch.from_numpy(unit.copy()))
        return cls(embeddings, table["anchor_id"].to_numpy(), tail_cluster=tail_cluster, tail_rows=tail_rows, **kwargs)
