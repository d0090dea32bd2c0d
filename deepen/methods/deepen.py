"""DeePEn (Huang et al., NeurIPS 2024): fuse the members' distributions in the relative space of their shared
anchors, then search the main model's logits towards the fused distribution (``deepen.fuse``).

Per step and row: the main model's next token, unless fusion can change it. The release's skip rules: eta = 0 (or
one member) means the main model alone, and a row whose main argmax is EOS keeps it. Fast mode also skips a row whose
top token no other token can reach within the search's bounded moves (``Fuser.gap``): the argmax after the search is
the argmax now, so the assistants are not even run; they catch up, several tokens at once, at the next step that needs
them. Paper mode, and the release's re-prefill scheme, run every member at every step.
"""

from __future__ import annotations

import time

import torch

from deepen.anchors import Anchors, find_anchors
from deepen.decoding import Batch, Piece, StepOutput
from deepen.errors import DeepenError
from deepen.fuse import Fuser, FusionConfig
from deepen.memory import release_freed_memory
from deepen.progress import log
from deepen.relative import RelativeSpace
from deepen.vocabulary import normalise_vocabulary


def available_memory_bytes(device: torch.device | str = "cpu") -> int | None:
    """Memory free for new tensors on ``device`` (None when unknown)."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def vocabulary_sizes(members) -> list[int]:
    """The tokens of each member that have both an input embedding and an output logit."""
    return [min(m.vocab_size, m.model.get_input_embeddings().weight.shape[0]) for m in members]


class DeePEn:
    """DeePEn over ``members`` (the first is the main model).

    Args:
        weights, eta, steps, mode, topk, mass, certify, max_contenders: the fusion settings (``FusionConfig``).
        anchors / spaces: a prebuilt anchor set and relative spaces (else built from the members).
        min_anchors / max_anchors: see ``find_anchors``.
        sync: how members are kept in sync ('cache' or the release's 'reprefill'); fast mode skips steps lazily
            only with the cache.
        max_dense_bytes: paper mode's memory budget (default: 90% of the memory available now).
        row_cache: relative rows kept per member in fast mode, at least (the cache grows with the batch).
    """

    def __init__(self, members, *, weights=None, eta: float = FusionConfig.eta, steps: int = FusionConfig.steps,
                 mode: str = FusionConfig.mode, topk: int = FusionConfig.topk, mass: float = FusionConfig.mass,
                 certify: bool | str = FusionConfig.certify, max_contenders: int = FusionConfig.max_contenders,
                 anchors: Anchors | None = None, spaces: list[RelativeSpace] | None = None, min_anchors: int = 1000,
                 max_anchors: int | None = None, sync: str = "cache", max_dense_bytes: int | None = None,
                 row_cache: int = 128, progress: bool = True):
        self.members = list(members)
        self.config = FusionConfig(eta=eta, steps=steps, weights=None if weights is None else tuple(
            float(w) for w in weights), mode=mode, topk=topk, mass=mass, certify=certify,
            max_contenders=max_contenders).validate(len(self.members))
        self.sizes = vocabulary_sizes(self.members)
        self.anchors, self.spaces, self.fuser = anchors, spaces, None
        self._progress = progress
        if self.fuses:
            self._prepare(min_anchors, max_anchors, row_cache, max_dense_bytes)
        self.lazy = self.fuser is not None and self.config.mode == "fast" and sync == "cache"
        self.eager_members = [] if self.fuser is None or self.lazy else list(range(1, len(self.members)))
        self.main_rolls_back = False
        self._eos = torch.tensor(sorted(self.members[0].eos_ids), dtype=torch.long)

    @property
    def clock(self) -> dict[str, float]:
        """Seconds spent in the relative transform and in the search, cumulative."""
        return self.fuser.clock if self.fuser is not None else {}

    @property
    def fuses(self) -> bool:
        """Whether steps fuse at all (several members and eta > 0); otherwise the main model decodes alone."""
        return len(self.members) > 1 and self.config.eta > 0

    @property
    def decoding_members(self):
        """The members a decode runs: all of them, or the main model alone when nothing fuses."""
        return self.members if self.fuses else self.members[:1]

    def _prepare(self, min_anchors, max_anchors, row_cache, max_dense_bytes) -> None:
        if self.anchors is None:
            self._log("matching vocabularies into anchors...")
            vocabs = [normalise_vocabulary(m.tokenizer, n) for m, n in zip(self.members, self.sizes)]
            self.anchors = find_anchors(vocabs, [m.name for m in self.members], min_anchors=min_anchors,
                                        max_anchors=max_anchors)
            self._log(f"{len(self.anchors)} anchors")
            del vocabs
            release_freed_memory()
        certify = self.config.certifies
        if certify and self.config.certify == "auto":
            self._log(f"certifying fused steps: plain fast mode was not measured exact at η {self.config.eta}, "
                      f"T {self.config.steps} (deepen.exactness; certify=False runs it uncertified)")
        if self.spaces is None:
            self.spaces = [RelativeSpace.of_member(m, self.anchors.ids[i], n, cache_rows=row_cache, exact_tail=certify)
                           for i, (m, n) in enumerate(zip(self.members, self.sizes))]
        if self.config.mode == "paper":
            self._check_dense_fits(max_dense_bytes)
        self.fuser = Fuser(self.spaces, self.config, max_dense_bytes=self._dense_budget(max_dense_bytes))
        if self.config.mode == "fast":
            t0 = time.perf_counter()
            for s in self.spaces:  # computed once per member; the pipeline's relative stage stores it
                s.ensure_tail(progress=self._progress and certify)
            self._log(f"relative spaces ready ({time.perf_counter() - t0:.1f} s)")

    def _log(self, message: str) -> None:
        if self._progress:
            log(message)

    def _dense_budget(self, max_dense_bytes: int | None) -> int | None:
        """Memory the dense matrices may take: ``max_dense_bytes``, else 90% of what is available now."""
        if max_dense_bytes is not None:
            return max_dense_bytes
        free = available_memory_bytes(self.spaces[0].device)
        return None if free is None else int(free * 0.9)

    def _check_dense_fits(self, max_dense_bytes: int | None) -> None:
        sizes = [s.dense_bytes() for s in self.spaces]
        budget = self._dense_budget(max_dense_bytes)
        if budget is not None and sum(sizes) > budget:
            parts = ", ".join(f"{m.name}: {n / 1e9:.1f} GB" for m, n in zip(self.members, sizes))
            raise DeepenError(
                f"paper mode needs dense relative matrices of {sum(sizes) / 1e9:.1f} GB ({parts}; |V| x "
                f"{len(self.anchors)} anchors x 4 bytes) but only {budget / 1e9:.1f} GB is available; use mode 'fast' "
                "(--mode fast) or fewer anchors (--max-anchors)")

    # -- one step ------------------------------------------------------------------------------------------------
    def rows_to_fuse(self, main_logits: torch.Tensor, nxt: torch.Tensor, allowed) -> torch.Tensor:
        """The rows whose token fusion may change: not EOS (the release keeps it), and in fast mode (outside a
        multiple-choice first step) a row where some other token is within the search's reach of the top one."""
        fuse = ~torch.isin(nxt.cpu(), self._eos)
        if self.lazy and allowed is None:
            top = main_logits.max(-1, keepdim=True).values
            fuse &= ((main_logits >= top - self.fuser.gap).sum(-1) > 1).cpu()
        return fuse.nonzero().squeeze(-1)

    def step(self, batch: Batch, allowed: torch.Tensor | None) -> StepOutput:
        return self.decide(batch.view(), allowed, batch.clock)

    def decide(self, logits, allowed: torch.Tensor | None, clock: dict) -> StepOutput:
        """One step from the members' logits (``logits[i]`` [B, |V_i|]; an assistant's are read only if a row fuses)."""
        main_logits = logits[0]
        tick = time.perf_counter()
        nxt = main_logits.argmax(-1)
        restricted = None if allowed is None else main_logits.masked_fill(~allowed, float("-inf")).argmax(-1)
        ensembled = [False] * len(nxt)
        if self.fuser is not None:
            rows = self.rows_to_fuse(main_logits, nxt, allowed)
            clock["fuse"] += time.perf_counter() - tick
            if len(rows):
                every = [main_logits] + [logits[i] for i in range(1, len(self.members))]
                tick = time.perf_counter()
                probs = [torch.softmax(lg[rows].float(), -1) for lg in every]
                free, restr = self.fuser.choose(main_logits[rows], probs, None if allowed is None else allowed[rows])
                nxt[rows.to(nxt.device)] = free.to(nxt.device)
                if restr is not None:
                    restricted[rows.to(restricted.device)] = restr.to(restricted.device)
                for j in rows.tolist():
                    ensembled[j] = True
                clock["fuse"] += time.perf_counter() - tick
        return StepOutput([[Piece(token=t)] for t in nxt.tolist()], restricted, ensembled)
