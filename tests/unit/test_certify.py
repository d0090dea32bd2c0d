"""Certified fast mode (deepen.certify, deepen.fuse): the bounds contain paper mode's search, a proven choice is paper
mode's choice, and a row fast mode gets wrong is proven right after escalating."""

import pytest
import torch

from deepen.anchors import find_anchors
from deepen.certify import certified_choice, target_bounds
from deepen.fuse import Fuser, FusionConfig
from deepen.relative import RelativeSpace
from deepen.vocabulary import normalise_vocabulary


@pytest.fixture(scope="module")
def spaces(pair):
    sizes = [m.vocab_size for m in pair]
    anchors = find_anchors([normalise_vocabulary(m.tokenizer, n) for m, n in zip(pair, sizes)], ["a", "b"],
                           min_anchors=10)
    out = [RelativeSpace(m.model.get_input_embeddings().weight[:n], anchors.ids[i], n_clusters=16, exact_tail=True)
           for i, (m, n) in enumerate(zip(pair, sizes))]
    for s in out:
        s.ensure_tail()
    return out


def _case(spaces, seed, scale, rows=4):
    g = torch.Generator().manual_seed(seed)
    logits = [torch.randn(rows, s.vocab_size, generator=g) * scale for s in spaces]
    return logits[0], [torch.softmax(lg, -1) for lg in logits]


@pytest.mark.parametrize("eta, steps", [(0.15, 1), (0.15, 5), (0.5, 3), (1.0, 3), (1.0, 10)])
def test_bounds_contain_paper_modes_final_logits(spaces, eta, steps):
    paper = Fuser(spaces, FusionConfig(eta=eta, steps=steps, mode="paper"))
    fast = Fuser(spaces, FusionConfig(eta=eta, steps=steps, topk=8, certify=False))
    for seed, scale in [(0, 1.0), (1, 4.0), (2, 8.0)]:
        main, probs = _case(spaces, seed, scale)
        ids, _, lo, hi, _ = fast.fuse_fast(main, probs, bounds=True)
        exact = paper.fuse_paper(main, probs)[:, ids]
        kept = torch.isfinite(lo)
        assert bool(((exact >= lo - 1e-4) & (exact <= hi + 1e-4))[kept].all())


def test_bounds_are_tight_when_nothing_is_left_in_the_tail(spaces):
    fast = Fuser(spaces, FusionConfig(eta=0.5, steps=5, topk=10**6, mass=1.0, certify=False))
    main, probs = _case(spaces, 3, 2.0)
    ids, _, lo, hi, _ = fast.fuse_fast(main, probs, bounds=True)
    assert float((hi - lo)[torch.isfinite(lo)].max()) < 1e-3


def test_a_proven_choice_is_paper_modes_choice(spaces):
    proven = agree = 0
    for eta, steps in [(0.15, 1), (0.15, 5), (0.5, 3), (1.0, 5)]:
        paper = Fuser(spaces, FusionConfig(eta=eta, steps=steps, mode="paper"))
        fast = Fuser(spaces, FusionConfig(eta=eta, steps=steps, topk=16, certify=False))
        for seed in range(6):
            main, probs = _case(spaces, 10 + seed, 8.0)
            ids, _, lo, hi, _ = fast.fuse_fast(main, probs, bounds=True)
            choice = certified_choice(lo, hi)
            want = paper.choose(main, probs)[0]
            for c, w in zip(choice.tolist(), want.tolist()):
                if c >= 0:
                    proven += 1
                    agree += int(ids[c]) == w
    assert proven >= 20 and agree == proven


def test_target_bounds_contain_the_exact_target(spaces):
    fast = Fuser(spaces, FusionConfig(topk=4, certify=False))
    main, probs = _case(spaces, 4, 1.0)
    parts = []
    for i, (s, p) in enumerate(zip(spaces, probs)):
        m = fast._member(i, p, fast.config)
        parts.append((fast.weights[i], m.kept, m.tail_mass, m.own_mass, s.tail_bounds))
    lo, hi = target_bounds(parts)
    exact = sum(w * (p @ s.dense()) for w, p, s in zip(fast.weights, probs, spaces))
    assert bool(((exact >= lo - 1e-7) & (exact <= hi + 1e-7)).all())


def test_flat_distribution_at_large_eta_fast_mode_errs_and_certified_mode_does_not(spaces):
    """The regression: a flat distribution at large eta with a small kept set, where fast mode's tail summary
    changes the token; certified mode escalates and chooses paper mode's token."""
    cfg = dict(eta=1.0, steps=3, topk=2)
    paper = Fuser(spaces, FusionConfig(eta=1.0, steps=3, mode="paper"))
    fast = Fuser(spaces, FusionConfig(**cfg, certify=False))
    certified = Fuser(spaces, FusionConfig(**cfg, certify=True), max_dense_bytes=10**10)
    wrong = 0
    for seed in range(8):
        main, probs = _case(spaces, 100 + seed, 1.0)
        want = paper.choose(main, probs)[0]
        wrong += int((fast.choose(main, probs)[0] != want).sum())
        assert torch.equal(certified.choose(main, probs)[0], want)
    assert wrong > 0  # the case really is one fast mode gets wrong
    assert sum(certified.counts.values()) == 32 and certified.counts["uncertified"] == 0
    assert certified.counts["escalated"] + certified.counts["exact"] > 0
