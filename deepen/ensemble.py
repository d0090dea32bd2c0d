"""The ensemble and its batched greedy decoding loop.

    ens = Ensemble([load_member("smollm2-135m"), load_member("gemma3-270m")], eta=0.15)   # main model first
    out = ens.generate(["The capital of France is"], max_new_tokens=32, stop=["\\n"])

Each step: every member reads the same text (``sync``), gives its next-token distribution, the ``Fuser`` fuses them
in the relative space and searches the main model's logits; the chosen token extends the main model's ids, and the
text they decode to is re-encoded for each assistant.

An encoder-decoder member (a specialist such as the translator NLLB) takes part like any other: its encoder reads the
row's source text once (``sources``; the prompt when there is none), its decoder reads its start tokens (and the target
language's token) followed by its own encoding of the text generated so far, resynchronised every step. It can be an
assistant or the main model.
"""

from __future__ import annotations

import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field

import torch

from deepen.anchors import Anchors, find_anchors
from deepen.errors import DeepenError
from deepen.fuse import Fuser, FusionConfig
from deepen.members import Member
from deepen.memory import release_freed_memory
from deepen.relative import RelativeSpace
from deepen.sync import CachedRunner, EncoderDecoderRunner, ReprefillRunner
from deepen.vocabulary import normalise_vocabulary

_CONTEXT = 8  # prompt tokens decoded with the continuation, so that its first token keeps its leading space


@dataclass
class Generation:
    """One row's output.

    Attributes:
        text: the continuation, cut before the first stop string.
        token_ids: the main model's generated ids (including the EOS or the token that completed a stop string).
        stop_reason: 'eos', 'stop' or 'length'.
        choice: for multiple-choice rows, the option whose token scored highest after the first fused step.
        seconds: wall time of the row's batch divided by the rows in it.
    """

    text: str
    token_ids: list[int]
    stop_reason: str
    choice: str | None = None
    seconds: float = 0.0
    timings: dict = field(default_factory=dict)


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


def _per_row(value, n: int, what: str) -> list:
    """A shared value (None or str) or one value per prompt, as a list of ``n``."""
    if value is None or isinstance(value, str):
        return [value] * n
    value = list(value)
    if len(value) != n:
        raise DeepenError(f"{what}: got {len(value)} values for {n} prompts")
    return value


def _join(prompt: str, continuation: str, word_start: bool) -> str:
    """``continuation`` as it follows ``prompt``: with a space in front when it starts at a word (an encoder-decoder
    main model's output) and the prompt does not end in whitespace."""
    if word_start and continuation and prompt and not prompt[-1].isspace() and not continuation[0].isspace():
        return " " + continuation
    return continuation


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB"


