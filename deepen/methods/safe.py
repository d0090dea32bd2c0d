"""SAFE (Yun, Ki, Lee, Yang, "When to Ensemble: Identifying Token-Level Points for Stable and Fast LLM Ensembling",
ICLR 2026): ensemble only where it is safe and needed, on top of a base method (``safe+deepen``, ``safe+gac``,
``safe+unite``).

Per step and row:

1. the main model (the *drafter*) drafts ``draft`` tokens greedily (n = 5), alone;
2. every other member (a *verifier*) reads the drafted text, in its own tokenisation, in one forward pass
   (``CachedRunner.span``: its distribution after each of its tokens);
3. the first draft position that needs ensembling is found. A position needs it when (i) the text before it ends on
   a token boundary of every verifier (otherwise the token before it was cut differently, "OOV-like", and a verifier
   has no distribution there) and (ii) the members may disagree: it is skipped when every verifier's own next token
   there is its most likely one, or when the weighted mean of the members' probabilities of their own next tokens
   exceeds 1/2 (then the drafted token is the ensemble's choice; the paper's theorem);
4. at that position the base method chooses the token from the members' distributions there; the draft before it is
   accepted, the rest dropped (the caches are cropped at the next step, ``deepen.sync``). Without such a position the
   whole draft is accepted.

Choices where the paper is silent or where this harness differs (docs/methods.md): boundaries are compared on the
bytes tokens decode to (``deepen.vocabulary``), counted from the end of the text (robust to a tokenizer's leading
dummy space); a drafted end-of-sequence is verified as each verifier's own end-of-sequence token; the weighted mean
uses the base method's weights; a multiple-choice first step (a one-token answer) is decided by the base method
directly. The paper's probability sharpening is not implemented: the base method's distribution is used as it is.
"""

from __future__ import annotations

import time

import torch

from deepen.decoding import Batch, Piece, StepOutput
from deepen.errors import DeepenError
from deepen.methods import build_method
from deepen.methods.deepen import vocabulary_sizes
from deepen.vocabulary import normalise_vocabulary


