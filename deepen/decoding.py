"""The batched greedy decoding loop, apart from its policies.

    while rows are active:
        output = method.step(batch, allowed)      # each active row's next piece(s) of text; a method (deepen.methods)
        batch.extend(output.pieces)               # appends, and stops rows: EOS, stop strings, length (`Stopping`)

A `Batch` holds the rows decoded together and every member's view of them. The continuation text is the truth all
members share: the main model reads its prompt ids plus the tokens chosen for it, every other member its own
encoding of prompt + continuation, brought up to date (``deepen.sync``: KV cache, longest common prefix) only when a
method asks for its logits. A method that picks text the main model has no single token for (a union vocabulary)
hands a text piece; the main model then re-encodes that row too.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from dataclasses import dataclass, field

import torch

from deepen.members import Member, context_error
from deepen.sync import CachedRunner, EncoderDecoderRunner, ReprefillRunner

_CONTEXT = 8  # prompt tokens decoded with the continuation, so that its first token keeps its leading space


@dataclass
class Generation:
    """One row's output.

    Attributes:
        text: the continuation, cut before the first stop string.
        token_ids: the main model's generated ids (including the EOS or the token that completed a stop string).
        stop_reason: 'eos', 'stop', 'length', or 'error: <why the row could not be decoded>'.
        choice: for multiple-choice rows, the option whose token scored highest after the first fused step.
        ensembled: how many of the row's steps the members decided together (the rest: the main model alone).
        seconds: wall time of the row's batch divided by the rows in it.
        timings: with ``timings=True``, seconds per part of the loop (per row) and counters.
    """

    text: str
    token_ids: list[int]
    stop_reason: str
    choice: str | None = None
    seconds: float = 0.0
    timings: dict = field(default_factory=dict)
    ensembled: int = 0


@dataclass(frozen=True)
class Piece:
    """One generated token of the ensemble's output: the main model's token, or a piece of text (union methods give
    both when the main model has that text as one token)."""

    token: int | None = None
    text: bytes | None = None


@dataclass
class StepOutput:
    """What a method decided for the active rows: their pieces (one list per row, in order; several when a method
    accepts a draft), on a multiple-choice first step the best allowed main-model token per row, and whether each
    row's step was ensembled (decided by the members together rather than by the main model alone)."""

    pieces: list[list[Piece]]
    choice: torch.Tensor | None = None
    ensembled: list[bool] | None = None


def row_error(members: list[Member], prompt: str, budget: int, source: str | None = None,
              src_lang: str | None = None, tgt_lang: str | None = None) -> str | None:
    """Why a row cannot be decoded at all (text that is not valid Unicode, or too long for a member), or None."""
    for what, text in (("prompt", prompt), ("source", source)):
        if text is None:
            continue
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            return (f"{what} is not valid text: {exc.reason} at character {exc.start} "
                    f"({text[max(0, exc.start - 10):exc.start + 10]!r})")
    return context_error(members, prompt, budget, source, src_lang, tgt_lang)


def _decode_after(tokenizer, context: list[int], tokens: list[int], context_text: str | None = None) -> str:
    """The text ``tokens`` add after ``context`` (decoded together, so that a first token keeps its leading space)."""
    opts = dict(skip_special_tokens=True, clean_up_tokenization_spaces=False)
    if context_text is None:
        context_text = tokenizer.decode(context, **opts)
    full = tokenizer.decode(context + tokens, **opts)
    return full[len(context_text):] if full.startswith(context_text) else tokenizer.decode(tokens, **opts)


def _join(prompt: str, continuation: str, word_start: bool) -> str:
    """``continuation`` as it follows ``prompt``: with a space in front when it starts at a word (an encoder-decoder
    main model's output) and the prompt does not end in whitespace."""
    if word_start and continuation and prompt and not prompt[-1].isspace() and not continuation[0].isspace():
        return " " + continuation
    return continuation


@dataclass
class Stopping:
    """When a row is done: the main model's EOS (unless ``ignore_eos``), a stop string in the text, or its budget."""

    eos_ids: frozenset[int]
    ignore_eos: bool = False

    def reason(self, row: "Row") -> str | None:
        if row.tokens[-1] in self.eos_ids and not self.ignore_eos:
            return "eos"
        if any(s and s in row.text for s in row.stops):
            return "stop"
        if len(row.tokens) >= row.budget:
            return "length"
        return None


@dataclass
class Row:
    """One prompt being decoded: the main model's view (its ids) and the shared continuation text."""

    budget: int
    stops: list[str]
    context: list[int]  # the main model's last prompt ids: decoded with the continuation (leading spaces)
    context_text: str
    tokens: list[int] = field(default_factory=list)  # the main model's generated ids
    text: str = ""
    text_bytes: bytes | None = None  # set once a text piece arrived: the continuation is these bytes from then on
    choice: str | None = None
    ensembled: int = 0
    result: Generation | None = None

    def output(self, reason: str) -> Generation:
        text = self.text
        if reason == "stop":
            text = text[: min(text.find(s) for s in self.stops if s and s in text)]
        return Generation(text, self.tokens, reason, self.choice, ensembled=self.ensembled)


