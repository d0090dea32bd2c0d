"""UniTE (Yao et al., "Determine-Then-Ensemble: Necessity of Top-k Union for Large Language Model Ensembling", ICLR
2025): average the members' distributions over the union of their top-k tokens only.

Per step and row:

1. each member's k tokens with the highest logits (k = 10); their texts (``deepen.vocabulary``: the bytes a token
   decodes to, not its spelling) form the union S, in order: the main model's top-k first, then each other member's
   new texts (so ties go to the main model's candidates). End-of-sequence is one entry for every member.
2. every member's logit for every text of S: its own token for that text where it has one (in or outside its top-k);
   otherwise the logit of the first token of its own encoding of that text (the paper's rule; a leading token that is
   only whitespace is skipped, as the authors' code intends). Where that first token already stands for another
   entry of S in this member, the later entry gets no probability from it (-inf: a member does not count one token
   twice; the authors' code gives such entries logit 0.0).
3. per member, a softmax over its logits for S only (not over its vocabulary); the weighted average (uniform, or by
   dev score); the text with the highest probability wins.
4. the main model's tokenizer drives the output: its token for the winning text, or the first token of its encoding
   of it (then the output is a prefix of the winning text, as in the authors' code).

Every step is ensembled. ``select`` (the paper's "Determine" step: keep the members within 10% of the best on dev) is
a pipeline option (``deepen.pipeline``), since it needs dev scores.
"""

from __future__ import annotations

import time

import torch

from deepen.decoding import Batch, Piece, StepOutput
from deepen.errors import DeepenError
from deepen.methods.deepen import vocabulary_sizes
from deepen.methods.gac import check_weights
from deepen.vocabulary import normalise_vocabulary, text_to_id

EOS = None  # the key of end-of-sequence in S


class UniTE:
    """UniTE over ``members`` (main model first).

    Args:
        weights: one per member (non-negative, sum 1); None = uniform.
        k: top tokens per member.
    """

    def __init__(self, members, *, weights=None, k: int = 10, sync: str = "cache", progress: bool = True):
        if not isinstance(k, int) or k < 1:
            raise DeepenError(f"k must be an integer >= 1, got {k!r}")
        self.members = list(members)
        self.weights = check_weights(weights, len(self.members))
        self.k = k
        sizes = vocabulary_sizes(self.members)
        vocabs = [normalise_vocabulary(m.tokenizer, n) for m, n in zip(self.members, sizes)]
        self.texts = [v.texts for v in vocabs]
        self.special = [[kind == "special" for kind in v.kinds] for v in vocabs]
        self.ids = [text_to_id(v) for v in vocabs]
        self._fallback: list[dict[bytes, int]] = [{} for _ in self.members]
        self.decoding_members = self.members
        self.eager_members: list[int] = []
        self.main_rolls_back = False  # the main model always emits one of its own tokens
        self.clock: dict[str, float] = {}  # its time is the batch's "fuse"

    # -- a member's token for a text -----------------------------------------------------------------------------
    def token(self, i: int, text: bytes | None) -> int:
        """Member i's token for ``text`` (EOS for None): its own, or the first non-whitespace token of its encoding."""
        member = self.members[i]
        if text is None:
            return min(member.eos_ids)
        if text in self.ids[i]:
            return self.ids[i][text]
        cache = self._fallback[i]
        if text not in cache:
            ids = member.tokenizer(text.decode("utf-8", "replace"), add_special_tokens=False)["input_ids"]
            first = next((t for t in ids if self.texts[i][t].strip()), ids[0] if ids else min(member.eos_ids))
            cache[text] = int(first)
        return cache[text]

    def key(self, i: int, token: int) -> bytes | None | bool:
        """The S key of member i's token: its text, EOS (None), or False for a special token that is neither."""
        if token in self.members[i].eos_ids:
            return EOS
        return False if self.special[i][token] or not self.texts[i][token] else self.texts[i][token]

    # -- one row -------------------------------------------------------------------------------------------------
    def union(self, logits: list[torch.Tensor], extra: list[bytes] = ()) -> list:
        """S for one row: each member's top-k keys in order (main first), plus ``extra`` texts."""
        keys = []
        for i, lg in enumerate(logits):
            for token in lg.topk(min(self.k, len(lg))).indices.tolist():
                key = self.key(i, token)
                if key is not False and key not in keys:
                    keys.append(key)
        return keys + [t for t in extra if t not in keys]

    def averaged(self, logits: list[torch.Tensor], keys: list) -> torch.Tensor:
        """The weighted average over members of their softmax over S [|S|]."""
        total = torch.zeros(len(keys))
        for i, (w, lg) in enumerate(zip(self.weights, logits)):
            tokens = [self.token(i, key) for key in keys]
            values = lg.float().cpu()[tokens]
            seen = set()
            for j, t in enumerate(tokens):  # one token counts once: a later entry it also stands for gets nothing
                if t in seen:
                    values[j] = float("-inf")
                seen.add(t)
            total += w * torch.softmax(values, -1)
        return total

    def choose_row(self, logits: list[torch.Tensor], allowed: list[int] | None = None):
        """(the main model's next token, the best allowed token or None) for one row."""
        extra = [self.texts[0][t] for t in allowed] if allowed else []
        keys = self.union(logits, extra)
        probs = self.averaged(logits, keys)
        free = self.token(0, keys[int(probs.argmax())])
        restricted = None
        if allowed:
            scores = torch.tensor([probs[keys.index(self.texts[0][t])] for t in allowed])
            restricted = allowed[int(scores.argmax())]
        return free, restricted

    def step(self, batch: Batch, allowed: torch.Tensor | None) -> StepOutput:
        return self.decide(batch.view(), allowed, batch.clock)

    def decide(self, logits, allowed: torch.Tensor | None, clock: dict) -> StepOutput:
        """One step from the members' logits (``logits[i]`` [B, |V_i|]), every row ensembled."""
        every = [logits[i] for i in range(len(self.members))]
        if len(self.members) == 1:
            nxt = every[0].argmax(-1)
            restricted = None if allowed is None else every[0].masked_fill(~allowed, float("-inf")).argmax(-1)
            return StepOutput([[Piece(token=t)] for t in nxt.tolist()], restricted)
        tick = time.perf_counter()
        pieces, restricted = [], []
        for j in range(len(every[0])):
            options = None
            if allowed is not None and not bool(allowed[j].all()):
                options = allowed[j].nonzero().squeeze(-1).tolist()
            free, restr = self.choose_row([lg[j] for lg in every], options)
            pieces.append([Piece(token=free)])
            restricted.append(free if restr is None else restr)
        clock["fuse"] += time.perf_counter() - tick
        choice = None if allowed is None else torch.tensor(restricted)
        return StepOutput(pieces, choice, [True] * len(pieces))
