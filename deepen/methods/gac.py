"""GaC (Yu et al., "Breaking the Ceiling of the LLM Community by Treating Token Generation as a Classification for
Ensembling", EMNLP Findings 2024): average the members' next-token distributions on the union of their vocabularies.

Per step and row: each member's distribution is mapped to the union (``deepen.methods.union``: tokens keyed by the
text they decode to), the union distributions are averaged with the weights (uniform, or by dev score), and the
entry with the highest probability is the next piece of text (ties: the main model's token). Where the main model
has a token for that text, it is its next token; otherwise the text is appended as text and the main model, like
every member, re-reads the continuation (``deepen.decoding``: resynchronised through its KV cache; GaC itself appends
each member's encoding of the piece in isolation and drops a member's cache whenever it gets several ids).

The gate (GaC's "key token" mode): where the main model's top probability exceeds ``gate`` the step takes the main
model's token without running the other members. ``gate`` = 0.5 as in later comparisons (SAFE); 1 ensembles every
step (GaC's example configuration).
"""

from __future__ import annotations

import math
import time

import torch

from deepen.decoding import Batch, Piece, StepOutput
from deepen.errors import DeepenError
from deepen.methods.deepen import vocabulary_sizes
from deepen.methods.union import UnionVocabulary


def check_weights(weights, n_members: int) -> list[float]:
    """One non-negative weight per member summing to 1 (None: uniform), or a DeepenError saying what is wrong."""
    if weights is None:
        return [1.0 / n_members] * n_members
    weights = [float(w) for w in weights]
    if len(weights) != n_members or any(not math.isfinite(w) or w < 0 for w in weights) or \
            abs(sum(weights) - 1) > 1e-6:
        raise DeepenError(f"weights must be {n_members} finite non-negative numbers summing to 1, got {weights}")
    return weights


class GaC:
    """GaC over ``members`` (main model first).

    Args:
        weights: one per member (non-negative, sum 1); None = uniform.
        gate: ensemble only where the main model's top probability is at most this (1 = every step).
    """

    def __init__(self, members, *, weights=None, gate: float = 0.5, sync: str = "cache", progress: bool = True):
        if not (isinstance(gate, (int, float)) and 0 < gate <= 1):
            raise DeepenError(f"gate must be in (0, 1], got {gate!r}")
        self.members = list(members)
        self.weights = check_weights(weights, len(self.members))
        self.gate = float(gate)
        self.union = UnionVocabulary(self.members, vocabulary_sizes(self.members)) if len(self.members) > 1 else None
        self.decoding_members = self.members
        self.eager_members: list[int] = []
        self.main_rolls_back = True  # a text the main model has no token for makes it re-read the continuation
        self.clock: dict[str, float] = {}  # its time is the batch's "fuse"

    def union_choice(self, logits: list[torch.Tensor], allowed: torch.Tensor | None = None):
        """The union entry with the highest averaged probability per row [B] and, with ``allowed`` [B, |V_0|], the best
        allowed main-model token [B]."""
        fused = sum(w * self.union.distribution(i, torch.softmax(lg.float(), -1))
                    for i, (w, lg) in enumerate(zip(self.weights, logits)))
        restricted = None
        if allowed is not None:
            entries = self.union.index[0].to(fused.device)
            scores = fused[:, entries.clamp_min(0)].masked_fill(~allowed | (entries < 0), float("-inf"))
            restricted = scores.argmax(-1)
        return fused.argmax(-1), restricted

    def piece(self, entry: int) -> Piece:
        """The piece of text a union entry stands for, with the main model's token where it has one."""
        token = int(self.union.back[0][entry])
        if entry == self.union.eos:
            return Piece(token=token)
        return Piece(token=token if token >= 0 else None, text=self.union.texts[entry])

    def step(self, batch: Batch, allowed: torch.Tensor | None) -> StepOutput:
        return self.decide(batch.view(), allowed, batch.clock)

    def decide(self, logits, allowed: torch.Tensor | None, clock: dict) -> StepOutput:
        """One step from the members' logits (``logits[i]`` [B, |V_i|]; the others' are read only past the gate)."""
        main = logits[0]
        top, nxt = torch.softmax(main.float(), -1).max(-1)
        restricted = None if allowed is None else main.masked_fill(~allowed, float("-inf")).argmax(-1)
        pieces = [[Piece(token=t)] for t in nxt.tolist()]
        ensembled = [False] * len(pieces)
        rows = (top <= self.gate).nonzero().squeeze(-1) if self.union is not None else torch.empty(0, dtype=torch.long)
        if len(rows):
            every = [main[rows]] + [logits[i][rows] for i in range(1, len(self.members))]
            tick = time.perf_counter()
            entries, restr = self.union_choice(every, None if allowed is None else allowed[rows])
            for j, entry in zip(rows.tolist(), entries.tolist()):
                pieces[j], ensembled[j] = [self.piece(entry)], True
            if restr is not None:
                restricted[rows] = restr
            clock["fuse"] += time.perf_counter() - tick
        return StepOutput(pieces, restricted, ensembled)