class Ensemble:
    """DeePEn over ``members`` (the first is the main model).

    Args:
        members: loaded members, main model first.
        weights: one per member (non-negative, sum 1); None = uniform (DeePEn-Avg).
        eta: relative ensemble learning rate (0 = main model alone).
        steps: search iterations T per token.
        mode: 'fast' (default) or 'paper' (dense matrices; refused when they would not fit in memory).
        anchors: a prebuilt anchor set (else built from the members' vocabularies).
        spaces: prebuilt relative spaces, one per member (else built).
        min_anchors / max_anchors: see ``find_anchors``.
        topk / mass: fast mode's kept tokens, see ``FusionConfig``.
        sync: 'cache' (KV cache + resynchronisation) or 'reprefill' (the release's scheme, for reference).
        max_dense_bytes: paper mode's memory budget (default: 90% of the memory available now).
        row_cache: relative rows kept per member in fast mode.
    """

    def __init__(
        self,
        members: list[Member],
        *,
        weights=None,
        eta: float = 0.15,
        steps: int = 5,
        mode: str = "fast",
        anchors: Anchors | None = None,
        spaces: list[RelativeSpace] | None = None,
        min_anchors: int = 1000,
        max_anchors: int | None = None,
        topk: int = 64,
        mass: float = 0.999,
        sync: str = "cache",
        max_dense_bytes: int | None = None,
        row_cache: int = 128,
        progress: bool = True,
    ):
        if not members:
            raise DeepenError("an ensemble needs at least one member")
        if sync not in ("cache", "reprefill"):
            raise DeepenError(f"sync must be 'cache' or 'reprefill', got {sync!r}")
        self.members = list(members)
        self.sync = sync
        self.progress = progress
        self.config = FusionConfig(
            eta=eta, steps=steps, weights=None if weights is None else tuple(float(w) for w in weights),
            mode=mode, topk=topk, mass=mass,
        ).validate(len(self.members))
        self.sizes = [min(m.vocab_size, m.model.get_input_embeddings().weight.shape[0]) for m in self.members]
        self.anchors = anchors
        self.spaces = spaces
        self.fuser = None
        if self.fuses:
            if self.anchors is None:
                self._log("matching vocabularies into anchors...")
                vocabs = [normalise_vocabulary(m.tokenizer, n) for m, n in zip(self.members, self.sizes)]
                self.anchors = find_anchors(vocabs, [m.name for m in self.members], min_anchors=min_anchors,
                                            max_anchors=max_anchors)
                self._log(f"{len(self.anchors)} anchors")
                del vocabs
                release_freed_memory()
            if self.spaces is None:
                self.spaces = [
                    RelativeSpace.of_member(m, self.anchors.ids[i], n, cache_rows=row_cache)
                    for i, (m, n) in enumerate(zip(self.members, self.sizes))
                ]
            if mode == "paper":
                self._check_dense_fits(max_dense_bytes)
            self.fuser = Fuser(self.spaces, self.config)
            if mode == "fast":
                t0 = time.perf_counter()
                for s in self.spaces:
                    s.tail  # computed once per member; the cache stage of the pipeline stores it
                self._log(f"relative spaces ready ({time.perf_counter() - t0:.1f} s)")

    @property
    def fuses(self) -> bool:
        """Whether steps fuse at all (several members and eta > 0); otherwise the main model decodes alone."""
        return len(self.members) > 1 and self.config.eta > 0

    @property
    def main(self) -> Member:
        return self.members[0]

    def _log(self, message: str) -> None:
        if self.progress:
            print(f"[deepen] {message}", file=sys.stderr, flush=True)

    def _check_dense_fits(self, max_dense_bytes: int | None) -> None:
        sizes = [s.dense_bytes() for s in self.spaces]
        budget = max_dense_bytes
        if budget is None:
            free = available_memory_bytes(self.spaces[0].device)
            budget = None if free is None else int(free * 0.9)
        if budget is not None and sum(sizes) > budget:
            parts = ", ".join(f"{m.name}: {_gb(b)}" for m, b in zip(self.members, sizes))
            raise DeepenError(
                f"paper mode needs dense relative matrices of {_gb(sum(sizes))} ({parts}; |V| x {len(self.anchors)} "
                f"anchors x 4 bytes) but only {_gb(budget)} is available; use mode 'fast' (--mode fast) or fewer "
                f"anchors (--max-anchors)"
            )

    # -- decoding ------------------------------------------------------------------------------------------------
    def _runner(self, member: Member, rollback: bool):
        pad = member.tokenizer.pad_token_id
        pad = pad if pad is not None else (member.tokenizer.eos_token_id or 0)
        if member.seq2seq:
            return EncoderDecoderRunner(member.model, pad, reprefill=self.sync == "reprefill" and rollback)
        if self.sync == "reprefill" and rollback:
            return ReprefillRunner(member.model)
        return CachedRunner(member.model, pad, rollback=rollback)

    def _prompt_ids(self, member: Member, texts: list[str], tgt_langs: list[str | None]) -> list[list[int]]:
        """What a member reads before the first generated token: its prompt, or an encoder-decoder member's decoder
        start tokens (its encoder reads the source, see ``_generate_batch``)."""
        if member.seq2seq:
            return [member.decoder_prefix(lang) for lang in tgt_langs]
        return self._encode(member, texts)

    def _encode(self, member: Member, texts: list[str]) -> list[list[int]]:
        return member.tokenizer(texts, add_special_tokens=True)["input_ids"]

    def _choice_tokens(self, choices: list[str]) -> dict[int, str]:
        """Main-model token ids that answer with each option (" A" and "A"), first option wins a shared id."""
        tok = self.main.tokenizer
        out: dict[int, str] = {}
        for c in choices:
            for form in (" " + c, c):
                ids = tok(form, add_special_tokens=False)["input_ids"]
                if ids:
                    out.setdefault(int(ids[0]), c)
        return out

    def generate(
        self,
        prompts: list[str],
        *,
        max_new_tokens: int = 32,
        stop: list[str] | list[list[str]] | None = None,
        choices: list[list[str]] | None = None,
        batch_size: int = 8,
        timings: bool = False,
        shadow: Fuser | None = None,
        ignore_eos: bool = False,
        sources: list[str | None] | None = None,
        src_lang: str | list[str | None] | None = None,
        tgt_lang: str | list[str | None] | None = None,
    ) -> list[Generation]:
        """Greedy ensemble decoding of ``prompts`` in batches.

        Args:
            stop: stop strings, shared (list of str) or per prompt (list of lists).
            choices: per prompt, option labels (e.g. ["A", "B", "C", "D"]) for multiple-choice questions, or None.
            timings: attach a per-row breakdown (seconds in member forwards, fusion, tokenizer calls).
            shadow: a second Fuser (e.g. paper mode) run on the same inputs at every step (measurement only; it makes
                every member run every step); each row's ``timings`` then counts the steps where both chose the same
                token (``agree`` of ``compared``; ``skipped``: compared steps that fast mode did not need to fuse).
            ignore_eos: keep decoding after EOS until ``max_new_tokens`` or a stop string (benchmarks).
            sources: per prompt, the text an encoder-decoder member's encoder reads (e.g. the sentence to translate,
                while the prompt holds the few-shot instructions for decoder-only members); None = the prompt.
            src_lang / tgt_lang: source and target language of each row for encoder-decoder translators ("en", "de",
                or the member's own code), shared (str) or per prompt (list); None = the member's defaults.
        """
        if isinstance(prompts, str):
            prompts = [prompts]
        if max_new_tokens < 1:
            raise DeepenError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if batch_size < 1:
            raise DeepenError(f"batch_size must be >= 1, got {batch_size}")
        n = len(prompts)
        if stop is None or (stop and isinstance(stop[0], str)) or stop == []:
            stops = [list(stop or [])] * n
        else:
            stops = [list(s or []) for s in stop]
        if len(stops) != n:
            raise DeepenError(f"stop: got {len(stops)} lists for {n} prompts")
        if choices is not None and len(choices) != n:
            raise DeepenError(f"choices: got {len(choices)} lists for {n} prompts")
        sources, src_langs, tgt_langs = (_per_row(v, n, what) for v, what in
                                         ((sources, "sources"), (src_lang, "src_lang"), (tgt_lang, "tgt_lang")))
        out: list[Generation] = []
        for start in range(0, n, batch_size):
            sl = slice(start, start + batch_size)
            out.extend(
                self._generate_batch(prompts[sl], max_new_tokens, stops[sl], None if choices is None else choices[sl],
                                     timings or shadow is not None, shadow, ignore_eos,
                                     sources=sources[sl], src_langs=src_langs[sl], tgt_langs=tgt_langs[sl])
            )
        return out

    @torch.no_grad()
    def _generate_batch(self, prompts, max_new_tokens, stops, choices, want_timings, shadow=None,
                        ignore_eos=False, sources=None, src_langs=None, tgt_langs=None) -> list[Generation]:
        t_batch = time.perf_counter()
        clock = defaultdict(float)
        members = self.members if self.fuses else self.members[:1]
        main = self.main
        texts = [[m.format_prompt(p) for p in prompts] for m in members]
        tick = time.perf_counter()
        sources = sources or [None] * len(prompts)
        src_langs, tgt_langs = src_langs or [None] * len(prompts), tgt_langs or [None] * len(prompts)
        prompt_ids = [self._prompt_ids(m, t, tgt_langs) for m, t in zip(members, texts)]
        clock["tokenizer"] += time.perf_counter() - tick
        runners = [self._runner(m, rollback=i > 0) for i, m in enumerate(members)]
        for m, r, t in zip(members, runners, texts):
            if m.seq2seq:  # the encoder reads each row's source once (its prompt when it has none)
                tick = time.perf_counter()
                r.encode(m.encode_source([s if s is not None else p for s, p in zip(sources, t)], src_langs))
                clock["prefill"] += time.perf_counter() - tick
        tick = time.perf_counter()
        main_logits = runners[0].prefill(prompt_ids[0])[:, : self.sizes[0]]
        clock["prefill"] += time.perf_counter() - tick
        fuse_clock = dict(self.fuser.clock) if self.fuser is not None else {}
        # Fast mode skips the search (and the assistants' forwards) on steps it cannot change: when no token is
        # within reach of the main model's top one (``Fuser.gap``), the argmax after the search is the argmax now.
        # Assistants then catch up lazily, feeding several tokens at once, at the next step that needs them.
        lazy = self.fuser is not None and self.config.mode == "fast" and self.sync == "cache"
        assistant_logits = None  # the assistants' logits for the current text, once computed

        B = len(prompts)
        eos = torch.tensor(sorted(main.eos_ids), dtype=torch.long)
        allowed_maps = [self._choice_tokens(c) if c else None for c in (choices or [None] * B)]
        gen: list[list[int]] = [[] for _ in range(B)]
        conts = [""] * B
        result: list[Generation | None] = [None] * B
        picked: list[str | None] = [None] * B
        active = list(range(B))  # batch rows still decoding, in runner row order
        ctx = [ids[-_CONTEXT:] for ids in prompt_ids[0]]
        ctx_text = [main.tokenizer.decode(c, skip_special_tokens=True, clean_up_tokenization_spaces=False)
                    for c in ctx]
        agree = [0] * B
        fused_steps = [0] * B  # with a shadow: steps compared (all non-EOS steps), of which ``skipped`` not fused
        skipped = [0] * B
        step = 0
        while True:
            tick = time.perf_counter()
            nxt = main_logits.argmax(-1)
            allowed = None
            if step == 0 and any(allowed_maps[b] for b in active):
                allowed = torch.zeros_like(main_logits, dtype=torch.bool)
                for j, b in enumerate(active):
                    if allowed_maps[b]:
                        allowed[j, list(allowed_maps[b])] = True
                    else:
                        allowed[j] = True
            restricted = None if allowed is None else main_logits.masked_fill(~allowed, float("-inf")).argmax(-1)
            if self.fuser is not None:
                fuse = ~torch.isin(nxt.cpu(), eos)  # main argmax EOS is kept as is (the release's rule)
                if lazy and allowed is None:
                    top = main_logits.max(-1, keepdim=True).values
                    contested = ((main_logits >= top - self.fuser.gap).sum(-1) > 1).cpu()
                    fuse &= contested
                fuse_rows = fuse.nonzero().squeeze(-1)
                clock["fuse"] += time.perf_counter() - tick
                if len(fuse_rows):
                    if assistant_logits is None:
                        assistant_logits = self._sync_assistants(runners, members, texts, conts, active, clock,
                                                                 prompt_ids)
                    logits = [main_logits] + assistant_logits
                    tick = time.perf_counter()
                    probs = [torch.softmax(lg[fuse_rows].float(), -1) for lg in logits]
                    free, restr = self.fuser.choose(main_logits[fuse_rows], probs,
                                                    None if allowed is None else allowed[fuse_rows])
                    nxt[fuse_rows.to(nxt.device)] = free.to(nxt.device)
                    if restr is not None:
                        restricted[fuse_rows.to(restricted.device)] = restr.to(restricted.device)
                    clock["fuse"] += time.perf_counter() - tick
                if shadow is not None:  # measurement only: the other fuser on every step fast mode fused or skipped
                    rows = (~torch.isin(nxt.cpu(), eos)).nonzero().squeeze(-1)
                    if len(rows):
                        if assistant_logits is None:
                            assistant_logits = self._sync_assistants(runners, members, texts, conts, active, clock,
                                                                     prompt_ids)
                        probs = [torch.softmax(lg[rows].float(), -1) for lg in [main_logits] + assistant_logits]
                        other, _ = shadow.choose(main_logits[rows], probs)
                        fused_now = set(fuse_rows.tolist())
                        for j, same in zip(rows.tolist(), (other.cpu() == nxt[rows].cpu()).tolist()):
                            agree[active[j]] += int(same)
                            fused_steps[active[j]] += 1
                            skipped[active[j]] += int(j not in fused_now)
            if restricted is not None:
                for j, b in enumerate(active):
                    if allowed_maps[b]:
                        picked[b] = allowed_maps[b].get(int(restricted[j]))

            tick = time.perf_counter()
            still = []
            for j, b in enumerate(active):
                tok = int(nxt[j])
                gen[b].append(tok)
                full = main.tokenizer.decode(ctx[b] + gen[b], skip_special_tokens=True,
                                             clean_up_tokenization_spaces=False)
                conts[b] = full[len(ctx_text[b]):] if full.startswith(ctx_text[b]) else main.tokenizer.decode(
                    gen[b], skip_special_tokens=True, clean_up_tokenization_spaces=False)
                hit = [conts[b].find(s) for s in stops[b] if s and s in conts[b]]
                if tok in main.eos_ids and not ignore_eos:
                    result[b] = Generation(conts[b], gen[b], "eos", picked[b])
                elif hit:
                    result[b] = Generation(conts[b][: min(hit)], gen[b], "stop", picked[b])
                elif len(gen[b]) >= max_new_tokens:
                    result[b] = Generation(conts[b], gen[b], "length", picked[b])
                else:
                    still.append(j)
            clock["tokenizer"] += time.perf_counter() - tick
            step += 1
            if not still:
                break
            active = [active[j] for j in still]
            for r in runners:
                r.select(still)
            tick = time.perf_counter()
            main_logits = runners[0].step([prompt_ids[0][b] + gen[b] for b in active])[:, : self.sizes[0]]
            clock["forward_main"] += time.perf_counter() - tick
            assistant_logits = None
            if self.fuser is not None and not lazy:  # paper mode and the reference scheme run every member every step
                assistant_logits = self._sync_assistants(runners, members, texts, conts, active, clock,
                                                         prompt_ids)

        seconds = (time.perf_counter() - t_batch) / B
        if self.fuser is not None:
            for k, v in self.fuser.clock.items():
                clock[k] += v - fuse_clock.get(k, 0.0)
        for b, g in enumerate(result):
            g.seconds = seconds
            if want_timings:
                g.timings = {k: v / B for k, v in clock.items()} | {
                    "steps": step, "tokens_fed": [r.tokens_fed for r in runners]}
                if shadow is not None:
                    g.timings |= {"agree": agree[b], "compared": fused_steps[b], "skipped": skipped[b]}
        return result

    def _sync_assistants(self, runners, members, texts, conts, active, clock, prompt_ids) -> list[torch.Tensor]:
        """Bring every assistant to the current text of each active row; returns their logits [B, |V_i|].

        An encoder-decoder assistant reads its decoder prefix + its encoding of the continuation. When the main model
        is an encoder-decoder, its continuation starts at a word; a decoder-only assistant reads it after a space
        (unless its prompt ends in whitespace), as the text would follow the prompt in its demonstrations.
        """
        out = []
        for i in range(1, len(members)):
            tick = time.perf_counter()
            if members[i].seq2seq:
                targets = members[i].encode_target([conts[b] for b in active])
                ids = [prompt_ids[i][b] + t for b, t in zip(active, targets)]
            else:
                ids = self._encode(members[i], [texts[i][b] + _join(texts[i][b], conts[b], self.main.seq2seq)
                                                 for b in active])
            clock["tokenizer"] += time.perf_counter() - tick
            tick = time.perf_counter()
            out.append(runners[i].step(ids)[:, : self.sizes[i]])
            clock["forward_assistants"] += time.perf_counter() - tick
        return out
