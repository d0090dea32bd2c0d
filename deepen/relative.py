"""Relative representations: each token of a member as a distribution over the shared anchors.

For token v of member i, with E_i its INPUT embedding matrix and A the anchors (method.md §2, the release's formula):

    c[v, a] = cos(E_i[v], E_i[A_a])                      [|A|]
    R_i[v]  = softmax(100 * c[v] / ||c[v]||_2)           [|A|], sums to 1

Dense R_i is |V_i| x |A| floats (48 GB for Gemma-3 against 45.6k anchors), so this module computes rows on demand
from the embedding matrix itself and the norms of its rows [|V|]. The anchors' embeddings are read in place: when
they are most of the vocabulary (SmolLM2) from the whole matrix, when the member's rows were reordered with the
anchors first (``RelativeSpace.of_member``, Gemma-3) from the front block; otherwise from a copy of their unit
embeddings. A small LRU cache keeps the rows of recently seen tokens. ``dense()`` builds the whole matrix for paper
mode.

Fast mode computes rows only for the tokens that carry a member's probability mass; the rest of the vocabulary (the
tail) is summarised by **tail clusters**: the tokens are grouped by direction of their embedding (spherical k-means,
C clusters), and each cluster keeps its mean relative row [C, |A|]. The tail's contribution sum_j p_j R_i[j] is then
sum_c (tail mass in c) * mean row of c. Tokens with close embeddings have close rows, so this is far more accurate
than one mean row for the whole tail (measured in the README's Performance section).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from deepen.progress import bar
from deepen.row_order import put_anchors_first, vocabulary_order

TEMPERATURE = 100.0
FULL_VOCAB_RATIO = 1.25  # see RelativeSpace.__init__
TAIL_CLUSTERS = 192  # C: clusters summarising the tail of the vocabulary
TAIL_SAMPLE = 32  # rows averaged per cluster for its mean row (all of them when the cluster is smaller)
#: the most memory a member's row cache grows to (a batch asks for many rows at once; see RelativeSpace.rows)
CACHE_BYTES = 512 * 2**20
KMEANS_SAMPLE = 16384  # tokens the k-means centroids are fitted on (every token is then assigned)
KMEANS_ITERATIONS = 8
_EPS = 1e-8


@dataclass(frozen=True)
class TailBounds:
    """What every token's row of a cluster can be, anchor by anchor (``exact_tail``; what certified fast mode needs).

    Attributes:
        lower, upper: [C, |A|] the least and greatest R[j, a] over the tokens j of cluster c, leaving out the anchor's
            own token in its own column (its row is almost one-hot there: kept apart, the envelopes stay tight);
        own: [|A|] R[t_a, a] for each anchor's own token t_a;
        own_cluster: [|A|] the cluster of each anchor's own token."""

    lower: torch.Tensor
    upper: torch.Tensor
    own: torch.Tensor
    own_cluster: torch.Tensor


def tail_clusters(embeddings: torch.Tensor, norms: torch.Tensor, n_clusters: int,
                  iterations: int = KMEANS_ITERATIONS, sample: int = KMEANS_SAMPLE, block: int = 16384,
                  row_of: torch.Tensor | None = None) -> torch.Tensor:
    """Spherical k-means of the embeddings' directions: each token's cluster [|V|] int64, deterministic.

    Centroids start at evenly spaced tokens and are fitted on an evenly spaced sample of the vocabulary; then every
    token goes to its nearest centroid (cosine), a block at a time (no unit copy of the whole matrix). A cluster left
    empty keeps its previous centroid. ``norms`` are in token order; ``row_of`` maps tokens to rows of
    ``embeddings`` (None: row = token)."""
    n = embeddings.shape[0]
    n_clusters = max(1, min(int(n_clusters), n))

    def unit(ids):
        return embeddings[ids if row_of is None else row_of[ids]].float() / norms[ids, None]

    fit = unit(torch.linspace(0, n - 1, min(sample, n), device=embeddings.device).round().long().unique())
    centroids = fit[torch.linspace(0, len(fit) - 1, n_clusters, device=fit.device).round().long()].clone()
    for _ in range(iterations):
        nearest = (fit @ centroids.T).argmax(-1)
        sums = torch.zeros_like(centroids).index_add_(0, nearest, fit)
        length = sums.norm(dim=-1, keepdim=True)
        centroids = torch.where(length > 1e-12, sums / length.clamp_min(1e-12), centroids)
    ids = torch.arange(n, device=embeddings.device)
    return torch.cat([(unit(b) @ centroids.T).argmax(-1) for b in ids.split(block)])


