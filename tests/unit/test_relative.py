"""Relative representations: the release's formula, computed on demand."""

import torch
from transformers import LlamaConfig, LlamaForCausalLM

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
    batch_request = torch.arange(100)  # a batch asks for more than the cache holds: it grows to twice the request
    assert torch.allclose(space.rows(batch_request), ref[batch_request], atol=1e-7)
    assert space._cache_cap == 200
    computed = space.rows_computed
    assert torch.allclose(space.rows(batch_request.flip(0)), ref[batch_request.flip(0)], atol=1e-7)
    assert space.rows_computed == computed  # the next step's rows come from the cache


def test_row_cache_grows_within_its_byte_ceiling(monkeypatch):
    monkeypatch.setattr("deepen.relative.CACHE_BYTES", 4 * 167 * 60)  # room for 60 rows of 167 anchors
    space = RelativeSpace(torch.randn(500, 16, generator=torch.Generator().manual_seed(2)), torch.arange(0, 500, 3),
                          cache_rows=40)
    ref = space.dense()
    ids = torch.arange(100)
    assert torch.allclose(space.rows(ids), ref[ids], atol=1e-7)
    assert space._cache_cap == 60  # grew, but not past the ceiling; the request is computed directly
    assert torch.allclose(space.rows(ids[:50]), ref[:50], atol=1e-7)


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
    """SmolLM2-like (|A| close to |V|): no copy of the anchors' unit embeddings, the release's rows."""
    torch.manual_seed(3)
    emb = torch.randn(400, 12)
    anchors = torch.randperm(400)[:360]
    in_place = RelativeSpace(emb, anchors)
    small = RelativeSpace(emb, anchors[:100])  # a small anchor set (Gemma-3-like) keeps its own [d, |A|] copy
    assert in_place.anchor_unit_t is None and small.anchor_unit_t is not None
    assert torch.allclose(in_place.dense(), release_dense(emb, anchors), atol=1e-5, rtol=1e-4)
    assert torch.allclose(small.dense(), release_dense(emb, anchors[:100]), atol=1e-5, rtol=1e-4)
    assert torch.allclose(in_place.anchor_unit, emb[anchors] / emb[anchors].norm(dim=-1, keepdim=True), atol=1e-6)
    again = RelativeSpace.from_table(in_place.to_table(), emb)
    assert again.anchor_unit_t is None
    assert torch.allclose(again.rows(torch.tensor([0, 5, 399])), in_place.rows(torch.tensor([0, 5, 399])), atol=1e-7)


def _tied_member(vocab_size=600, hidden=24, seed=5):
    """A tiny Llama whose output layer is its input embedding matrix (Gemma-3, SmolLM2 are tied too)."""
    from deepen.members import Member
    from helpers.synthetic import make_tokenizer

    tok = make_tokenizer("bytelevel", vocab_size)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=True,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.get_input_embeddings().weight.normal_(0, 1.0)
    return Member(name="tied", model=model, tokenizer=tok)


def test_anchors_first_reorders_the_embedding_rows_and_the_model_computes_exactly_what_it_did(tmp_path):
    """Gemma-3's case (|A| << |V|): the anchors' rows move to the front of the tied embedding matrix in place, the
    space reads them there (no copy), and the model's logits, greedy tokens, fingerprint and saved checkpoint are
    bit for bit what they were."""
    from deepen.fingerprint import fingerprint
    from deepen.members import load_member
    from deepen.row_order import put_anchors_first, vocabulary_order

    member = _tied_member()
    model = member.model
    weight = model.get_input_embeddings().weight
    assert model.get_output_embeddings().weight is weight
    original = weight.detach().clone()
    vocab = weight.shape[0]
    anchors = torch.randperm(vocab, generator=torch.Generator().manual_seed(0))[:200]  # scattered, in shared order
    ids = torch.tensor([[1, 17, 250, 599, 3, 42, 42, 512]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    tokens = model.generate(ids, max_new_tokens=6, do_sample=False)
    digest = fingerprint(member.tokenizer, model)
    reference = release_dense(original, anchors)
    copied = RelativeSpace(original.clone(), anchors)  # the copying path, for comparison

    space = RelativeSpace.of_member(member, anchors)
    order = vocabulary_order(model)
    assert space.anchor_unit_t is None and order.in_use and torch.equal(order.front, anchors)
    assert torch.equal(weight[:200], original[anchors])  # the anchors first, in order
    assert torch.equal(weight[order.row_of], original)  # every token's row is where row_of says
    assert weight.data_ptr() == model.get_output_embeddings().weight.data_ptr()  # in place, still tied
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, logits)
    assert torch.equal(model.generate(ids, max_new_tokens=6, do_sample=False), tokens)
    assert fingerprint(member.tokenizer, model) == digest
    assert torch.allclose(space.dense(block=64), reference, atol=1e-5, rtol=1e-4)
    picked = torch.tensor([0, 5, int(anchors[3]), vocab - 1])
    assert torch.allclose(space.rows(picked), copied.rows(picked), atol=1e-6)
    assert torch.equal(space.tail[0], copied.tail[0])  # the clusters are computed in token order
    assert torch.allclose(space.anchor_unit, copied.anchor_unit, atol=1e-7)
    # the checkpoint is written in token order, and reads back into the reordered model
    assert torch.equal(model.state_dict()["model.embed_tokens.weight"], original)
    member.tokenizer.save_pretrained(tmp_path)
    model.save_pretrained(tmp_path)
    reloaded = load_member(str(tmp_path))
    assert torch.equal(reloaded.model.get_input_embeddings().weight, original)
    with torch.no_grad():
        assert torch.equal(reloaded.model(input_ids=ids).logits, logits)
    model.load_state_dict(reloaded.model.state_dict())
    assert torch.equal(weight[order.row_of], original)
    # once in use the order never changes: other anchors read a copy, through row_of
    assert put_anchors_first(model, anchors[:50]) is False and put_anchors_first(model, anchors) is True
    other = RelativeSpace.of_member(member, anchors[100:150])
    assert other.anchor_unit_t is not None
    assert torch.allclose(other.dense(), release_dense(original, anchors[100:150]), atol=1e-5, rtol=1e-4)


def test_anchors_first_is_refused_where_it_cannot_be_exact():
    """No reordering for a narrower dtype, an embedding matrix shared with other layers, or rows already in use."""
    from deepen.row_order import put_anchors_first, vocabulary_order

    anchors = torch.arange(0, 600, 7)
    member = _tied_member()
    member.model.to(torch.bfloat16)
    assert put_anchors_first(member.model, anchors) is False
    space = RelativeSpace.of_member(member, anchors)
    assert space.anchor_unit_t is not None and vocabulary_order(member.model).row_of is None
    shared = _tied_member()
    shared.model.model.extra = torch.nn.Embedding(600, 24)
    shared.model.model.extra.weight = shared.model.get_input_embeddings().weight  # a third holder of the matrix
    assert put_anchors_first(shared.model, anchors) is False
    used = _tied_member()
    RelativeSpace.of_member(used, torch.arange(500))  # most of the vocabulary: read in place, no reordering
    assert vocabulary_order(used.model).row_of is None and put_anchors_first(used.model, anchors) is False
