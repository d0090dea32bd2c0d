"""Fusion and the search: the release's arithmetic (paper mode) and its exact restriction (fast mode)."""

import math

import pytest
import torch

from deepen import DeepenError, FusionConfig
from deepen.fuse import Fuser
from deepen.search import learning_rates, reachable_gap, search
from deepen.relative import RelativeSpace


def test_learning_rates_follow_the_cosine_schedule():
    lrs = learning_rates(0.2, 5)
    expected = [0.05 + 0.15 * (1 + math.cos(math.pi * t / 10)) / 2 for t in range(5)]
    assert lrs == pytest.approx(expected)
    assert sum(lrs) / 0.2 == pytest.approx(4.5, abs=0.01)  # "about 4.5 eta" (method.md §3)


def test_search_matches_the_release_loop_on_one_row():
    torch.manual_seed(0)
    V, A = 50, 20
    R = torch.softmax(torch.randn(V, A) * 3, -1)
    z0 = torch.randn(1, V) * 2
    target = torch.softmax(torch.randn(1, A), -1)
    # the release: KLDivLoss() (mean) on a [1, A] batch, AdamW(lr, betas) + CosineAnnealingLR(10, lr/4)
    z = z0.clone().requires_grad_(True)
    opt = torch.optim.AdamW([z], lr=0.3, betas=(0.9, 0.999))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10, eta_min=0.3 / 4)
    for _ in range(5):
        loss = torch.nn.KLDivLoss()(torch.log(torch.softmax(z, -1) @ R), target)
        opt.zero_grad(); loss.backward(); opt.step(); sched.step()
    assert torch.allclose(search(z0, R, target, 0.3, 5), z.detach(), atol=1e-6)


def _autograd_search(z0, blocks, target, eta, steps, counts):
    """The search as the release writes it: autograd through the KL loss, torch's AdamW and cosine schedule."""
    z = z0.clone().requires_grad_(True)
    opt = torch.optim.AdamW([z], lr=eta, betas=(0.9, 0.999))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10, eta_min=eta / 4)
    log_counts = counts.clamp_min(1).log()
    for _ in range(steps):
        s = torch.softmax(z + log_counts, -1)
        q = s[:, : len(blocks[0])] @ blocks[0] + s[:, len(blocks[0]) :] @ blocks[1]
        loss = torch.nn.functional.kl_div(torch.log(q), target, reduction="sum") / target.shape[-1]
        opt.zero_grad()
        loss.backward()
        z.grad /= counts.clamp_min(1)
        opt.step()
        sched.step()
    return z.detach()


def test_search_is_bitwise_the_autograd_loop_with_blocks_counts_and_masked_tokens():
    """The search writes its gradient out instead of using autograd; every bit of the result is autograd's."""
    g = torch.Generator().manual_seed(12)
    for _ in range(10):
        blocks = [torch.softmax(torch.randn(50, 40, generator=g) * 3, -1),
                  torch.softmax(torch.randn(30, 40, generator=g), -1)]
        z0 = torch.randn(4, 80, generator=g) * 2
        z0[torch.rand(4, 80, generator=g) < 0.2] = float("-inf")
        target = torch.softmax(torch.randn(4, 40, generator=g), -1)
        counts = torch.cat([torch.ones(4, 50), torch.randint(0, 9, (4, 30), generator=g).float()], -1)
        assert torch.equal(search(z0, blocks, target, 0.3, 5, counts),
                           _autograd_search(z0, blocks, target, 0.3, 5, counts))


def test_batched_search_equals_row_by_row():
    torch.manual_seed(1)
    V, A = 40, 16
    R = torch.softmax(torch.randn(V, A) * 3, -1)
    z0 = torch.randn(4, V) * 2
    target = torch.softmax(torch.randn(4, A), -1)
    batched = search(z0, R, target, 0.5, 5)
    for b in range(4):
        assert torch.allclose(batched[b], search(z0[b : b + 1], R, target[b : b + 1], 0.5, 5)[0], atol=1e-6)


