"""The ensemble: members, a decoding method, and batched generation with one error-row policy.

    ens = Ensemble([load_member("smollm2-135m"), load_member("gemma3-270m")], eta=0.15)   # DeePEn, main model first
    out = ens.generate(["The capital of France is"], max_new_tokens=32, stop=["\\n"])
    ens = Ensemble(members, method="gac")                                                 # a peer method

Each step every member reads the same text (``deepen.sync``), the method (``deepen.methods``) turns their next-token
distributions into the next piece of text, and the loop (``deepen.decoding``) appends it and stops rows.

An encoder-decoder member (a specialist such as the translator NLLB) takes part like any other: its encoder reads the
row's source text once (``sources``; the prompt when there is none), its decoder reads its start tokens (and the target
language's token) followed by its own encoding of the text generated so far. It can be an assistant or the main model.
"""

from __future__ import annotations

from deepen.decoding import Batch, Generation, Stopping, decode_batch, row_error
from deepen.errors import DeepenError
from deepen.members import Member
from deepen.methods import build_method
from deepen.methods.deepen import vocabulary_sizes
from deepen.progress import bar
from deepen.sync import ContextWindowError


def _per_row(value, n: int, what: str) -> list:
    """A shared value (None, str or int) or one value per prompt, as a list of ``n``."""
    if value is None or isinstance(value, (str, int)):
        return [value] * n
    value = list(value)
    if len(value) != n:
        raise DeepenError(f"{what}: got {len(value)} values for {n} prompts")
    return value


def _check_distinct(members: list[Member]) -> None:
    seen = {}
    for m in members:
        key = id(m.model)
        if key in seen:
            raise DeepenError(f"member {m.name!r} is listed twice (as {seen[key]!r} too); an ensemble needs distinct "
                              "members")
        seen[key] = m.name


