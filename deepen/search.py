"""The search (the paper's inverse transformation): move the main model's logits so that their relative
representation approaches the fused one, with the release's optimiser, step for step.

    q(z)  = softmax(z) R_0                                    [B, |A|]
    loss  = KL(target || q(z)) / |A|                          torch's KLDivLoss(reduction='mean'), per row
    AdamW(lr = eta, betas (0.9, 0.999), eps 1e-8, weight_decay 0.01), CosineAnnealingLR(T_max=10, eta_min=eta/4)

Pure tensor arithmetic: no members, no vocabularies. ``reachable_gap`` bounds how far a logit can move, which is what
lets fast mode restrict the search exactly (``deepen.fuse``).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch.optim import AdamW
from torch.optim.lr_scheduler import CosineAnnealingLR

BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
WEIGHT_DECAY = 0.01  # torch's AdamW default, which the release uses
T_MAX = 10


def learning_rates(eta: float, steps: int) -> list[float]:
    """The lr of each search iteration under CosineAnnealingLR(T_max=10, eta_min=eta/4)."""
    return list(_learning_rates(float(eta), int(steps)))


@lru_cache(maxsize=64)
def _learning_rates(eta: float, steps: int) -> tuple[float, ...]:
    z = torch.zeros(1, requires_grad=True)
    opt = AdamW([z], lr=eta)
    sched = CosineAnnealingLR(opt, T_max=T_MAX, eta_min=eta / 4)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return tuple(lrs)


def adam_step_bound(t: int) -> float:
    """Largest |m_hat / sqrt(v_hat)| Adam can produce at iteration t (Cauchy-Schwarz over the gradient history)."""
    b1, b2 = BETAS
    s = sum(((1 - b1) * b1 ** (t - k)) ** 2 / ((1 - b2) * b2 ** (t - k)) for k in range(1, t + 1))
    return math.sqrt(1 - b2**t) / (1 - b1**t) * math.sqrt(s)


def reachable_gap(eta: float, steps: int) -> float:
    """How far below the top logit a token can start and still end the search on top.

    Each iteration, weight decay shrinks every gap by (1 - lr*wd) and Adam moves each logit by at most lr * bound_t,
    so two logits close in by at most 2 * sum(lr_t * bound_t) / prod(1 - lr_t * wd). A 1e-4 margin covers rounding.
    """
    lrs = learning_rates(eta, steps)
    move = 2 * sum(lr * adam_step_bound(t + 1) for t, lr in enumerate(lrs))
    shrink = math.prod(1 - lr * WEIGHT_DECAY for lr in lrs)
    return move / shrink + 1e-4


def search(z0: torch.Tensor, relative, target: torch.Tensor, eta: float, steps: int,
           counts: torch.Tensor | None = None) -> torch.Tensor:
    """Inverse transformation: move logits ``z0`` [B, K] so that softmax(z) @ relative [K, |A|] approaches
    ``target`` [B, |A|]. Returns the final logits [B, K] (fp32). ``relative`` may be a list of blocks whose rows
    follow one another (no concatenated copy).

    The release's loop: KL(target || softmax(z) @ R) / |A| per row (torch's KLDivLoss, mean), AdamW(eta, betas
    (0.9, 0.999), weight decay 0.01) and CosineAnnealingLR(T_max=10, eta_min=eta/4), ``steps`` iterations. The
    gradient is written out rather than taken by autograd (same arithmetic, no graph, no loss value):
    dL/dq = -target / (q |A|), dL/ds = dL/dq @ R^T, dL/dz = s * (dL/ds - sum(s * dL/ds)); AdamW's update is
    torch's, step for step (tested against torch.optim.AdamW).

    ``counts`` [B, K] (fast mode's pseudo-tokens): column k stands for counts[b, k] tokens sharing its logit and row;
    it weighs counts times in the softmax, and its gradient is divided by counts (the gradient of one of them)."""
    z = z0.detach().float().clone()
    blocks = list(relative) if isinstance(relative, (list, tuple)) else [relative]
    n_anchors = blocks[0].shape[-1]
    bounds = [0]
    for b in blocks:
        bounds.append(bounds[-1] + b.shape[0])
    counts = None if counts is None else counts.clamp_min(1)
    log_counts = None if counts is None else counts.log()
    # autograd's order: the mean's 1/|A| (fp32) times -target, then / q
    neg_target = target.float() * torch.tensor(1.0 / n_anchors, dtype=torch.float32)
    neg_target.neg_()
    exp_avg = torch.zeros_like(z)
    exp_avg_sq = torch.zeros_like(z)
    b1, b2 = BETAS
    with torch.no_grad():
        for t, lr in enumerate(learning_rates(eta, steps), start=1):
            s = torch.softmax(z if counts is None else z + log_counts, dim=-1)
            q = sum(s[:, lo:hi] @ b for lo, hi, b in zip(bounds, bounds[1:], blocks))
            grad_q = neg_target / q
            grad_s = torch.cat([grad_q @ b.T for b in blocks], -1) if len(blocks) > 1 else grad_q @ blocks[0].T
            # s * (grad_s - sum(s * grad_s)), with the kernel autograd uses (so the rounding is autograd's too)
            grad = torch.ops.aten._softmax_backward_data(grad_s, s, -1, s.dtype)
            if counts is not None:
                grad /= counts
            # torch.optim.AdamW, one parameter: decoupled weight decay, then the Adam step with bias corrections
            z.mul_(1 - lr * WEIGHT_DECAY)
            exp_avg.lerp_(grad, 1 - b1)
            exp_avg_sq.mul_(b2).addcmul_(grad, grad, value=1 - b2)
            denom = (exp_avg_sq.sqrt() / (1 - b2**t) ** 0.5).add_(ADAM_EPS)
            z.addcdiv_(exp_avg, denom, value=-lr / (1 - b1**t))
    return z