class SAFE:
    """SAFE over ``members`` (main model = drafter first) with base method ``base`` and its ``options``."""

    def __init__(self, members, *, base: str = "deepen", draft: int = 5, sync: str = "cache", progress: bool = True,
                 **options):
        if not isinstance(draft, int) or draft < 1:
            raise DeepenError(f"draft must be an integer >= 1, got {draft!r}")
        if sync != "cache":
            raise DeepenError("SAFE drafts and verifies through the members' KV caches: use sync 'cache'")
        if any(m.seq2seq for m in members):
            raise DeepenError("SAFE verifies drafts with decoder-only members; an encoder-decoder member cannot take part")
        self.base = build_method(base, members, sync=sync, progress=progress, **options)
        self.members = list(members)
        self.draft = draft
        self.decoding_members = self.base.decoding_members
        self.eager_members: list[int] = []
        self.main_rolls_back = True  # a rejected draft is taken back
        self.clock = self.base.clock
        self.weights = _weights(self.base, len(self.members))
        self._bytes = [[len(t) for t in normalise_vocabulary(m.tokenizer, n).texts]
                       for m, n in zip(self.members, vocabulary_sizes(self.members))]

    def step(self, batch: Batch, allowed: torch.Tensor | None) -> StepOutput:
        if allowed is not None or len(self.decoding_members) == 1:
            return self.base.step(batch, allowed)
        drafts, draft_logits = self._draft(batch)
        texts = [[batch.draft_text(b, d[:k]) for k in range(len(d) + 1)] for b, d in zip(batch.active, drafts)]
        verified = [self._verify(batch, i, texts) for i in range(1, len(self.members))]
        tick = time.perf_counter()
        first = [self._first_needing_ensemble(j, d, draft_logits, verified) for j, d in enumerate(drafts)]
        pieces = [[Piece(token=t) for t in d[: len(d) if k is None else k]] for d, k in zip(drafts, first)]
        rows = [(j, k) for j, k in enumerate(first) if k is not None]
        if rows:  # the base method decides every row that needs it in one batch
            logits = [torch.stack([draft_logits[k][j] for j, k in rows])]
            logits += [torch.stack([v[j][k] for j, k in rows]) for v in verified]
            for (j, _), chosen in zip(rows, self.base.decide(logits, None, batch.clock).pieces):
                pieces[j] += chosen
        batch.clock["fuse"] += time.perf_counter() - tick
        return StepOutput(pieces, None, [k is not None for k in first])

    # -- the draft -----------------------------------------------------------------------------------------------
    def _draft(self, batch: Batch) -> tuple[list[list[int]], list[torch.Tensor]]:
        """Each active row's ``draft`` greedy tokens of the main model alone (stopping at its EOS), and the main
        model's logits before each of them [rows, |V_0|]."""
        eos = self.members[0].eos_ids
        ids = batch.member_ids(0)
        logits = [batch.logits(0)]
        drafts = [[t] for t in logits[0].argmax(-1).tolist()]
        for _ in range(self.draft - 1):
            if all(d[-1] in eos for d in drafts):
                break
            step = batch.runners[0].step([r + d for r, d in zip(ids, drafts)])[:, : batch.sizes[0]]
            logits.append(step)
            for d, t in zip(drafts, step.argmax(-1).tolist()):
                d.append(d[-1] if d[-1] in eos else t)
        return [_until_eos(d, eos) for d in drafts], logits

    # -- verification --------------------------------------------------------------------------------------------
    def _verify(self, batch: Batch, i: int, texts: list[list[str]]) -> list[dict[int, torch.Tensor | None]]:
        """Verifier i on the drafted texts: per row, draft position k -> its logits [|V_i|] after the text before
        token k, where that text ends on one of its token boundaries (the position is absent otherwise); and under
        key ("next", k) its own next token there."""
        rows = batch.active
        ids = batch.ids_for(i, rows, [t[-1] for t in texts])
        ends = [self._ends(i, r) for r in ids]
        full = [e[-1] for e in ends]
        # byte offset of each draft boundary, counted from the end of the text
        bounds = [[f - (len(t[-1].encode()) - len(x.encode())) for x in t[:-1]] for f, t in zip(full, texts)]
        at = [[e.index(b) if b in e else None for b in bs] for e, bs in zip(ends, bounds)]
        start = [min([p for p in a if p is not None], default=len(r) - 1) for a, r in zip(at, ids)]
        spans = batch.runners[i].span(ids, start)
        out = []
        for a, s, span, r in zip(at, start, spans, ids):
            row = {}
            for k, p in enumerate(a):
                if p is not None:
                    row[k] = span[p - s][: batch.sizes[i]]
                    row[("next", k)] = r[p + 1] if p + 1 < len(r) else None
            out.append(row)
        return out

    def _ends(self, i: int, ids: list[int]) -> list[int]:
        """Byte offset at which each token of ``ids`` ends, counted so that the last one ends at the text's length."""
        sizes = self._bytes[i]
        ends, total = [], 0
        for t in ids:
            total += sizes[t] if t < len(sizes) else 0
            ends.append(total)
        return ends

    def _first_needing_ensemble(self, j: int, draft: list[int], draft_logits, verified) -> int | None:
        """The first draft position of row j where the boundary before it is shared by every verifier and the
        members may disagree (the paper's checks (i) and (ii)); None when the whole draft stands."""
        eos = self.members[0].eos_ids
        for k, token in enumerate(draft):
            if any(k not in v[j] for v in verified):
                continue  # (i): a verifier cut the text before this token differently
            probs = [float(torch.softmax(draft_logits[k][j].float(), -1)[token])]
            agree = True
            for i, v in enumerate(verified, start=1):
                logits = v[j][k].float()
                own = min(self.members[i].eos_ids) if token in eos else v[j][("next", k)]
                if own is None:
                    break
                probs.append(float(torch.softmax(logits, -1)[own]))
                agree &= int(logits.argmax()) == own
            else:
                if agree or sum(w * p for w, p in zip(self.weights, probs)) > 0.5:
                    continue  # (ii): the drafted token is the ensemble's choice
                return k
        return None


def _until_eos(draft: list[int], eos) -> list[int]:
    for k, t in enumerate(draft):
        if t in eos:
            return draft[: k + 1]
    return draft


def _weights(base, n: int) -> list[float]:
    """The base method's member weights (uniform where it has none)."""
    config = getattr(base, "config", None)
    if config is not None and hasattr(config, "member_weights"):
        return config.member_weights(n)
    return list(getattr(base, "weights", [1.0 / n] * n))