def rows_of_cosines(cos: torch.Tensor, temperature: float) -> torch.Tensor:
    """Relative rows from their cosines [k, |A|] fp32: softmax(temperature * c / ||c||_2), computed in place (one
    [k, |A|] temporary besides the result: 12 MB per 64 rows at 46k anchors)."""
    cos.mul_(temperature / cos.norm(p=2, dim=-1, keepdim=True).clamp_min(1e-12))
    return torch.softmax(cos, dim=-1)


def _dots(matrix: torch.Tensor, unit: torch.Tensor, pick: torch.Tensor | None = None, block: int = 2048):
    """``unit @ matrix.T`` [k, n] (only the columns ``pick`` when given), fp32.

    On a CPU, MKL multiplied 4-56 rows by a transposed [n, d] matrix 1.7-3.2x slower than by a [d, n] one (63 rows
    and more: as fast; measured at n = 46k, d = 640), so this computes ``matrix @ unit.T`` [n, k] and transposes it
    into place a block at a time (torch's whole-matrix transposed copy took 2x as long at 50 rows)."""
    if matrix.device.type != "cpu":
        out = unit @ matrix.T
        return out if pick is None else out[:, pick]
    by_row = matrix @ unit.T.contiguous()  # [n, k]
    n = by_row.shape[0] if pick is None else len(pick)
    out = torch.empty(unit.shape[0], n, dtype=by_row.dtype)
    for start in range(0, n, block):
        part = by_row[start : start + block] if pick is None else by_row[pick[start : start + block]]
        out[:, start : start + block].copy_(part.T)
    return out


