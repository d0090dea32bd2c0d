"""Fuse the members' next-token distributions in the relative space, then search the main model's logits.

One decoding step (method.md §3), for a batch of rows:

    r_i  = p_i R_i                          relative distribution of member i over the anchors
    rbar = sum_i w_i r_i                    weighted aggregation
    z    = main logits (fp32 copy); T iterations of AdamW(eta) + CosineAnnealingLR(T_max=10, eta_min=eta/4) on
           KL(rbar || softmax(z) R_0) / |A|  (torch's KLDivLoss(reduction='mean') for one row)
    next token = argmax z

Two ways to run it:

* ``paper``: the release's arithmetic over full vocabularies, with dense R_i.
* ``fast``:  never touches a dense R_i. For each member only the rows of the tokens that carry probability mass are
  computed (its top tokens covering ``mass``, at most ``topk``); the mass left outside them (the tail) is spread over
  the member's tail clusters (``deepen.relative``: tokens grouped by embedding direction, each cluster with its
  mean relative row). The search runs on the main model's kept tokens plus one pseudo-token per tail cluster. A
  pseudo-token stands for the n tail tokens of its cluster as if they shared one row and one logit: it enters the
  softmax as n tokens (logit + log n, logit = log of their mean probability) and Adam sees the gradient of one of
  them (the cluster's gradient / n), so it moves as each of its tokens would. The kept set always contains every
  token that can still win: AdamW moves a logit by at most ~lr per iteration (bound computed in
  ``reachable_gap``), so a token whose logit trails the top one by more than twice the summed step sizes can never
  overtake it. With ``topk`` >= |V| and ``mass`` = 1 nothing is left in the tail and the two modes do the same
  arithmetic. On a flat distribution (random weights, a very uncertain step) thousands of tokens can be within
  reach; then only the ``4 * topk`` with the highest logits are kept (real members here never had more than 18
  contenders in a step), so a row never keeps more than a few hundred tokens.

Rows are independent: the loss is summed over rows, each row's term being its own KLDivLoss(mean), so every row gets
exactly the gradient it would get alone, and AdamW acts elementwise.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass

import torch

from deepen.errors import DeepenError
from deepen.relative import RelativeSpace
from deepen.search import reachable_gap, search

@dataclass(frozen=True)
class FusionConfig:
    """How each step fuses (names follow the paper; defaults follow the release).

    Attributes:
        eta: the relative ensemble learning rate; 0 means "main model alone".
        steps: T, search iterations per token.
        weights: one per member, non-negative, summing to 1; None = uniform (DeePEn-Avg).
        mode: 'fast' (default) or 'paper'.
        topk: fast mode, most rows computed per member and row.
        mass: fast mode, keep a member's top tokens until they cover this much probability.
    """

    eta: float = 0.15
    steps: int = 5
    weights: tuple[float, ...] | None = None
    mode: str = "fast"
    topk: int = 64
    mass: float = 0.999

    def validate(self, n_members: int) -> "FusionConfig":
        if not (isinstance(self.eta, (int, float)) and math.isfinite(self.eta) and self.eta >= 0):
            raise DeepenError(f"eta must be a finite number >= 0, got {self.eta!r}")
        if not isinstance(self.steps, int) or self.steps < 1:
            raise DeepenError(f"steps must be an integer >= 1, got {self.steps!r}")
        if self.mode not in ("fast", "paper"):
            raise DeepenError(f"mode must be 'fast' or 'paper', got {self.mode!r}")
        if not isinstance(self.topk, int) or self.topk < 1:
            raise DeepenError(f"topk must be an integer >= 1, got {self.topk!r}")
        if not 0 < self.mass <= 1:
            raise DeepenError(f"mass must be in (0, 1], got {self.mass!r}")
        if self.weights is not None:
            w = list(self.weights)
            if len(w) != n_members:
                raise DeepenError(f"weights: got {len(w)} for {n_members} members; give one weight per member")
            if any((not isinstance(x, (int, float))) or not math.isfinite(x) or x < 0 for x in w):
                raise DeepenError(f"weights must be finite and non-negative, got {w}")
            if abs(sum(w) - 1.0) > 1e-6:
                raise DeepenError(f"weights must sum to 1, got {w} (sum {sum(w):.6g})")
        return self

    def member_weights(self, n_members: int) -> list[float]:
        return list(self.weights) if self.weights is not None else [1.0 / n_members] * n_members


class Fuser:
    """Per-step fusion policy for one ensemble: member relative spaces + a FusionConfig."""

    def __init__(self, spaces: list[RelativeSpace], config: FusionConfig):
        self.spaces = spaces
        self.config = config.validate(len(spaces))
        self.weights = self.config.member_weights(len(spaces))
        self.gap = reachable_gap(config.eta, config.steps) if config.eta > 0 else 0.0
        self._dense: list[torch.Tensor] | None = None
        self.clock = defaultdict(float)  # seconds spent in the relative transform and in the search
        self.fused = 0  # rows fused so far (a batch of B rows counts B)
        self.contender_cap = 4 * self.config.topk

    # -- paper mode ----------------------------------------------------------------------------------------------
    def dense(self) -> list[torch.Tensor]:
        if self._dense is None:
            self._dense = [s.dense() for s in self.spaces]
        return self._dense

    def fuse_paper(self, main_logits: torch.Tensor, probs: list[torch.Tensor]) -> torch.Tensor:
        """Fused main logits [B, |V_0|] with dense matrices; ``probs`` holds each member's p_i [B, |V_i|]."""
        dense = self.dense()
        tick = time.perf_counter()
        with torch.no_grad():
            target = sum(w * (p.float() @ R) for w, p, R in zip(self.weights, probs, dense))
        self.clock["relative"] += time.perf_counter() - tick
        tick = time.perf_counter()
        z = search(main_logits, dense[0], target, self.config.eta, self.config.steps)
        self.clock["search"] += time.perf_counter() - tick
        return z

    # -- fast mode -----------------------------------------------------------------------------------------------
    def _support(self, probs: torch.Tensor, extra: torch.Tensor | None = None):
        """Kept tokens per row: top tokens until ``mass`` is covered (<= topk), plus ``extra`` [B, V] bool.

        Returns (ids [U] sorted unique over the batch, keep [B, U] bool)."""
        cfg = self.config
        k = min(cfg.topk, probs.shape[-1])
        vals, idx = probs.topk(k, dim=-1)
        before = vals.cumsum(-1) - vals  # mass strictly above each position
        take = before < cfg.mass if cfg.mass < 1 else torch.ones_like(vals, dtype=torch.bool)
        chosen = torch.zeros_like(probs, dtype=torch.bool).scatter_(-1, idx, take)
        if extra is not None:
            chosen |= extra
        ids = chosen.any(0).nonzero().squeeze(-1)
        return ids, chosen[:, ids]

    def _relative_fast(self, i: int, probs: torch.Tensor, extra=None):
        """r_i for a batch [B, |A|], with what the search needs for the main model: the kept ids [U], keep [B, U],
        their rows [U, |A|], and per tail cluster the tail mass [B, C] and the number of tail tokens [B, C]."""
        space = self.spaces[i]
        ids, keep = self._support(probs, extra)
        rows = space.rows(ids)  # [U, |A|]
        cluster, tail_rows, sizes = space.tail
        p = probs[:, ids].float() * keep
        tail = probs.float().clone()
        tail[:, ids] = tail[:, ids].masked_fill(keep, 0.0)
        tail_mass = torch.zeros(len(probs), len(tail_rows), device=probs.device).index_add_(1, cluster, tail)
        r = p @ rows + tail_mass @ tail_rows
        tail_count = sizes - torch.zeros_like(tail_mass).index_add_(1, cluster[ids], keep.float())
        return r, ids, keep, rows, tail_mass, tail_count

    def fuse_fast(self, main_logits: torch.Tensor, probs: list[torch.Tensor], allowed: torch.Tensor | None = None):
        """Fast mode. Returns (kept main ids [U], fused logits [B, U]) with -inf where a row did not keep a token.

        ``allowed`` [B, |V_0|] bool (e.g. the option letters of a multiple-choice question) is kept as well."""
        tick = time.perf_counter()
        logits = main_logits.float()
        top = logits.max(-1, keepdim=True).values
        contenders = logits >= top - self.gap  # every token that can still win the search
        cap = self.contender_cap
        if cap is not None and contenders.shape[-1] > cap and int(contenders.sum(-1).max()) > cap:  # flat
            contenders &= logits >= logits.topk(cap, dim=-1).values[:, -1:]
        if allowed is not None:
            contenders = contenders | allowed
        r0, ids, keep, rows0, tail_mass, tail_count = self._relative_fast(0, probs[0], extra=contenders)
        with torch.no_grad():
            target = self.weights[0] * r0
            for i in range(1, len(self.spaces)):
                target = target + self.weights[i] * self._relative_fast(i, probs[i])[0]
            z = logits[:, ids].masked_fill(~keep, float("-inf"))
            # one pseudo-token per tail cluster: the log of its tokens' mean probability, on the logits' scale
            log_z = torch.logsumexp(logits, dim=-1, keepdim=True)
            z_tail = (tail_mass / tail_count.clamp_min(1)).log() + log_z  # -inf for an empty (or massless) cluster
            z_tail = z_tail.masked_fill(tail_count < 1, float("-inf"))
            counts = torch.cat([torch.ones_like(z), tail_count], -1)
            relative = [rows0, self.spaces[0].tail[1]]
        self.clock["relative"] += time.perf_counter() - tick
        tick = time.perf_counter()
        z = search(torch.cat([z, z_tail], -1), relative, target, self.config.eta, self.config.steps, counts)
        self.clock["search"] += time.perf_counter() - tick
        return ids, z[:, : len(ids)]

    # -- both ----------------------------------------------------------------------------------------------------
    def choose(self, main_logits: torch.Tensor, probs: list[torch.Tensor], allowed: torch.Tensor | None = None):
        """The next token per row after fusion, [B] long; with ``allowed`` [B, |V_0|] bool also the best allowed token.

        ``probs[0]`` is the main model's own distribution. Returns (free choice [B], restricted choice [B] or None).
        The release's skip rules (eta == 0, main argmax EOS) are applied by the caller, which then does not fuse."""
        self.fused += len(main_logits)
        if self.config.mode == "paper":
            ids, fused = None, self.fuse_paper(main_logits, probs)
        else:
            ids, fused = self.fuse_fast(main_logits, probs, allowed)
        free = fused.argmax(-1)
        restricted = None
        if allowed is not None:
            mask = allowed if ids is None else allowed[:, ids]
            restricted = fused.masked_fill(~mask, float("-inf")).argmax(-1)
        if ids is not None:
            free = ids[free]
            restricted = None if restricted is None else ids[restricted]
        return free, restricted