class Batch:
    """The rows decoded together, and each member's runner over them (``deepen.sync``).

    ``logits(i)`` is member i's next-token distribution (logits over its first ``sizes[i]`` tokens) for the current
    text of every active row, computed on demand and kept until the rows change, so members a step does not need are
    not run (they catch up later, several tokens at once)."""

    def __init__(self, members: list[Member], prompts: list[str], *, budgets: list[int], stops: list[list[str]],
                 sizes: list[int], sync: str = "cache", main_rolls_back: bool = False, sources=None, src_langs=None,
                 tgt_langs=None):
        n = len(prompts)
        self.members, self.sizes, self.n = members, sizes, n
        self.clock: dict[str, float] = defaultdict(float)
        self.step = 0
        self.active = list(range(n))  # batch rows still decoding, in runner row order
        self._texts = [[m.format_prompt(p) for p in prompts] for m in members]
        self._sources = sources or [None] * n
        self._src_langs, self._tgt_langs = src_langs or [None] * n, tgt_langs or [None] * n
        with self._timed("tokenizer"):
            self._prompt_ids = [self._first_ids(m, t) for m, t in zip(members, self._texts)]
        self.runners = [self._runner(m, sync, rollback=i > 0 or main_rolls_back) for i, m in enumerate(members)]
        for m, r, t in zip(members, self.runners, self._texts):
            if m.seq2seq:  # the encoder reads each row's source once (its prompt when it has none)
                with self._timed("prefill"):
                    r.encode(m.encode_source([s if s is not None else p for s, p in zip(self._sources, t)],
                                             self._src_langs))
        main = members[0]
        contexts = [ids[-_CONTEXT:] for ids in self._prompt_ids[0]]
        self.rows = [Row(budget, list(stop), ctx, main.tokenizer.decode(ctx, skip_special_tokens=True,
                                                                         clean_up_tokenization_spaces=False))
                     for budget, stop, ctx in zip(budgets, stops, contexts)]
        self._logits: dict[int, torch.Tensor] = {}

    # -- members' views ------------------------------------------------------------------------------------------
    def _first_ids(self, member: Member, texts: list[str]) -> list[list[int]]:
        """What a member reads before the first generated token: its prompt, or an encoder-decoder member's decoder
        start tokens (its encoder reads the source)."""
        if member.seq2seq:
            return [member.decoder_prefix(lang) for lang in self._tgt_langs]
        return member.tokenizer(texts, add_special_tokens=True)["input_ids"]

    @staticmethod
    def _runner(member: Member, sync: str, rollback: bool):
        pad = member.tokenizer.pad_token_id
        pad = pad if pad is not None else (member.tokenizer.eos_token_id or 0)
        if member.seq2seq:
            return EncoderDecoderRunner(member.model, pad, reprefill=sync == "reprefill" and rollback)
        if sync == "reprefill" and rollback:
            return ReprefillRunner(member.model)
        return CachedRunner(member.model, pad, rollback=rollback)

    @contextlib.contextmanager
    def _timed(self, key: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.clock[key] += time.perf_counter() - t0

    def member_ids(self, i: int) -> list[list[int]]:
        """The ids member i reads for the current text of each active row (main model: its own tokens while it has
        one for every piece; otherwise, and for every other member, its encoding of prompt + continuation)."""
        return self.ids_for(i, self.active, [self.rows[b].text for b in self.active])

    def ids_for(self, i: int, rows: list[int], texts: list[str]) -> list[list[int]]:
        """Member i's ids for batch rows ``rows`` continued by ``texts`` (a draft's text, for one); the main model
        reads its own tokens for a row with no text piece (when ``texts`` are the rows' own)."""
        member = self.members[i]
        own = [i == 0 and self.rows[b].text_bytes is None and t == self.rows[b].text for b, t in zip(rows, texts)]
        out: list[list[int] | None] = [self._prompt_ids[0][b] + self.rows[b].tokens if o else None
                                       for b, o in zip(rows, own)]
        todo = [j for j, o in enumerate(own) if not o]
        if not todo:
            return out
        if member.seq2seq:
            encoded = [self._prompt_ids[i][rows[j]] + t for j, t in
                       zip(todo, member.encode_target([texts[j] for j in todo]))]
        else:
            word_start = self.members[0].seq2seq
            prompts = [self._texts[i][rows[j]] for j in todo]
            encoded = member.tokenizer([p + _join(p, texts[j], word_start) for p, j in zip(prompts, todo)],
                                       add_special_tokens=True)["input_ids"]
        for j, ids in zip(todo, encoded):
            out[j] = ids
        return out

    def draft_text(self, b: int, tokens: list[int]) -> str:
        """Row b's continuation as it would read with the main model's ``tokens`` appended (a draft)."""
        row, tokenizer = self.rows[b], self.members[0].tokenizer
        if not tokens:
            return row.text
        if row.text_bytes is None:
            return _decode_after(tokenizer, row.context, row.tokens + tokens, row.context_text)
        context = row.tokens[-_CONTEXT:]
        return row.text + _decode_after(tokenizer, context, tokens)

    def logits(self, i: int) -> torch.Tensor:
        """Member i's next-token logits [active rows, sizes[i]] for the current text (cached until rows change)."""
        if i not in self._logits:
            with self._timed("tokenizer"):
                ids = self.member_ids(i)
            key = "forward_assistants" if i else "prefill" if self.step == 0 else "forward_main"
            with self._timed(key):
                self._logits[i] = self.runners[i].step(ids)[:, : self.sizes[i]]
        return self._logits[i]

    def view(self) -> "Logits":
        """The members' logits for the current text, each computed when first read (``Logits``)."""
        return Logits(self)

    def sync(self, members: list[int]) -> None:
        """Bring ``members`` up to date now (paper mode and the reference scheme run every member every step)."""
        if self.active:
            for i in members:
                self.logits(i)

    # -- rows ----------------------------------------------------------------------------------------------------
    def extend(self, output: StepOutput, stopping: Stopping) -> None:
        """Append each active row's pieces in order (a row that stops ignores the rest), then retire stopped rows."""
        main = self.members[0]
        ensembled = output.ensembled or [False] * len(self.active)
        with self._timed("tokenizer"):
            for b, row_pieces, together in zip(self.active, output.pieces, ensembled):
                row = self.rows[b]
                row.ensembled += int(together)
                for piece in row_pieces:
                    self._append(row, piece, main)
                    if (reason := stopping.reason(row)) is not None:
                        row.result = row.output(reason)
                        break
        self.step += 1
        self._logits.clear()
        still = [j for j, b in enumerate(self.active) if self.rows[b].result is None]
        self.active = [self.active[j] for j in still]
        for r in self.runners:
            r.select(still)

    def _append(self, row: Row, piece: Piece, main: Member) -> None:
        if piece.token is not None and row.text_bytes is None:  # the main model's own token: decode its ids
            row.tokens.append(int(piece.token))
            row.text = _decode_after(main.tokenizer, row.context, row.tokens, row.context_text)
            return
        # a text piece: from now on the row's continuation is bytes, and the main model re-encodes it like the others
        text = piece.text if piece.text is not None else main.tokenizer.decode([piece.token]).encode()
        row.text_bytes = (row.text.encode("utf-8", "replace") if row.text_bytes is None else row.text_bytes) + text
        row.text = row.text_bytes.decode("utf-8", "replace")
        ids = [piece.token] if piece.token is not None else main.tokenizer(
            piece.text.decode("utf-8", "replace"), add_special_tokens=False)["input_ids"]
        row.tokens.extend(int(t) for t in ids or [main.tokenizer.unk_token_id or 0])

    def choice_mask(self, labels: list[dict[int, str] | None]) -> torch.Tensor | None:
        """[active rows, sizes[0]] bool: the main-model tokens that answer each multiple-choice row (all tokens for a
        row without options), or None when no active row has options."""
        rows = [labels[b] for b in self.active]
        if not any(rows):
            return None
        mask = torch.zeros(len(rows), self.sizes[0], dtype=torch.bool, device=self.runners[0].device)
        for j, allowed in enumerate(rows):
            if allowed:
                mask[j, list(allowed)] = True
            else:
                mask[j] = True
        return mask


class Logits:
    """Member i's next-token logits as ``logits[i]`` [active rows, sizes[i]], read from the batch on first use: a
    method that does not look at a member does not run it."""

    def __init__(self, batch: Batch):
        self.batch = batch

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.batch.logits(i)

    def __len__(self) -> int:
        return len(self.batch.members)


def choice_tokens(tokenizer, labels: list[str]) -> dict[int, str]:
    """Main-model token ids that answer with each option (" A" and "A"), first option wins a shared id."""
    out: dict[int, str] = {}
    for label in labels:
        for form in (" " + label, label):
            ids = tokenizer(form, add_special_tokens=False)["input_ids"]
            if ids:
                out.setdefault(int(ids[0]), label)
    return out


@torch.no_grad()
def decode_batch(method, batch: Batch, choices: list[list[str]] | None, stopping: Stopping) -> list[Generation]:
    """Greedy decoding of one batch with ``method`` until every row has stopped; rows in prompt order."""
    t0 = time.perf_counter()
    labels = [choice_tokens(batch.members[0].tokenizer, c) if c else None for c in (choices or [None] * batch.n)]
    while batch.active:
        allowed = batch.choice_mask(labels) if batch.step == 0 else None
        output = method.step(batch, allowed)
        if output.choice is not None:
            for b, token in zip(batch.active, output.choice.tolist()):
                if labels[b]:
                    batch.rows[b].choice = labels[b].get(int(token))
        batch.extend(output, stopping)
        batch.sync(method.eager_members)
    seconds = (time.perf_counter() - t0) / batch.n
    for row in batch.rows:
        row.result.seconds = seconds
    return [row.result for row in batch.rows]
