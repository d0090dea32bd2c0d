"""Fuse the members' next-token distributions in the relative space, then search the main model's logits.

One decoding step (method.md §3), for a batch of rows:

    r_i  = p_i R_i                          relative distribution of member i over the anchors
    rbar = sum_i w_i r_i                    weighted aggregation
    z    = main logits (fp32 copy); T iterations of AdamW(eta) + CosineAnnealingLR(T_max=10, eta_min=eta/4) on
           KL(rbar || softmax(z) R_0) / |A|  (torch's KLDivLoss(reduction='mean') for one row; ``deepen.search``)
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
  token that can still win (the *contenders*): AdamW moves a logit by at most ~lr per iteration (bound computed in
  ``reachable_gap``), so a token whose logit trails the top one by more than twice the summed step sizes can never
  overtake it. Only when more than ``max_contenders`` tokens are within reach (a flat distribution) are the lowest
  left out, and that row cannot be certified.

**Certified** fast mode (``certify``; by default only at the (η, T) where plain fast mode was not measured exact,
``deepen.exactness``) proves each fused row's choice with bounds on paper mode's search
(``deepen.certify``). A row the bounds cannot settle is redone with a larger kept set (``ESCALATION``: more of each
member's tokens exact, less in the tail), then, where the dense matrices fit in memory, with paper mode's arithmetic;
a row still unsettled keeps fast mode's choice and is counted as uncertified (``Fuser.counts``).

Rows are independent: the loss is summed over rows, each row's term being its own KLDivLoss(mean), so every row gets
exactly the gradient it would get alone, and AdamW acts elementwise.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, replace

import torch

from deepen.certify import certified_choice, interval_search, target_bounds
from deepen.errors import DeepenError
from deepen.exactness import certifies
from deepen.relative import RelativeSpace
from deepen.search import reachable_gap, search

#: Kept sets a row the certificate cannot settle is redone with: (topk factor, tail-mass factor), in order.
ESCALATION = ((8, 1e-2),)


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
        certify: fast mode, prove each fused row's choice against paper mode's, escalating where it cannot: True,
            False, or "auto" (only at the (η, T) the agreement grid did not find plain fast mode exact at;
            ``deepen.exactness``).
        max_contenders: fast mode, most tokens kept as possible winners of one row (memory: one relative row each).
    """

    eta: float = 0.15
    steps: int = 5
    weights: tuple[float, ...] | None = None
    mode: str = "fast"
    topk: int = 64
    mass: float = 0.999
    certify: bool | str = "auto"
    max_contenders: int = 1024

    def validate(self, n_members: int) -> "FusionConfig":
        if not (isinstance(self.eta, (int, float)) and math.isfinite(self.eta) and self.eta >= 0):
            raise DeepenError(f"eta must be a finite number >= 0, got {self.eta!r}")
        if not isinstance(self.steps, int) or self.steps < 1:
            raise DeepenError(f"steps must be an integer >= 1, got {self.steps!r}")
        if self.mode not in ("fast", "paper"):
            raise DeepenError(f"mode must be 'fast' or 'paper', got {self.mode!r}")
        for name in ("topk", "max_contenders"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise DeepenError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if not (isinstance(self.certify, bool) or self.certify == "auto"):
            raise DeepenError(f"certify must be True, False or 'auto', got {self.certify!r}")
        if not (isinstance(self.mass, (int, float)) and 0 < self.mass <= 1):
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

    @property
    def certifies(self) -> bool:
        """Whether fused steps are certified under these settings (``certify`` resolved for this mode, η and T)."""
        return certifies(self.certify, self.mode, self.eta, self.steps)

    def member_weights(self, n_members: int) -> list[float]:
        return list(self.weights) if self.weights is not None else [1.0 / n_members] * n_members


@dataclass
class _Member:
    """One member's side of a fast step: its kept tokens and what its tail holds (for the search and the bounds)."""

    ids: torch.Tensor  # [U] kept token ids (union over the batch)
    keep: torch.Tensor  # [B, U] bool
    rows: torch.Tensor  # [U, |A|]
    kept: torch.Tensor  # [B, |A|] the kept tokens' part of p_i R_i (exact)
    tail_mass: torch.Tensor  # [B, C]
    tail_count: torch.Tensor  # [B, C] tail tokens per cluster
    own_mass: torch.Tensor  # [B, |A|] the probability of each anchor's own token where it is in the tail

    def relative(self, means: torch.Tensor) -> torch.Tensor:
        return self.kept + self.tail_mass @ means


class Fuser:
    """Per-step fusion policy for one ensemble: member relative spaces + a FusionConfig.

    ``counts`` tallies fused rows by how fast mode settled them: 'certified' (proven at the first kept set),
    'escalated' (proven with a larger one), 'exact' (paper mode's arithmetic), 'uncertified' (none of these)."""

    def __init__(self, spaces: list[RelativeSpace], config: FusionConfig, max_dense_bytes: int | None = None):
        self.spaces = spaces
        self.config = config.validate(len(spaces))
        if self.config.certifies and not all(s.exact_tail for s in spaces):
            raise DeepenError(f"certified fast mode (certify={config.certify!r} at η {config.eta}, T {config.steps}) "
                              "needs each relative space's exact tail (its clusters' envelopes): build the relative "
                              "caches with certify on, let the ensemble build its spaces, or pass certify=False")
        self.weights = self.config.member_weights(len(spaces))
        self.gap = reachable_gap(config.eta, config.steps) if config.eta > 0 else 0.0
        self._dense: list[torch.Tensor] | None = None
        self.max_dense_bytes = max_dense_bytes  # certified mode's exact fallback: None = never
        self.clock = defaultdict(float)  # seconds spent in the relative transform, the search and the bounds
        self.fused = 0  # rows fused so far (a batch of B rows counts B)
        self.counts: Counter = Counter()

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
    def _support(self, probs: torch.Tensor, config: FusionConfig, extra: torch.Tensor | None = None):
        """Kept tokens per row: top tokens until ``mass`` is covered (<= topk), plus ``extra`` [B, V] bool.

        Returns (ids [U] sorted unique over the batch, keep [B, U] bool)."""
        k = min(config.topk, probs.shape[-1])
        vals, idx = probs.topk(k, dim=-1)
        before = vals.cumsum(-1) - vals  # mass strictly above each position
        take = before < config.mass if config.mass < 1 else torch.ones_like(vals, dtype=torch.bool)
        chosen = torch.zeros_like(probs, dtype=torch.bool).scatter_(-1, idx, take)
        if extra is not None:
            chosen |= extra
        ids = chosen.any(0).nonzero().squeeze(-1)
        return ids, chosen[:, ids]

    def _member(self, i: int, probs: torch.Tensor, config: FusionConfig, extra=None) -> _Member:
        """Member i's kept tokens, their rows, and its tail per cluster, for a batch of distributions [B, |V_i|]."""
        space = self.spaces[i]
        ids, keep = self._support(probs, config, extra)
        rows = space.rows(ids)  # [U, |A|]
        cluster, tail_rows, sizes = space.tail
        p = probs[:, ids].float() * keep
        tail = probs.float().clone()
        tail[:, ids] = tail[:, ids].masked_fill(keep, 0.0)
        tail_mass = torch.zeros(len(probs), len(tail_rows), device=probs.device).index_add_(1, cluster, tail)
        tail_count = sizes - torch.zeros_like(tail_mass).index_add_(1, cluster[ids], keep.float())
        return _Member(ids, keep, rows, p @ rows, tail_mass, tail_count, tail[:, space.anchor_ids])

    def contenders(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, V] bool: every token that can still win the search (within ``gap`` of the top), at most
        ``max_contenders`` per row; and [B] bool: rows where that cap left some out."""
        top = logits.max(-1, keepdim=True).values
        reach = logits >= top - self.gap
        over = reach.sum(-1) > self.config.max_contenders
        if bool(over.any()):  # a flat distribution: keep the highest logits only
            cut = logits.topk(min(self.config.max_contenders, logits.shape[-1]), dim=-1).values[:, -1:]
            reach &= logits >= cut
        return reach, over

    def fuse_fast(self, main_logits: torch.Tensor, probs: list[torch.Tensor], allowed: torch.Tensor | None = None,
                  config: FusionConfig | None = None, bounds: bool = False):
        """Fast mode. Returns (kept main ids [U], fused logits [B, U] with -inf where a row did not keep a token, and
        with ``bounds`` their lower and upper bounds [B, U] under paper mode's search, else None, None), plus the
        rows where the contender cap applied [B] bool.

        ``allowed`` [B, |V_0|] bool (e.g. the option letters of a multiple-choice question) is kept as well."""
        config = config or self.config
        tick = time.perf_counter()
        logits = main_logits.float()
        contenders, capped = self.contenders(logits)
        if allowed is not None:
            contenders = contenders | allowed
        members = [self._member(0, probs[0], config, extra=contenders)]
        members += [self._member(i, probs[i], config) for i in range(1, len(self.spaces))]
        main, (cluster, means, _) = members[0], self.spaces[0].tail
        with torch.no_grad():
            target = sum(w * m.relative(s.tail[1]) for w, m, s in zip(self.weights, members, self.spaces))
            z = logits[:, main.ids].masked_fill(~main.keep, float("-inf"))
            # one pseudo-token per tail cluster: the log of its tokens' mean probability, on the logits' scale
            log_z = torch.logsumexp(logits, dim=-1, keepdim=True)
            z_tail = (main.tail_mass / main.tail_count.clamp_min(1)).log() + log_z  # -inf for an empty cluster
            z_tail = z_tail.masked_fill(main.tail_count < 1, float("-inf"))
            counts = torch.cat([torch.ones_like(z), main.tail_count], -1)
        self.clock["relative"] += time.perf_counter() - tick
        tick = time.perf_counter()
        fused = search(torch.cat([z, z_tail], -1), [main.rows, means], target, config.eta, config.steps, counts)
        self.clock["search"] += time.perf_counter() - tick
        if not bounds:
            return main.ids, fused[:, : len(main.ids)], None, None, capped
        tick = time.perf_counter()
        t_lo, t_hi = target_bounds([(w, m.kept, m.tail_mass, m.own_mass, s.tail_bounds)
                                    for w, m, s in zip(self.weights, members, self.spaces)])
        z_lo, z_hi = interval_search(logits, main.ids, main.keep, main.rows, cluster, self.spaces[0].anchor_ids,
                                     self.spaces[0].tail_bounds, t_lo, t_hi, config.eta, config.steps)
        self.clock["certify"] += time.perf_counter() - tick
        return main.ids, fused[:, : len(main.ids)], z_lo, z_hi, capped

    # -- certified fast mode ---------------------------------------------------------------------------------------
    def _certified(self, main_logits, probs, allowed, config):
        """(free [B], restricted [B] or None, settled [B] bool) at one kept set: the proven choices where proven."""
        ids, fused, z_lo, z_hi, capped = self.fuse_fast(main_logits, probs, allowed, config, bounds=True)
        free = certified_choice(z_lo, z_hi)
        settled = (free >= 0) & ~capped
        restricted = None
        if allowed is not None:
            restricted = certified_choice(z_lo, z_hi, allowed[:, ids])
            settled &= restricted >= 0
            restricted = ids[restricted.clamp_min(0)]
        return ids[free.clamp_min(0)], restricted, settled

    def _dense_fits(self) -> bool:
        return self.max_dense_bytes is not None and sum(s.dense_bytes() for s in self.spaces) <= self.max_dense_bytes

    def choose_certified(self, main_logits, probs, allowed=None):
        """Certified fast mode: every fused row proven at the first kept set, or at a larger one, or decided with
        paper mode's arithmetic (where the dense matrices fit), else fast mode's choice (counted uncertified)."""
        free, restricted, settled = self._certified(main_logits, probs, allowed, self.config)
        self.counts["certified"] += int(settled.sum())
        for topk_factor, mass_factor in ESCALATION:
            rows = (~settled).nonzero().squeeze(-1)
            if not len(rows):
                break
            wider = replace(self.config, topk=self.config.topk * topk_factor,
                            mass=1 - (1 - self.config.mass) * mass_factor)
            f, r, s = self._certified(main_logits[rows], [p[rows] for p in probs],
                                      None if allowed is None else allowed[rows], wider)
            free[rows], settled[rows] = torch.where(s, f, free[rows]), settled[rows] | s
            if restricted is not None:
                restricted[rows] = torch.where(s, r, restricted[rows])
            self.counts["escalated"] += int(s.sum())
        rows = (~settled).nonzero().squeeze(-1)
        if len(rows) and self._dense_fits():
            fused = self.fuse_paper(main_logits[rows], [p[rows] for p in probs])
            free[rows] = fused.argmax(-1)
            if restricted is not None:
                restricted[rows] = fused.masked_fill(~allowed[rows], float("-inf")).argmax(-1)
            self.counts["exact"] += len(rows)
        elif len(rows):
            ids, fused, *_ = self.fuse_fast(main_logits[rows], [p[rows] for p in probs],
                                            None if allowed is None else allowed[rows])
            free[rows] = ids[fused.argmax(-1)]
            if restricted is not None:
                restricted[rows] = ids[fused.masked_fill(~allowed[rows][:, ids], float("-inf")).argmax(-1)]
            self.counts["uncertified"] += len(rows)
        return free, restricted

    # -- all modes -----------------------------------------------------------------------------------------------
    def choose(self, main_logits: torch.Tensor, probs: list[torch.Tensor], allowed: torch.Tensor | None = None):
        """The next token per row after fusion, [B] long; with ``allowed`` [B, |V_0|] bool also the best allowed token.

        ``probs[0]`` is the main model's own distribution. Returns (free choice [B], restricted choice [B] or None).
        The release's skip rules (eta == 0, main argmax EOS) are applied by the caller, which then does not fuse."""
        self.fused += len(main_logits)
        if self.config.certifies:
            return self.choose_certified(main_logits, probs, allowed)
        if self.config.mode == "paper":
            ids, fused = None, self.fuse_paper(main_logits, probs)
        else:
            ids, fused, *_ = self.fuse_fast(main_logits, probs, allowed)
        free = fused.argmax(-1)
        restricted = None
        if allowed is not None:
            mask = allowed if ids is None else allowed[:, ids]
            restricted = fused.masked_fill(~mask, float("-inf")).argmax(-1)
        if ids is not None:
            free = ids[free]
            restricted = None if restricted is None else ids[restricted]
        return free, restricted