@pytest.mark.parametrize("eta", [0.05, 0.15, 0.5, 2.0])
def test_no_token_beyond_the_reachable_gap_ever_wins(eta):
    """The bound behind fast mode's restriction: adversarial targets, wide logits."""
    gap = reachable_gap(eta, 5)
    g = torch.Generator().manual_seed(0)
    V, A = 200, 30
    worst = 0.0
    for _ in range(20):
        R = torch.softmax(torch.randn(V, A, generator=g) * 5, -1)
        z0 = torch.randn(8, V, generator=g) * 4
        target = torch.softmax(torch.randn(8, A, generator=g) * 6, -1)
        z = search(z0, R, target, eta, 5)
        winner = z.argmax(-1)
        trail = z0.max(-1).values - z0[torch.arange(8), winner]
        worst = max(worst, trail.max().item())
    assert worst <= gap


def test_config_validation_messages():
    with pytest.raises(DeepenError, match="one weight per member"):
        FusionConfig(weights=(0.5, 0.5)).validate(3)
    with pytest.raises(DeepenError, match="non-negative"):
        FusionConfig(weights=(1.5, -0.5)).validate(2)
    with pytest.raises(DeepenError, match="sum to 1"):
        FusionConfig(weights=(0.5, 0.6)).validate(2)
    with pytest.raises(DeepenError, match="eta"):
        FusionConfig(eta=-0.1).validate(2)
    with pytest.raises(DeepenError, match="steps"):
        FusionConfig(steps=0).validate(2)
    with pytest.raises(DeepenError, match="mode"):
        FusionConfig(mode="exact").validate(2)
    assert FusionConfig(weights=(0.25, 0.75)).validate(2).member_weights(2) == [0.25, 0.75]


def _spaces(seed, sizes=(120, 90), dims=(16, 12), n_anchors=60):
    g = torch.Generator().manual_seed(seed)
    return [RelativeSpace(torch.randn(v, d, generator=g), torch.arange(n_anchors)) for v, d in zip(sizes, dims)]


def test_fast_mode_with_everything_kept_is_paper_mode():
    spaces = _spaces(0)
    g = torch.Generator().manual_seed(3)
    logits = [torch.randn(6, s.vocab_size, generator=g) * 3 for s in spaces]
    probs = [torch.softmax(lg, -1) for lg in logits]
    paper = Fuser(spaces, FusionConfig(eta=0.5, mode="paper")).fuse_paper(logits[0], probs)
    everything = Fuser(spaces, FusionConfig(eta=0.5, mode="fast", topk=10_000, mass=1.0, certify=False))
    ids, fast, *_ = everything.fuse_fast(logits[0], probs)
    assert torch.equal(ids, torch.arange(spaces[0].vocab_size))
    assert torch.allclose(fast, paper, atol=1e-5)


def test_one_token_per_tail_cluster_makes_the_tail_exact():
    """With a cluster per token (n_clusters = |V|) each pseudo-token is one real token with its own row and logit:
    fast mode keeping only a couple of rows does the paper's arithmetic."""
    g = torch.Generator().manual_seed(7)
    spaces = [RelativeSpace(torch.randn(v, d, generator=g), torch.arange(50), n_clusters=v, tail_sample=1)
              for v, d in ((110, 16), (80, 12))]
    assert all(torch.equal(s.tail[2], torch.ones(s.vocab_size)) for s in spaces)
    logits = [torch.randn(5, s.vocab_size, generator=g) * 2 for s in spaces]  # flat: most mass is in the tail
    probs = [torch.softmax(lg, -1) for lg in logits]
    paper = Fuser(spaces, FusionConfig(eta=0.1, mode="paper")).fuse_paper(logits[0], probs)
    ids, fast, *_ = Fuser(spaces, FusionConfig(eta=0.1, topk=2, mass=0.5, certify=False)).fuse_fast(logits[0], probs)
    kept = fast > float("-inf")
    assert kept.sum(-1).max() <= 10  # the tail is really used
    assert torch.allclose(fast[kept], paper[:, ids][kept], atol=1e-5)
    assert torch.equal(ids[fast.argmax(-1)], paper.argmax(-1))