class RelativeSpace:
    """Member i's relative representation against the ensemble's anchors.

    Args:
        embeddings: the member's input embedding matrix [|V|, d] (any float dtype; computed in fp32).
        anchor_ids: [|A|] this member's token id of each anchor, in the shared column order.
        temperature: the softmax scale (100 in the release).
        cache_rows: how many computed rows to keep at least (LRU; it grows to twice a step's request, within
            ``CACHE_BYTES``); 0 disables the cache.
        n_clusters: C, the tail clusters (see the module docstring).
        tail_sample: rows averaged per cluster for its mean row; exact for clusters no larger than this.
        exact_tail: instead, compute every token's row once: exact cluster means, and the envelopes of each cluster's
            rows (``tail_bounds``, what fast mode's certificate needs; ``deepen.certify``).
        row_of: token t's row in ``embeddings`` (``VocabularyOrder.row_of``; None: row t).
        anchors_first: the rows 0..|A|-1 of ``embeddings`` are the anchors, in order (``put_anchors_first``).
        tail_cluster / tail_rows: the clusters [|V|] and their mean rows [C, |A|] when already computed (a cache).

    ``RelativeSpace.of_member`` builds a member's space with the anchors first where that saves a copy.
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
        exact_tail: bool = False,
        row_of: torch.Tensor | None = None,
        anchors_first: bool = False,
        tail_cluster: torch.Tensor | None = None,
        tail_rows: torch.Tensor | None = None,
        tail_bounds: TailBounds | None = None,
    ):
        self.embeddings = embeddings.detach()
        self.device = self.embeddings.device
        if isinstance(anchor_ids, torch.Tensor):
            anchor_ids = anchor_ids.detach().cpu().numpy()
        self.anchor_ids = torch.as_tensor(np.array(anchor_ids, dtype=np.int64), device=self.device)
        self.temperature = float(temperature)
        self.vocab_size = self.embeddings.shape[0]
        self.row_of = None if row_of is None else row_of[: self.vocab_size].to(self.device, torch.long)
        norms = self.embeddings.float().norm(dim=-1).clamp_min(_EPS)
        self.norms = norms if self.row_of is None else norms[self.row_of]  # [|V|], in token order
        self.n_anchors = len(self.anchor_ids)
        anchor_rows = self.anchor_ids if self.row_of is None else self.row_of[self.anchor_ids]
        self._anchor_norms = self.norms[self.anchor_ids]
        # Where the anchors' embeddings are read from: the front block (``anchors_first``); the whole matrix, when the
        # anchors are most of the vocabulary (SmolLM2: 46k of 49k; multiplying by all of it and picking the anchor
        # columns costs only |V|/|A| more and no memory); else a copy of their unit embeddings [d, |A|].
        self.anchor_unit_t = None
        self._anchor_rows = None
        if anchors_first:
            if not torch.equal(anchor_rows.cpu(), torch.arange(self.n_anchors)):
                raise ValueError("anchors_first: the first rows of the embeddings are not the anchors in order")
            self._reads = "front"
        elif not self.copies_anchors(self.embeddings, self.n_anchors):
            self._reads, self._anchor_rows = "vocabulary", anchor_rows
        else:
            self._reads = "copy"
            unit = self.embeddings[anchor_rows].float() / self._anchor_norms[:, None]
            self.anchor_unit_t = unit.T.contiguous()  # [d, |A|]
        self.rows_computed = 0  # rows computed from scratch so far (the benchmark's cost counter)
        self._empty_cache(int(cache_rows))
        self._n_clusters = int(n_clusters)
        self._tail_sample = int(tail_sample)
        self.exact_tail = bool(exact_tail)
        self._tail = None
        self.tail_bounds: TailBounds | None = None  # with an exact tail
        if (tail_cluster is None) != (tail_rows is None):
            raise ValueError("tail_cluster and tail_rows go together")
        if tail_cluster is not None:
            self._set_tail(tail_cluster, tail_rows, tail_bounds)

    @staticmethod
    def copies_anchors(embeddings: torch.Tensor, n_anchors: int) -> bool:
        """Whether a space over these embeddings keeps a copy of the anchors' unit embeddings unless they come first."""
        return embeddings.dtype != torch.float32 or embeddings.shape[0] > FULL_VOCAB_RATIO * n_anchors

    @classmethod
    def of_member(cls, member, anchor_ids, vocab_size: int | None = None, table: pa.Table | None = None,
                  **kwargs) -> "RelativeSpace":
        """Member ``member``'s space against ``anchor_ids`` (over its first ``vocab_size`` embedding rows), built, or
        read from a ``to_table`` cache. Where the space would copy the anchors' embeddings, their rows are first
        moved to the front of the member's embedding matrix (``put_anchors_first``: the model computes exactly what
        it did), so they are read in place."""
        weight = member.model.get_input_embeddings().weight
        embeddings = weight[: weight.shape[0] if vocab_size is None else int(vocab_size)]
        ids = torch.as_tensor(np.asarray(anchor_ids, dtype=np.int64))
        if cls.copies_anchors(embeddings, len(ids)):
            put_anchors_first(member.model, ids)
        order = vocabulary_order(member.model)
        order.in_use = True
        kwargs.update(row_of=order.row_of, anchors_first=order.front is not None and torch.equal(order.front, ids))
        return cls.from_table(table, embeddings, **kwargs) if table is not None else cls(embeddings, ids, **kwargs)

    @property
    def anchor_unit(self) -> torch.Tensor:
        """The anchors' unit embeddings [|A|, d] fp32."""
        if self.anchor_unit_t is not None:
            return self.anchor_unit_t.T
        return self.unit(self.anchor_ids)

    def _embedding_rows(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embeddings[ids if self.row_of is None else self.row_of[ids]]

    # -- the formula ---------------------------------------------------------------------------------------------
    def compute_rows(self, ids: torch.Tensor) -> torch.Tensor:
        """R_i[ids] computed from scratch: [len(ids), |A|] fp32, rows sum to 1."""
        ids = ids.to(self.device)
        self.rows_computed += len(ids)
        unit = self.unit(ids)
        if self._reads == "copy":
            cos = unit @ self.anchor_unit_t  # [k, |A|]
        else:
            block = self.embeddings[: self.n_anchors] if self._reads == "front" else self.embeddings
            cos = _dots(block, unit, self._anchor_rows).div_(self._anchor_norms)  # [k, |A|]
        return rows_of_cosines(cos, self.temperature)

    def unit(self, ids: torch.Tensor) -> torch.Tensor:
        """The unit input embeddings of tokens ``ids`` [k, d] fp32."""
        return self._embedding_rows(ids).float() / self.norms[ids, None]

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """R_i[ids]: [len(ids), |A|] fp32, from the row cache where possible. ``ids`` must be unique."""
        if self._cache_cap <= 0:
            return self.compute_rows(ids)
        ids_cpu = ids.detach().to("cpu", torch.long)
        if len(ids_cpu) > self._cache_cap:
            self._grow(len(ids_cpu))
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

    def _grow(self, request: int) -> None:
        """Make room for twice a step's request (a batch asks for rows of every one of its rows' kept tokens; the next
        step asks for many of them again), within ``CACHE_BYTES``; the rows cached so far are dropped."""
        cap = min(2 * request, self.vocab_size, CACHE_BYTES // (4 * self.n_anchors))
        if cap > self._cache_cap:
            self._empty_cache(cap)

    def _empty_cache(self, cap: int) -> None:
        """An empty LRU row cache of ``cap`` rows (its store is allocated on first use)."""
        self._cache_cap, self._store, self._clock = cap, None, 0
        self._slot_of = torch.full((self.vocab_size,), -1, dtype=torch.long)
        self._id_of = torch.full((max(cap, 0),), -1, dtype=torch.long)
        self._last_used = torch.zeros(max(cap, 0), dtype=torch.long)

    # -- summaries kept in the relative cache --------------------------------------------------------------------
    def _set_tail(self, cluster: torch.Tensor, rows: torch.Tensor, bounds: TailBounds | None = None) -> None:
        cluster = cluster.to(self.device, torch.long)
        if cluster.shape != (self.vocab_size,) or rows.shape[-1] != self.n_anchors or int(cluster.max()) >= len(rows):
            raise ValueError(f"tail clusters do not fit this space: {tuple(cluster.shape)} clusters for {self.vocab_size}"
                             f" tokens, rows {tuple(rows.shape)} for {self.n_anchors} anchors")
        sizes = torch.bincount(cluster, minlength=len(rows)).float()
        self._tail = (cluster, rows.to(self.device, torch.float32).contiguous(), sizes)
        self.tail_bounds = None if bounds is None else TailBounds(*(x.to(self.device) for x in (
            bounds.lower, bounds.upper, bounds.own, bounds.own_cluster)))
        self.exact_tail = self.exact_tail or bounds is not None

    @property
    def tail(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(cluster of each token [|V|], mean relative row of each cluster [C, |A|], cluster sizes [C]).

        Built once (``build_tail``): spherical k-means on the unit embeddings, then each cluster's mean row over up to
        ``tail_sample`` of its tokens, a seeded uniform sample (exact when the cluster is no larger)."""
        return self.ensure_tail()

    def ensure_tail(self, progress: bool = False):
        """``tail``, built now if it was not yet (with a progress bar on stderr if asked)."""
        if self._tail is None:
            self.build_tail(progress)
        return self._tail

    def build_tail(self, progress: bool = False) -> None:
        """Compute the tail clusters and their mean rows (``tail``), with a progress bar on stderr if asked."""
        cluster = tail_clusters(self.embeddings, self.norms, self._n_clusters, row_of=self.row_of)
        n_clusters = max(1, min(self._n_clusters, self.vocab_size))
        if self.exact_tail:
            self._set_tail(cluster, *self._exact_cluster_rows(cluster, n_clusters, progress))
            return
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
        with bar(len(picked), "tail clusters: mean relative rows", unit="row", enabled=progress) as done:
            for ids, who in zip(picked.split(128), owner.split(128)):
                rows.index_add_(0, who, self.compute_rows(ids))
                done.update(len(ids))
        rows.div_(take.clamp_min(1)[:, None].float())
        self._set_tail(cluster, rows)

    def _exact_cluster_rows(self, cluster: torch.Tensor, n_clusters: int, progress: bool, block: int = 256):
        """Every token's row, once: each cluster's mean row [C, |A|] and its ``TailBounds``, from running sums and
        elementwise envelopes (one pass; no [|V|, |A|] matrix is ever held)."""
        shape = (n_clusters, self.n_anchors)
        sums = torch.zeros(shape, dtype=torch.float64, device=self.device)
        upper = torch.zeros(shape, device=self.device)
        lower = torch.ones(shape, device=self.device)
        own = torch.zeros(self.n_anchors, device=self.device)
        column = torch.full((self.vocab_size,), -1, dtype=torch.long, device=self.device)
        column[self.anchor_ids] = torch.arange(self.n_anchors, device=self.device)
        ids = torch.arange(self.vocab_size, device=self.device)
        with bar(self.vocab_size, "tail clusters: every row (exact means and envelopes)", unit="row",
                 enabled=progress) as done:
            for part in ids.split(block):
                rows, who, col = self.compute_rows(part), cluster[part], column[part]
                sums.index_add_(0, who, rows.double())
                at = (col >= 0).nonzero().squeeze(-1)  # anchors' own tokens: their own column is kept apart
                own[col[at]] = rows[at, col[at]]
                index = who[:, None].expand_as(rows)
                upper.scatter_reduce_(0, index, rows.index_put((at, col[at]), torch.zeros(len(at))), "amax")
                lower.scatter_reduce_(0, index, rows.index_put((at, col[at]), torch.ones(len(at))), "amin")
                done.update(len(part))
        sizes = torch.bincount(cluster, minlength=n_clusters).clamp_min(1)
        # fp32 rounding of the rows themselves: widen each envelope by a few ulps
        slack = 4 * torch.finfo(torch.float32).eps
        bounds = TailBounds(lower * (1 - slack), upper * (1 + slack), own, cluster[self.anchor_ids])
        return (sums / sizes[:, None]).float(), bounds

    def dense(self, block: int = 512, out: torch.Tensor | None = None) -> torch.Tensor:
        """The whole R_i [|V|, |A|] fp32 (paper mode). Check the size first: see ``dense_bytes``."""
        out = out if out is not None else torch.empty(self.vocab_size, self.n_anchors, device=self.device)
        for start in range(0, self.vocab_size, block):
            ids = torch.arange(start, min(start + block, self.vocab_size), device=self.device)
            out[start : start + len(ids)] = self.compute_rows(ids)
        return out

    def dense_bytes(self) -> int:
        return self.vocab_size * self.n_anchors * 4

    def to_table(self, progress: bool = False) -> pa.Table:
        """What fast mode needs, as a Parquet-ready table with one row per anchor:

        - ``anchor_id``, ``unit_embedding``: the anchor's token id and unit input embedding;
        - ``tail_rows``: this anchor's column of the cluster mean rows (C values);
        - ``tail_cluster``: the clusters of the vocabulary [|V|], laid out m = ceil(|V| / |A|) per row (row k holds
          tokens k*m .. k*m+m-1), padded with -1;
        - with an exact tail, ``tail_lower`` / ``tail_upper`` (this anchor's column of the clusters' envelopes, C
          values) and ``own_row`` (R[t_a, a] of its own token)."""
        self.ensure_tail(progress)
        unit = self.anchor_unit.cpu().numpy()
        cluster, rows, _ = self.tail
        per_row = -(-self.vocab_size // self.n_anchors)
        laid = np.full(per_row * self.n_anchors, -1, dtype=np.int32)
        laid[: self.vocab_size] = cluster.cpu().numpy()
        columns_of = {}
        if self.tail_bounds is not None:
            b = self.tail_bounds
            columns_of = {"tail_lower": _columns(b.lower), "tail_upper": _columns(b.upper),
                          "own_row": pa.array(b.own.cpu().numpy(), pa.float32())}
        return pa.table(
            {
                "anchor_id": pa.array(self.anchor_ids.cpu().numpy(), pa.int64()),
                "unit_embedding": pa.FixedSizeListArray.from_arrays(
                    pa.array(unit.reshape(-1), pa.float32()), unit.shape[1]
                ),
                "tail_rows": _columns(rows),
                "tail_cluster": pa.FixedSizeListArray.from_arrays(pa.array(laid), per_row),
                **columns_of,
            },
        )

    @classmethod
    def from_table(cls, table: pa.Table, embeddings: torch.Tensor, **kwargs) -> "RelativeSpace":
        """Rebuild from ``to_table`` output and the member's embeddings (the norms and, where a copy is kept, the
        anchors' unit embeddings are recomputed from them, cheaply; the table's ``unit_embedding`` is not read)."""
        if "tail_rows" not in table.column_names or "tail_cluster" not in table.column_names:
            raise ValueError("this relative cache predates the tail clusters (no tail_rows / tail_cluster columns); "
                             "delete it and rerun, which rebuilds it")
        tail_rows = _matrix(table, "tail_rows")
        laid = table["tail_cluster"].combine_chunks().flatten().to_numpy()
        tail_cluster = torch.from_numpy(laid[: embeddings.shape[0]].astype(np.int64))
        bounds = None
        if "tail_lower" in table.column_names:
            bounds = TailBounds(_matrix(table, "tail_lower"), _matrix(table, "tail_upper"),
                                torch.from_numpy(table["own_row"].to_numpy().copy()),
                                tail_cluster[torch.from_numpy(table["anchor_id"].to_numpy().copy())])
        return cls(embeddings, table["anchor_id"].to_numpy(), tail_cluster=tail_cluster, tail_rows=tail_rows,
                   tail_bounds=bounds, **kwargs)


def _columns(matrix: torch.Tensor) -> pa.Array:
    """A [C, |A|] matrix as one list of C values per anchor (the relative cache's layout)."""
    columns = matrix.T.contiguous().cpu().numpy()
    return pa.FixedSizeListArray.from_arrays(pa.array(columns.reshape(-1), pa.float32()), columns.shape[1])


def _matrix(table: pa.Table, name: str) -> torch.Tensor:
    n = table.schema.field(name).type.list_size
    return torch.from_numpy(table[name].combine_chunks().flatten().to_numpy().reshape(-1, n).T.copy())