class Ensemble:
    """An ensemble of ``members`` (the first is the main model) decoded with ``method``.

    Args:
        members: loaded members, main model first.
        method: a name from ``deepen.methods.REGISTRY`` ("deepen", or "safe+deepen" and the like).
        sync: 'cache' (KV cache + resynchronisation) or 'reprefill' (the release's scheme, for reference).
        progress: messages and progress bars on stderr.
        **options: the method's options; DeePEn's: weights, eta, steps, mode, topk, mass, anchors, spaces,
            min_anchors, max_anchors, max_dense_bytes, row_cache (``deepen.methods.deepen.DeePEn``).
    """

    def __init__(self, members: list[Member], method: str = "deepen", *, sync: str = "cache", progress: bool = True,
                 **options):
        if not members:
            raise DeepenError("an ensemble needs at least one member")
        if sync not in ("cache", "reprefill"):
            raise DeepenError(f"sync must be 'cache' or 'reprefill', got {sync!r}")
        self.members = list(members)
        _check_distinct(self.members)
        self.sync, self.progress = sync, progress
        self.sizes = vocabulary_sizes(self.members)
        self.method_name, self.options = method, options
        self.method = build_method(method, self.members, sync=sync, progress=progress, **options)

    def with_options(self, **changes) -> Ensemble:
        """The same members and method with some options changed (e.g. ``eta=0.5``), without loading anything again:
        DeePEn's anchors and relative spaces carry over unless the change is to them."""
        anchor_options = {"anchors", "spaces", "min_anchors", "max_anchors"}
        reuse = {} if anchor_options & set(changes) else {
            k: getattr(self.method, k) for k in ("anchors", "spaces") if getattr(self.method, k, None) is not None}
        return Ensemble(self.members, self.method_name, sync=self.sync, progress=self.progress,
                        **(reuse | self.options | changes))

    @property
    def certificate(self) -> dict:
        """Certified fast mode's tally of fused steps so far: certified (proven by its bounds), escalated, exact (paper
        mode's arithmetic), uncertified (fast mode's token, unproven); {} where no step was certified."""
        fuser = getattr(getattr(self.method, "base", self.method), "fuser", None)  # safe+deepen: DeePEn underneath
        return dict(fuser.counts) if fuser is not None else {}

    @property
    def main(self) -> Member:
        return self.members[0]

    def generate(self, prompts: list[str], *, max_new_tokens: int | list[int] = 32,
                 stop: list[str] | list[list[str]] | None = None, choices: list[list[str]] | None = None,
                 batch_size: int = 8, timings: bool = False, ignore_eos: bool = False,
                 sources: list[str | None] | None = None, src_lang: str | list[str | None] | None = None,
                 tgt_lang: str | list[str | None] | None = None) -> list[Generation]:
        """Greedy ensemble decoding of ``prompts`` in batches of ``batch_size`` (left padding).

        A row that cannot be decoded (text that is not valid Unicode, a prompt too long for a member's context window
        with its budget) gets an error row (``stop_reason`` "error: ..."); the others decode normally.

        Args:
            max_new_tokens: the budget, shared or one per prompt.
            stop: stop strings, shared (list of str) or per prompt (list of lists).
            choices: per prompt, option labels (e.g. ["A", "B", "C", "D"]) for multiple-choice questions, or None.
            timings: attach a per-row breakdown (seconds in member forwards, fusion, tokenizer calls).
            ignore_eos: keep decoding after EOS until ``max_new_tokens`` or a stop string (benchmarks).
            sources: per prompt, the text an encoder-decoder member's encoder reads (e.g. the sentence to translate,
                while the prompt holds the few-shot instructions for decoder-only members); None = the prompt.
            src_lang / tgt_lang: source and target language of each row for encoder-decoder translators ("en", "de",
                or the member's own code), shared (str) or per prompt (list); None = the member's defaults.
        """
        if isinstance(prompts, str):
            prompts = [prompts]
        n = len(prompts)
        budgets = _per_row(max_new_tokens, n, "max_new_tokens")
        if any(not isinstance(b, int) or b < 1 for b in budgets):
            raise DeepenError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise DeepenError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        stops = [list(stop or [])] * n if stop is None or not stop or isinstance(stop[0], str) else [
            list(s or []) for s in stop]
        if len(stops) != n:
            raise DeepenError(f"stop: got {len(stops)} lists for {n} prompts")
        if choices is not None and len(choices) != n:
            raise DeepenError(f"choices: got {len(choices)} lists for {n} prompts")
        choices = list(choices) if choices is not None else [None] * n
        sources, src_langs, tgt_langs = (_per_row(v, n, what) for v, what in
                                         ((sources, "sources"), (src_lang, "src_lang"), (tgt_lang, "tgt_lang")))
        rows = [dict(prompt=p, budget=b, stop=s, choices=c, source=src, src_lang=sl, tgt_lang=tl)
                for p, b, s, c, src, sl, tl in zip(prompts, budgets, stops, choices, sources, src_langs, tgt_langs)]
        members = self.method.decoding_members
        errors = [row_error(members, r["prompt"], r["budget"], r["source"], r["src_lang"], r["tgt_lang"])
                  for r in rows]
        out: list[Generation | None] = [None if e is None else Generation("", [], f"error: {e}") for e in errors]
        # batch b holds rows [b * batch_size, (b + 1) * batch_size) whatever else is in the list, less its error rows:
        # a row is decoded in the same batch (same padding, same arithmetic) however a list of prompts is split up
        batches = [[i for i in range(start, min(start + batch_size, n)) if errors[i] is None]
                   for start in range(0, n, batch_size)]
        tokens = 0
        with bar(sum(map(len, batches)), "decoding", unit="row",
                 enabled=self.progress and n > batch_size) as progress:
            for part in filter(None, batches):
                for i, g in zip(part, self._decode_rows([rows[i] for i in part], timings, ignore_eos)):
                    out[i] = g
                    tokens += len(g.token_ids)
                progress.update(len(part))
                progress.set_postfix_str(f"{tokens / max(progress.format_dict['elapsed'], 1e-9):.1f} tok/s")
        return out

    def _decode_rows(self, rows: list[dict], timings: bool, ignore_eos: bool) -> list[Generation]:
        """One batch; should a row outgrow an assistant's context window while decoding (its encoding of the
        continuation is longer than the main model's), the batch is decoded again one row at a time and only that row
        becomes an error row."""
        try:
            return self._decode_batch(rows, timings, ignore_eos)
        except ContextWindowError:
            if len(rows) == 1:
                raise
        out = []
        for row in rows:
            try:
                out.extend(self._decode_batch([row], timings, ignore_eos))
            except ContextWindowError as exc:
                out.append(Generation("", [], f"error: {exc}"))
        return out

    def _decode_batch(self, rows: list[dict], timings: bool, ignore_eos: bool) -> list[Generation]:
        members = self.method.decoding_members
        batch = Batch(members, [r["prompt"] for r in rows], budgets=[r["budget"] for r in rows],
                      stops=[r["stop"] for r in rows], sizes=self.sizes[: len(members)], sync=self.sync,
                      main_rolls_back=self.method.main_rolls_back, sources=[r["source"] for r in rows],
                      src_langs=[r["src_lang"] for r in rows], tgt_langs=[r["tgt_lang"] for r in rows])
        method_clock = dict(self.method.clock)
        choices = [r["choices"] for r in rows] if any(r["choices"] for r in rows) else None
        out = decode_batch(self.method, batch, choices, Stopping(self.main.eos_ids, ignore_eos))
        if timings:
            clock = dict(batch.clock)
            for k, v in self.method.clock.items():
                clock[k] = clock.get(k, 0.0) + v - method_clock.get(k, 0.0)
            for g in out:
                g.timings = {k: v / len(out) for k, v in clock.items()} | {
                    "steps": batch.step, "tokens_fed": [r.tokens_fed for r in batch.runners]}
        return out