def test_a_flat_main_distribution_keeps_at_most_max_contenders():
    """Near-uniform logits put every token within reach of the search; fast mode keeps the ``max_contenders`` best
    (here 32)."""
    g = torch.Generator().manual_seed(11)
    spaces = [RelativeSpace(torch.randn(v, d, generator=g), torch.arange(60), n_clusters=16) for v, d in
              ((3000, 16), (2500, 12))]
    logits = [1e-3 * torch.randn(3, s.vocab_size, generator=g) for s in spaces]
    probs = [torch.softmax(lg, -1) for lg in logits]
    fuser = Fuser(spaces, FusionConfig(eta=0.5, topk=8, max_contenders=32, certify=False))
    assert (logits[0] >= logits[0].max(-1, keepdim=True).values - fuser.gap).sum(-1).min() == 3000
    ids, fused, *_ = fuser.fuse_fast(logits[0], probs)
    kept = fused > float("-inf")
    assert kept.sum(-1).max() <= 32
    best = logits[0].topk(32, dim=-1).indices
    assert all(i in best[r] for r, i in enumerate(ids[fused.argmax(-1)].tolist()))


def test_tail_clusters_beat_one_mean_row_on_flat_steps():
    """The tail summary matters on flat distributions; clusters track paper mode better than a single mean row."""
    g = torch.Generator().manual_seed(8)
    embs = [torch.randn(v, d, generator=g) for v, d in ((600, 16), (500, 12))]
    share = {}
    for n_clusters in (1, 64):
        spaces = [RelativeSpace(e, torch.arange(100), n_clusters=n_clusters) for e in embs]
        agree = total = 0
        g2 = torch.Generator().manual_seed(9)
        for _ in range(6):
            logits = [torch.randn(8, s.vocab_size, generator=g2) * 1.5 for s in spaces]
            probs = [torch.softmax(lg, -1) for lg in logits]
            paper, _ = Fuser(spaces, FusionConfig(eta=0.5, mode="paper")).choose(logits[0], probs)
            fast, _ = Fuser(spaces, FusionConfig(eta=0.5, topk=8, certify=False)).choose(logits[0], probs)
            agree += (paper == fast).sum().item()
            total += len(paper)
        share[n_clusters] = agree / total
    assert share[64] > share[1], share


def test_plain_fast_mode_agrees_with_paper_mode_on_chosen_tokens():
    spaces = _spaces(1, sizes=(400, 300))
    g = torch.Generator().manual_seed(4)
    agree = total = 0
    for _ in range(10):
        logits = [torch.randn(8, s.vocab_size, generator=g) * 4 for s in spaces]
        probs = [torch.softmax(lg, -1) for lg in logits]
        paper, _ = Fuser(spaces, FusionConfig(eta=0.5, mode="paper")).choose(logits[0], probs)
        fast, _ = Fuser(spaces, FusionConfig(eta=0.5, mode="fast", certify=False)).choose(logits[0], probs)
        agree += (paper == fast).sum().item()
        total += len(paper)
    assert agree / total >= 0.95


def test_identical_members_with_uniform_weights_keep_the_main_argmax():
    space = _spaces(2, sizes=(150,), dims=(16,))[0]
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(8, 150, generator=g) * 3
    p = torch.softmax(logits, -1)
    for mode in ("paper", "fast"):
        free, _ = Fuser([space, space], FusionConfig(eta=0.5, mode=mode, certify=False)).choose(logits, [p, p])
        assert torch.equal(free, logits.argmax(-1)), mode


def test_restricted_choice_is_among_allowed_tokens():
    spaces = _spaces(3)
    g = torch.Generator().manual_seed(6)
    logits = [torch.randn(3, s.vocab_size, generator=g) for s in spaces]
    probs = [torch.softmax(lg, -1) for lg in logits]
    allowed = torch.zeros(3, spaces[0].vocab_size, dtype=torch.bool)
    allowed[:, [5, 9, 77]] = True
    for mode in ("paper", "fast"):
        _, restricted = Fuser(spaces, FusionConfig(eta=0.3, mode=mode, certify=False)).choose(logits[0], probs, allowed)
        assert set(restricted.tolist()) <= {5, 9, 77}
