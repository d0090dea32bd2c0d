"""A certificate for fast mode: bounds on the exact search that prove which token it chooses.

Fast mode computes exact relative rows only for the tokens that carry probability mass (and every token that can
still win: the contenders); the rest of each vocabulary, the *tail*, is summarised by clusters and their mean rows
(``deepen.relative``). Paper mode uses every token's own row. This module bounds, for every kept token of the main
model, the logit paper mode's search would end with, and so proves (or cannot prove) paper mode's choice.

What is bounded, per row of the batch:

* the fused target: each member's kept tokens are exact; a tail token's row lies, anchor by anchor, within its
  cluster's envelope (``RelativeSpace.tail_bounds``: the least and greatest entry over the cluster's tokens, computed
  once over every token), except in an anchor's own column, where its own token's entry is known exactly (it is
  almost one-hot there, and would make the envelope useless);
* q(z) = softmax(z) R_0 along the search: a tail token's logit moves by at most the summed Adam step bounds
  (``deepen.search``), so each tail cluster's softmax share lies in an interval computed from the exact initial
  logits; kept tokens' logits lie in the intervals this search carries;
* the gradient of a kept token k, s_k (1 - rho_k) / |A| with rho_k = sum_a R_0[k, a] target_a / q_a (the written-out
  gradient of ``deepen.search``, using sum_a target_a = 1), is then an interval, and so are AdamW's moments, its step
  and the next logits (interval arithmetic, each step also capped by Adam's own bound).

A row is certified when one token's lowest final logit beats every other contender's highest by a margin that covers
fp32 rounding (``MARGIN``): paper mode, which runs the same search with exact rows, must then choose it. Every token
that can win is kept (``deepen.fuse``), so no other token needs a bound.
"""

from __future__ import annotations

import torch

from deepen.relative import TailBounds
from deepen.search import ADAM_EPS, BETAS, WEIGHT_DECAY, adam_step_bound, learning_rates

MARGIN = 1e-4  # final-logit margin that covers the rounding of paper mode's fp32 search


def _tail_part(weight_lo, weight_hi, own_lo, own_hi, bounds: TailBounds):
    """Bounds [B, |A|] of sum_j w_j R[j] over tail tokens, from each cluster's total weight [B, C] and each anchor's
    own token's weight [B, |A|] (0 where that token is not in the tail), all as intervals."""
    cols = torch.arange(bounds.own.shape[0], device=bounds.own.device)
    k_lo = bounds.own - bounds.lower[bounds.own_cluster, cols]  # the own token's entry instead of the envelope's
    k_hi = bounds.own - bounds.upper[bounds.own_cluster, cols]
    lo = weight_lo @ bounds.lower + torch.minimum(own_lo * k_lo, own_hi * k_lo)
    hi = weight_hi @ bounds.upper + torch.maximum(own_lo * k_hi, own_hi * k_hi)
    return lo.clamp_min(0.0), hi


def target_bounds(parts: list[tuple[float, torch.Tensor, torch.Tensor, torch.Tensor, TailBounds]]):
    """Lower and upper bounds [B, |A|] of the fused target sum_i w_i p_i R_i.

    ``parts``: per member (weight, exact kept part [B, |A|], tail mass per cluster [B, C], tail mass of each anchor's
    own token [B, |A|], its ``TailBounds``)."""
    lo = hi = 0.0
    for w, kept, tail_mass, own_mass, bounds in parts:
        part_lo, part_hi = _tail_part(tail_mass, tail_mass, own_mass, own_mass, bounds)
        lo, hi = lo + w * (kept + part_lo), hi + w * (kept + part_hi)
    return lo, hi


def _tail_logsumexp(logits: torch.Tensor, tail: torch.Tensor, cluster: torch.Tensor, n_clusters: int,
                    scale: float) -> torch.Tensor:
    """log sum_{j in tail, cluster c} exp(scale * logits_j) per row and cluster [B, C] (-inf for an empty one)."""
    z = (scale * logits).masked_fill(~tail, float("-inf"))
    top = z.max(-1, keepdim=True).values.clamp_min(-1e30)
    sums = torch.zeros(len(z), n_clusters, dtype=z.dtype, device=z.device).index_add_(1, cluster, (z - top).exp())
    return sums.log() + top


def _mul(a_lo, a_hi, b_lo, b_hi):
    """Interval product [a] * [b]."""
    c = torch.stack([a_lo * b_lo, a_lo * b_hi, a_hi * b_lo, a_hi * b_hi])
    return c.amin(0), c.amax(0)


