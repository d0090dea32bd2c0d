"""Relative representations: the release's formula, computed on demand."""

import torch

from deepen.relative import RelativeSpace


def release_dense(emb: torch.Tensor, anchor_ids, temperature=100.0) -> torch.Tensor:
    """The release's arithmetic, written independently: pairwise cosine, L2 over anchors, softmax(100 x)."""
    cos = torch.cosine_similarity(emb.unsqueeze(1), emb[anchor_ids].unsqueeze(0), dim=-1)
    return torch.softmax(torch.nn.functional.normalize(cos, p=2, dim=-1) * temperature, dim=-1)


def test_rows_sum_to_one_and_equal_the_dense_formula():
    torch.manual_seed(0)
    emb = torch.randn(300, 24)
    anchors = torch.randperm(300)[:120]
    space = RelativeSpace(emb, anchors, cache_rows=64)
    ref = release_dense(emb, anchors)
    dense = space.dense(block=37)
    assert torch.allclose(dense.sum(-1), torch.ones(300), atol=1e-5)
    assert torch.allclose(dense, ref, atol=1e-5, rtol=1e-4)
    # anchor tokens are (almost) one-hot on themselves
    assert (dense[anchors].argmax(-1) == torch.arange(120)).all()


def test_row_cache_returns_the_same_rows_through_evictions():
    torch.manual_seed(1)
    emb = torch.randn(500, 16)
    space = RelativeSpace(emb, torch.arange(0, 500, 3), cache_rows=40)
    ref = space.dense()
    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        ids = torch.randperm(500, generator=g)[: int(torch.randint(1, 40, (1,), generator=g))]
        assert torch.equal(space.rows(ids), ref[ids]) or torch.allclose(space.rows(ids), ref[ids], atol=1e-7)
    too_many = torch.arange(100)  # more than the cache holds: computed directly
    assert torch.allclose(space.rows(too_many), ref[too_many], atol=1e-7)


def test_tail_clusters_mean_rows_and_table_round_trip():
    """Every token has a cluster; a cluster no larger than tail_sample gets its exact mean row; larger ones the mean
    of tail_sample of their rows; all of it survives the Parquet table."""
    torch.manual_seed(2)
    emb = torch.randn(200, 8)
    space = RelativeSpace(emb, torch.arange(0, 200, 2), n_clusters=16, tail_sample=1000)
    cluster, rows, sizes = space.tail
    dense = space.dense()
    assert cluster.shape == (200,) and int(sizes.sum()) == 200 and len(rows) == 16
    for c in range(16):
        members = (cluster == c).nonzero().squeeze(-1)
        assert int(sizes[c]) == len(members)
        if len(members):
            assert torch.allclose(rows[c], dense[members].mean(0), atol=1e-6)
    # clusters group tokens by direction: each token is closer (cosine) to its own cluster's mean direction
    unit = emb / emb.norm(dim=-1, keepdim=True)
    centres = torch.stack([unit[cluster == c].mean(0) for c in range(16) if (cluster == c).any()])
    own = torch.tensor([c for c in range(16) if (cluster == c).any()])
    assert (own[(unit @ centres.T).argmax(-1)] == cluster).float().mean() > 0.9
    sampled = RelativeSpace(emb, torch.arange(0, 200, 2), n_clusters=4, tail_sample=5)
    cluster4, rows4, sizes4 = sampled.tail
    perm = torch.randperm(200, generator=torch.Generator().manual_seed(0))  # the seeded order the sample follows
    for c in range(4):
        members = perm[cluster4[perm] == c]
        take = min(5, len(members))
        picked = members[(torch.arange(take) * len(members)) // take]
        assert torch.allclose(rows4[c], dense[picked].mean(0), atol=1e-6)
    again = RelativeSpace.from_table(space.to_table(), emb)
    assert torch.equal(again.tail[0], cluster) and torch.allclose(again.tail[1], rows)
    ids = torch.tensor([3, 7, 150])
    assert torch.allclose(again.rows(ids), space.rows(ids), atol=1e-7)
    # deterministic: the same clusters and rows when built again
    fresh = RelativeSpace(emb, torch.arange(0, 200, 2), n_clusters=16, tail_sample=1000)
    assert torch.equal(fresh.tail[0], cluster) and torch.equal(fresh.tail[1], rows)


def test_a_cache_without_tail_clusters_is_refused_by_name():
    import pytest

    emb = torch.randn(50, 8)
    table = RelativeSpace(emb, torch.arange(0, 50, 2), n_clusters=4).to_table().drop_columns(["tail_rows"])
    with pytest.raises(ValueError, match="predates the tail clusters"):
        RelativeSpace.from_table(table, emb)


def test_anchors_covering_most_of_the_vocabulary_use_the_embeddings_in_place():
    """SmolLM2-like (|A| close to |V|): no copy of the anchors' unit embeddings, same rows as the copying path."""
    torch.manual_seed(3)
    emb = torch.randn(400, 12)
    anchors = torch.randperm(400)[:360]
    in_place = RelativeSpace(emb, anchors)
    copied = RelativeSpace(emb, anchors, anchor_unit=emb[anchors] / emb[anchors].norm(dim=-1, keepdim=True))
    assert in_place.anchor_unit_t is None and copied.anchor_unit_t is not None
    ref = release_dense(emb, anchors)
    assert torch.allclose(in_place.dense(), ref, atol=1e-5, rtol=1e-4)
    assert torch.allclose(in_place.dense(), copied.dense(), atol=1e-6)
    assert torch.allclose(in_place.anchor_unit, copied.anchor_unit, atol=1e-6)
    again = RelativeSpace.from_table(in_place.to_table(), emb)
    assert again.anchor_unit_t is None
    assert torch.allclose(again.rows(torch.tensor([0, 5, 399])), in_place.rows(torch.tensor([0, 5, 399])), atol=1e-7)
    # a small anchor set (Gemma-3-like) keeps its own [d, |A|] copy
    assert RelativeSpace(emb, anchors[:100]).anchor_unit_t is not None