def interval_search(logits: torch.Tensor, ids: torch.Tensor, keep: torch.Tensor, rows: torch.Tensor,
                    cluster: torch.Tensor, anchor_ids: torch.Tensor, bounds: TailBounds, t_lo: torch.Tensor,
                    t_hi: torch.Tensor, eta: float, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounds [B, U] on the final logits paper mode's search gives the kept tokens ``ids`` [U] (-inf where a row did
    not keep a token).

    ``logits`` [B, |V_0|]: the main model's logits; ``keep`` [B, U] bool; ``rows`` [U, |A|]: their exact relative rows;
    ``cluster`` [|V_0|], ``anchor_ids`` [|A|] and ``bounds``: the main model's tail clusters, its token of each anchor
    and the clusters' ``TailBounds``; ``t_lo``, ``t_hi`` [B, |A|]: bounds of the target (`target_bounds`)."""
    logits = logits.float()
    n_anchors = rows.shape[-1]
    tail = torch.ones_like(logits, dtype=torch.bool)
    tail[:, ids] = ~keep
    own = logits[:, anchor_ids].masked_fill(~tail[:, anchor_ids], float("-inf"))  # anchors' own tokens in the tail
    z_lo = logits[:, ids].masked_fill(~keep, float("-inf"))
    z_hi = z_lo.clone()
    m_lo, m_hi = torch.zeros_like(z_lo), torch.zeros_like(z_lo)
    v_lo, v_hi = torch.zeros_like(z_lo), torch.zeros_like(z_lo)
    b1, b2 = BETAS
    decay, drift = 1.0, 0.0  # every logit z_j(t) lies within decay * z_j(0) +- drift
    for t, lr in enumerate(learning_rates(eta, steps), start=1):
        lse = _tail_logsumexp(logits, tail, cluster, bounds.lower.shape[0], decay)  # [B, C] at drift 0
        shift = torch.maximum(z_hi.max(-1, keepdim=True).values, (lse + drift).max(-1, keepdim=True).values)
        k_lo, k_hi = (z_lo - shift).exp(), (z_hi - shift).exp()
        e_lo, e_hi = (lse - drift - shift).exp(), (lse + drift - shift).exp()
        total_lo = k_lo.sum(-1, keepdim=True) + e_lo.sum(-1, keepdim=True)
        total_hi = k_hi.sum(-1, keepdim=True) + e_hi.sum(-1, keepdim=True)
        # a share's lower bound: its least mass over everything else at its most (and the other way round)
        s_lo = k_lo / (k_lo + (total_hi - k_hi)).clamp_min(1e-38)
        s_hi = (k_hi / (k_hi + (total_lo - k_lo)).clamp_min(1e-38)).clamp_max(1.0)
        c_lo = e_lo / (e_lo + (total_hi - e_hi)).clamp_min(1e-38)
        c_hi = (e_hi / (e_hi + (total_lo - e_lo)).clamp_min(1e-38)).clamp_max(1.0)
        o_lo = (decay * own - drift - shift).exp() / total_hi
        o_hi = ((decay * own + drift - shift).exp() / total_lo).clamp_max(1.0)
        part_lo, part_hi = _tail_part(c_lo, c_hi, o_lo, o_hi, bounds)
        q_lo = s_lo @ rows + part_lo
        q_hi = (s_hi @ rows + part_hi).clamp_max(1.0)
        rho_lo = (t_lo / q_hi) @ rows.T
        rho_hi = (t_hi / q_lo.clamp_min(1e-38)) @ rows.T
        g_lo, g_hi = _mul(s_lo, s_hi, 1.0 - rho_hi, 1.0 - rho_lo)
        g_lo, g_hi = g_lo / n_anchors, g_hi / n_anchors
        m_lo, m_hi = b1 * m_lo + (1 - b1) * g_lo, b1 * m_hi + (1 - b1) * g_hi
        sq_hi = torch.maximum(g_lo * g_lo, g_hi * g_hi)
        sq_lo = torch.where((g_lo < 0) & (g_hi > 0), torch.zeros_like(g_lo), torch.minimum(g_lo * g_lo, g_hi * g_hi))
        v_lo, v_hi = b2 * v_lo + (1 - b2) * sq_lo, b2 * v_hi + (1 - b2) * sq_hi
        mh_lo, mh_hi = m_lo / (1 - b1**t), m_hi / (1 - b1**t)
        den_lo = (v_lo / (1 - b2**t)).sqrt() + ADAM_EPS
        den_hi = (v_hi / (1 - b2**t)).sqrt() + ADAM_EPS
        bound = adam_step_bound(t)
        u_lo = torch.where(mh_lo >= 0, mh_lo / den_hi, mh_lo / den_lo).clamp(-bound, bound)
        u_hi = torch.where(mh_hi >= 0, mh_hi / den_lo, mh_hi / den_hi).clamp(-bound, bound)
        shrink = 1 - lr * WEIGHT_DECAY
        z_lo, z_hi = z_lo * shrink - lr * u_hi, z_hi * shrink - lr * u_lo
        decay, drift = decay * shrink, drift * shrink + lr * bound
    return z_lo, z_hi


def certified_choice(z_lo: torch.Tensor, z_hi: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """Per row, the index (into the kept tokens) whose lowest final logit beats every other kept token's highest by
    ``MARGIN``, or -1 where no token is proven; with ``allowed`` [B, U], among the allowed tokens only."""
    if allowed is not None:
        z_lo = z_lo.masked_fill(~allowed, float("-inf"))
        z_hi = z_hi.masked_fill(~allowed, float("-inf"))
    best = z_lo.argmax(-1)
    rival = z_hi.scatter(-1, best[:, None], float("-inf")).max(-1).values
    proven = z_lo.gather(-1, best[:, None]).squeeze(-1) > rival + MARGIN
    return torch.where(proven, best, torch.full_like(best, -1))
