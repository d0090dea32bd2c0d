"""Benchmark: the ensemble against its physical floor, the members' own forward passes.

    python -m deepen.bench                       # SmolLM2-135M (main) + Gemma-3-270M, writes results/bench.{json,md}
    python -m deepen.bench --quick               # a smoke run (few tokens, one repeat): checks it runs, not timings
    python -m deepen.bench MAIN ASSISTANT ...     # any members (hub ids, directories, GGUF files)
    python -m deepen.bench --device cuda --random-weights DIR DIR   # timing only: each DIR holds config.json +
                                                  # tokenizer files; weights are drawn at random (P6 is skipped)

Every figure is a median over ``--repeats`` runs and every target is a ratio of two figures measured in the same run,
one right after the other, because shared machines are noisy. Figures:

  P1  per-token latency of the ensemble (fast mode, batch 1) / sum of the members' own per-token latencies
      (each alone with its KV cache, same prompt, same number of tokens); target <= 1.10
  P2  256 tokens with KV-cache resync vs the release's re-prefill of every assistant (same tokens, checked); >= 10x
  P3  tokens/s at batch 16 / tokens/s at batch 1; >= 5x (and the same ratio for the members alone: the floor)
  P4  peak resident memory of an ensemble run with all anchors / the members' weights; <= 1.5
      (and what the release's dense relative matrices would need)
  P5  cold build of anchors + relative spaces (< 60 s); a warm ``snakemake`` re-run with nothing to do (< 10 s)
  P6  fast vs paper mode, share of fused steps choosing the same token, on real task prompts, capped anchors
      (so that paper mode fits); >= 99.5%, and the accuracy of both on multiple-choice questions
  and a breakdown of one ensemble step (member forwards, relative transform, search, tokenizer calls).

On a GPU (``--device cuda``, bf16 by default) P4 is the peak of ``torch.cuda.max_memory_allocated`` instead of the
resident set, and every timed region ends with ``torch.cuda.synchronize()``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

PROMPT = "Once upon a time, in a small village by the sea,"
TARGETS = {"P1": ("<=", 1.10), "P2": (">=", 10.0), "P3": (">=", 5.0), "P4": ("<=", 1.5), "P5_cold": ("<", 60.0),
           "P5_warm": ("<", 10.0), "P6": (">=", 0.995)}


_START = time.perf_counter()


def _log(msg: str) -> None:
    print(f"[bench {time.perf_counter() - _START:6.1f} s] {msg}", file=sys.stderr, flush=True)


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        _sync()
        t0 = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def per_token_latency(ensemble, prompts: list[str], tokens: int, repeats: int) -> float:
    """Median seconds per generated token after the first: (t(N tokens) - t(1 token)) / (N - 1), EOS ignored."""
    def run(n):
        return lambda: ensemble.generate(prompts, max_new_tokens=n, batch_size=len(prompts), ignore_eos=True)

    ensemble.generate(prompts, max_new_tokens=2, batch_size=len(prompts), ignore_eos=True)  # warm-up
    t_n = _median_time(run(tokens), repeats)
    t_1 = _median_time(run(1), repeats)
    return (t_n - t_1) / (tokens - 1)


def weights_bytes(members) -> int:
    return sum(p.numel() * p.element_size() for m in members for p in m.model.parameters())


def peak_memory_of_generate(sources: list[str], tokens: int, alone: bool = False, min_anchors: int = 1000,
                            device: str = "cpu", dtype: str = "auto") -> int:
    """Peak memory (bytes) of a fresh process generating with the ensemble (fast mode, all anchors), or, with
    ``alone``, with each member by itself one after the other (the floor: weights, tokenizers, torch, activations).
    On CPU the peak resident set; on a GPU the peak of ``torch.cuda.max_memory_allocated``."""
    run = (f"for m in members: Ensemble([m], progress=False).generate([{PROMPT!r}], max_new_tokens={tokens})\n"
           if alone else
           f"Ensemble(members, progress=False, **kw).generate([{PROMPT!r}], max_new_tokens={tokens}, ignore_eos=True)\n")
    if device.startswith("cuda"):
        # everything the process allocated on the GPU, weights included
        peak = "print(torch.cuda.max_memory_allocated() // 1024)\n"
    else:
        # VmHWM, the peak RSS of this process image: ru_maxrss would carry the parent's RSS across fork + exec
        peak = ("print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
                "      if os.path.exists('/proc/self/status') else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)\n")
    code = (
        "import os, resource, torch\n"
        "from deepen import Ensemble, load_member\n"
        f"members = [load_member(s, device={device!r}, dtype={dtype!r}) for s in {sources!r}]\n"
        f"kw = dict(min_anchors={min_anchors})\n"
        + run + peak
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) * 1024


def random_weight_members(sources: list[str], out_dir: Path) -> list[str]:
    """Checkpoints with each source's architecture (config.json) and tokenizer but weights drawn at random (seeded),
    for timing members whose weights are not at hand. Returns the new directories."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    dirs = []
    for i, src in enumerate(sources):
        target = out_dir / f"random-{i}-{Path(src).name}"
        if not (target / "config.json").is_file():
            config = AutoConfig.from_pretrained(src)
            torch.manual_seed(i)
            model = AutoModelForCausalLM.from_config(config)
            AutoTokenizer.from_pretrained(src).save_pretrained(target)
            model.save_pretrained(target)
            del model
        dirs.append(str(target))
    return dirs


def task_prompts(per_task: dict[str, int]) -> list[dict]:
    from deepen.eval.task_data import build_prompts

    rows = []
    for task, n in per_task.items():
        rows += build_prompts(task, limit=n)
    return rows


def bench(sources: list[str], *, quick: bool, repeats: int, out_json: Path, out_md: Path, p6_anchors: int,
          snakemake_dir: Path | None, min_anchors: int = 1000, device: str = "auto", dtype: str = "auto",
          random_weights: bool = False) -> dict:
    from deepen import Ensemble, load_member
    from deepen.members import resolve_device

    device = resolve_device(device)
    if random_weights:
        sources = random_weight_members(sources, out_json.parent / "random-weights")
    torch.manual_seed(0)
    res: dict = {"machine": {"platform": platform.platform(), "python": platform.python_version(),
                             "torch": torch.__version__, "threads": torch.get_num_threads(),
                             "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
                 "device": device, "members": sources, "quick": quick, "repeats": repeats,
                 "random_weights": random_weights}
    tokens = 8 if quick else 64
    long_tokens = 16 if quick else 256
    batch = 4 if quick else 16

    _log("loading members")
    members = [load_member(s, device=device, dtype=dtype) for s in sources]
    res["members"] = [m.name for m in members]
    res["dtype"] = str(members[0].model.dtype).removeprefix("torch.")

    # P1 (its floor): the members alone, batch 1, measured before the ensemble exists (which may reorder a member's
    # embedding rows, see RelativeSpace.of_member: exact, but one gather of the logits per step)
    _log("P1: per-token latency")
    alone = [per_token_latency(Ensemble([m], progress=False), [PROMPT], tokens, repeats) for m in members]

    # P5 (cold): anchors + relative spaces from loaded models
    _sync()
    t0 = time.perf_counter()
    ens = Ensemble(members, min_anchors=min_anchors, progress=False)
    _sync()
    res["P5_cold_build_s"] = time.perf_counter() - t0
    res["anchors"] = len(ens.method.anchors)

    # P1: the ensemble, batch 1
    ens_tok = per_token_latency(ens, [PROMPT], tokens, repeats)
    res["P1"] = {"members_s_per_token": alone, "ensemble_s_per_token": ens_tok, "ratio": ens_tok / sum(alone)}

    _partial(res, out_json)
    # breakdown of one ensemble step (batch 1), and what the fusion arithmetic costs at least
    rows_before, fused_before = [s.rows_computed for s in ens.method.spaces], ens.method.fuser.fused
    g = ens.generate([PROMPT], max_new_tokens=tokens, timings=True, ignore_eos=True)[0]
    steps = max(g.timings["steps"] - 1, 1)
    res["breakdown_ms_per_step"] = {k: 1000 * v / steps for k, v in g.timings.items()
                                    if k in ("forward_main", "forward_assistants", "fuse", "relative", "search",
                                             "tokenizer")}
    rows = [s.rows_computed - r for s, r in zip(ens.method.spaces, rows_before)]
    fused = ens.method.fuser.fused - fused_before
    row_s = [_median_time(lambda s=s: s.compute_rows(torch.arange(64) * (s.vocab_size // 64)), 5) / 64
             for s in ens.method.spaces]
    fuse_per_token = g.timings["fuse"] / g.timings["steps"]
    res["P1"] |= {
        "fused_steps": fused, "steps": g.timings["steps"],
        "rows_computed_per_fused_step": [r / max(fused, 1) for r in rows],
        "ms_per_row": [1000 * t for t in row_s],
        # the ensemble with its fusion time taken out: resync, bookkeeping and the members' forwards
        "ratio_without_fusion": (ens_tok - fuse_per_token) / sum(alone),
        # the rows it had to compute, each at the measured cost of one row in a 64-row block: a floor for fusion
        "ratio_floor_rows": (sum(alone) + sum(r * t for r, t in zip(rows, row_s)) / g.timings["steps"]) / sum(alone),
    }

    # P2: KV-cache resync vs re-prefill, same tokens
    _log(f"P2: {long_tokens} tokens, cache vs re-prefill")
    ref = Ensemble(members, sync="reprefill", anchors=ens.method.anchors, spaces=ens.method.spaces, progress=False)
    # first runs: the tokens to compare, and each run's fusion time (taken out below: what resync alone gains)
    out_c = ens.generate([PROMPT], max_new_tokens=long_tokens, ignore_eos=True, timings=True)[0]
    out_r = ref.generate([PROMPT], max_new_tokens=long_tokens, ignore_eos=True, timings=True)[0]
    fuse_c, fuse_r = out_c.timings["fuse"], out_r.timings["fuse"]
    t_cache = _median_time(lambda: ens.generate([PROMPT], max_new_tokens=long_tokens, ignore_eos=True), repeats)
    t_ref = _median_time(lambda: ref.generate([PROMPT], max_new_tokens=long_tokens, ignore_eos=True),
                         1 if not quick else repeats)
    res["P2"] = {"cache_s": t_cache, "reprefill_s": t_ref, "speedup": t_ref / t_cache,
                 "same_tokens": out_c.token_ids == out_r.token_ids, "cache_fuse_s": fuse_c, "reprefill_fuse_s": fuse_r,
                 "speedup_without_fusion": (t_ref - fuse_r) / (t_cache - fuse_c)}

    _partial(res, out_json)
    # P3: batch 16 vs batch 1 throughput
    _log(f"P3: batch {batch} vs 1")
    prompts = [f"{PROMPT} Story {i}:" for i in range(batch)]
    ens.generate(prompts, max_new_tokens=2, batch_size=batch, ignore_eos=True)
    t_b = _median_time(lambda: ens.generate(prompts, max_new_tokens=tokens, batch_size=batch, ignore_eos=True),
                       repeats)
    t_1 = _median_time(lambda: ens.generate(prompts[:1], max_new_tokens=tokens, ignore_eos=True), repeats)
    # the floor: the same two batch sizes for the members alone, one after the other (no fusion, no resync)
    alone_b = alone_1 = 0.0
    for m in members:
        solo = Ensemble([m], progress=False)
        solo.generate(prompts, max_new_tokens=2, batch_size=batch, ignore_eos=True)
        alone_b += _median_time(lambda: solo.generate(prompts, max_new_tokens=tokens, batch_size=batch,
                                                      ignore_eos=True), repeats)
        alone_1 += _median_time(lambda: solo.generate(prompts[:1], max_new_tokens=tokens, ignore_eos=True), repeats)
    res["P3"] = {"tokens_per_s_batch": batch * tokens / t_b, "tokens_per_s_1": tokens / t_1,
                 "ratio": (batch * tokens / t_b) / (tokens / t_1), "batch": batch,
                 "members_alone_tokens_per_s_batch": batch * tokens / alone_b,
                 "members_alone_tokens_per_s_1": tokens / alone_1,
                 "members_alone_ratio": (batch * tokens / alone_b) / (tokens / alone_1)}

    _partial(res, out_json)
    # P4: peak RSS vs weights
    _log("P4: peak memory")
    wb = weights_bytes(members)
    srcs, n = [m.source for m in members], 8 if quick else 32
    rss = peak_memory_of_generate(srcs, n, min_anchors=min_anchors, device=device, dtype=dtype)
    floor = peak_memory_of_generate(srcs, n, alone=True, device=device, dtype=dtype)
    res["P4"] = {"memory": "cuda max_memory_allocated" if device.startswith("cuda") else "resident set",
                 "peak_rss_bytes": rss, "weights_bytes": wb, "ratio": rss / wb, "members_alone_peak_rss_bytes": floor,
                 "floor_ratio": floor / wb, "release_dense_bytes": sum(s.dense_bytes() for s in ens.method.spaces)}

    # P5 (warm): snakemake with nothing to do
    if snakemake_dir is not None and (snakemake_dir / "results" / "summary.md").is_file():
        exe = Path(sys.executable).with_name("snakemake")
        t0 = time.perf_counter()
        proc = subprocess.run([str(exe), "--cores", "2"], cwd=snakemake_dir, capture_output=True, text=True)
        res["P5_warm_snakemake_s"] = time.perf_counter() - t0
        res["P5_warm_nothing_to_do"] = "Nothing to be done" in (proc.stdout + proc.stderr)

    res["targets"] = {k: f"{op} {v}" for k, (op, v) in TARGETS.items()}
    if random_weights:  # agreement and accuracy of random models say nothing
        _write(res, out_json, out_md)
        return res

    # P6: fast vs paper on real prompts, capped anchors
    _log(f"P6: fast vs paper with {p6_anchors} anchors")
    capped = Ensemble(members, max_anchors=p6_anchors, min_anchors=min(min_anchors, p6_anchors), progress=False)
    rows = task_prompts({"arc_c": 2, "piqa": 2} if quick else {"triviaqa": 16, "nq": 16, "gsm8k": 4, "arc_c": 8,
                                                                "mmlu": 8, "piqa": 8})
    grid = agreement_grid(members, rows, anchors=p6_anchors, etas=[0.15], steps_list=[5],
                          tokens=8 if quick else 24)
    agree, compared = sum(g["agree"]["fast"] for g in grid), sum(g["compared"] for g in grid)
    res["P6"] = {"anchors": p6_anchors, "agree": agree, "steps": compared, "share": agree / max(compared, 1),
                 "grid": grid}
    mc = task_prompts({"arc_c": 4} if quick else {"arc_c": 40})
    acc = {}
    for mode in ("fast", "paper"):
        e = Ensemble(members, mode=mode, anchors=capped.method.anchors, spaces=capped.method.spaces, progress=False)
        outs = e.generate([r["prompt"] for r in mc], max_new_tokens=1, choices=[r["choices"] for r in mc],
                          batch_size=8)
        acc[mode] = 100 * sum(o.choice == r["answers"][0] for o, r in zip(outs, mc)) / len(mc)
    res["P6"]["arc_c_accuracy"] = acc | {"questions": len(mc)}
    _write(res, out_json, out_md)
    return res


class Compared:
    """A method that decides (e.g. DeePEn in paper mode) plus fusers run on the same inputs at every step it fused
    (measurement only: every member then runs every step). For each fuser, counts the steps where it chose the
    decider's token."""

    def __init__(self, inner, others: dict):
        self.inner, self.others = inner, others
        self.agree = {name: 0 for name in others}
        self.compared = 0
        self.decoding_members, self.main_rolls_back = inner.decoding_members, inner.main_rolls_back
        self.eager_members, self.clock = inner.eager_members, inner.clock

    def step(self, batch, allowed):
        out = self.inner.step(batch, allowed)
        chosen = torch.tensor([p[0].token for p in out.pieces])
        rows = (~torch.isin(chosen, self.inner._eos)).nonzero().squeeze(-1)
        if len(rows):
            logits = [batch.logits(i) for i in range(len(self.inner.members))]
            probs = [torch.softmax(lg[rows].float(), -1) for lg in logits]
            self.compared += len(rows)
            for name, fuser in self.others.items():
                other, _ = fuser.choose(logits[0][rows], probs)
                self.agree[name] += int((other.cpu() == chosen[rows]).sum())
        return out


def agreement_grid(members, prompts: list[dict], *, anchors: int, etas, steps_list, tokens: int, batch: int = 4,
                   variants: dict | None = None, progress=None) -> list[dict]:
    """P6: fast mode against paper mode over an eta x T grid, both orders of the members, on task prompts.

    Paper mode decides (its trajectory); at each of its fused steps plain fast mode (and each of ``variants``: name ->
    FusionConfig settings, e.g. {"topk 256": {"topk": 256}}) and certified fast mode choose on the same inputs.
    Anchors are capped so that paper mode's dense matrices fit (and certified mode may fall back to them). Returns one record per (order, eta, T): steps compared, agreements, the certified mode's counts, and the
    seconds each mode spent fusing."""
    from deepen import Ensemble
    from deepen.fuse import Fuser, FusionConfig
    from deepen.relative import RelativeSpace

    out = []
    for order in (members, members[::-1]):
        base = Ensemble(order, max_anchors=anchors, min_anchors=min(1000, anchors), progress=False)
        spaces, ids = base.method.spaces, base.method.anchors.ids
        # the certificate needs every cluster's exact deviation: one pass over every row (its own spaces, so that
        # plain fast mode keeps its sampled cluster means, as it runs by default)
        exact = [RelativeSpace.of_member(m, ids[i], s.vocab_size, exact_tail=True) for i, (m, s) in
                 enumerate(zip(order, spaces))]
        dense = [s.dense() for s in spaces]
        for eta in etas:
            for steps in steps_list:
                paper = Ensemble(order, mode="paper", eta=eta, steps=steps, anchors=base.method.anchors,
                                 spaces=spaces, progress=False)
                paper.method.fuser._dense = dense  # computed once per order
                fast = {name: Fuser(spaces, FusionConfig(eta=eta, steps=steps, **kw))
                        for name, kw in {"fast": {}, **(variants or {})}.items()}
                certified = Fuser(exact, FusionConfig(eta=eta, steps=steps, certify=True),
                                  max_dense_bytes=sum(s.dense_bytes() for s in spaces))
                certified._dense = dense
                paper.method = Compared(paper.method, {**fast, "certified": certified})
                for start in range(0, len(prompts), batch):
                    part = prompts[start : start + batch]
                    paper.generate([r["prompt"] for r in part], max_new_tokens=tokens, stop=[r["stop"] for r in part],
                                   choices=[r["choices"] or None for r in part], batch_size=batch)
                cmp = paper.method
                out.append({"order": [m.name for m in order], "eta": eta, "steps": steps, "compared": cmp.compared,
                            "agree": dict(cmp.agree), "certified_counts": dict(certified.counts),
                            "seconds": {**{name: sum(f.clock.values()) for name, f in fast.items()},
                                        "certified": sum(certified.clock.values()),
                                        "paper": sum(cmp.inner.clock.values())}})
                if progress:
                    progress(out[-1])
    return out


def _partial(res: dict, out_json: Path) -> None:
    """What is measured so far (a run cut short still leaves its figures); the Markdown table comes at the end."""
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.with_suffix(".partial.json").write_text(json.dumps(res, indent=2))


def _write(res: dict, out_json: Path, out_md: Path) -> None:
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(res, indent=2))
    out_md.write_text(markdown(res))
    out_json.with_suffix(".partial.json").unlink(missing_ok=True)


def markdown(res: dict) -> str:
    def ok(key, value):
        op, target = TARGETS[key]
        good = {"<=": value <= target, ">=": value >= target, "<": value < target}[op]
        return f"{op} {target} | {'met' if good else 'NOT met'}"

    lines = ["| figure | measured | target | |", "|---|---|---|---|"]
    p1, p2, p3, p4, p6 = (res.get(k) for k in ("P1", "P2", "P3", "P4", "P6"))
    memory = "GPU memory" if p4.get("memory", "").startswith("cuda") else "RSS"
    lines.append(f"| P1 ensemble / sum of members, s per token (batch 1) | {p1['ensemble_s_per_token']*1000:.1f} ms / "
                 f"{sum(p1['members_s_per_token'])*1000:.1f} ms = **{p1['ratio']:.2f}x**; without the fusion time "
                 f"{p1['ratio_without_fusion']:.2f}x; floor of the rows computed "
                 f"({'+'.join(f'{r:.0f}' for r in p1['rows_computed_per_fused_step'])} per fused step, "
                 f"{p1['fused_steps']}/{p1['steps']} steps fused, "
                 f"{'+'.join(f'{t:.3f}' for t in p1['ms_per_row'])} ms per row): {p1['ratio_floor_rows']:.2f}x | "
                 f"{ok('P1', p1['ratio'])} |")
    lines.append(f"| P2 KV-cache resync vs re-prefill (same tokens: {p2['same_tokens']}) | {p2['cache_s']:.1f} s vs "
                 f"{p2['reprefill_s']:.1f} s = **{p2['speedup']:.1f}x**; without the fusion time "
                 f"{p2['speedup_without_fusion']:.1f}x | {ok('P2', p2['speedup'])} |")
    lines.append(f"| P3 tokens/s batch {p3['batch']} vs 1 | {p3['tokens_per_s_batch']:.1f} vs {p3['tokens_per_s_1']:.1f} "
                 f"= **{p3['ratio']:.1f}x**; members alone (the floor): {p3['members_alone_tokens_per_s_batch']:.1f} vs "
                 f"{p3['members_alone_tokens_per_s_1']:.1f} = {p3['members_alone_ratio']:.1f}x | {ok('P3', p3['ratio'])} |")
    lines.append(f"| P4 peak {memory} / weights ({res['anchors']} anchors) | {p4['peak_rss_bytes']/1e9:.2f} GB / "
                 f"{p4['weights_bytes']/1e9:.2f} GB = **{p4['ratio']:.2f}x** (release's dense matrices: "
                 f"{p4['release_dense_bytes']/1e9:.1f} GB); members alone, same process kind: "
                 f"{p4['members_alone_peak_rss_bytes']/1e9:.2f} GB = {p4['floor_ratio']:.2f}x | {ok('P4', p4['ratio'])} |")
    lines.append(f"| P5 cold anchors + relative build | **{res['P5_cold_build_s']:.1f} s** | "
                 f"{ok('P5_cold', res['P5_cold_build_s'])} |")
    if "P5_warm_snakemake_s" in res:
        lines.append(f"| P5 warm snakemake, nothing to do ({res['P5_warm_nothing_to_do']}) | "
                     f"**{res['P5_warm_snakemake_s']:.1f} s** | {ok('P5_warm', res['P5_warm_snakemake_s'])} |")
    if p6 is not None:
        acc = p6["arc_c_accuracy"]
        lines.append(f"| P6 fast = paper, share of paper mode's fused steps ({p6['anchors']} anchors, both orders) "
                     f"| {p6['agree']}/{p6['steps']} = **{100*p6['share']:.1f}%**; ARC-C "
                     f"({acc['questions']} q.) fast {acc['fast']:.1f}% vs paper {acc['paper']:.1f}% | "
                     f"{ok('P6', p6['share'])} |")
    b = res["breakdown_ms_per_step"]
    where = f"{res.get('device', 'cpu')}, {res.get('dtype', 'float32')}"
    if res.get("random_weights"):
        where += ", random weights (timing only; P6 skipped)"
    lines += ["", "One ensemble step, batch 1 (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in b.items()),
              "", f"Members: {', '.join(res['members'])} ({where})."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deepen.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("members", nargs="*", default=["smollm2-135m", "gemma3-270m"])
    parser.add_argument("--quick", action="store_true", help="smoke run: few tokens, one repeat")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--p6-anchors", type=int, default=2000)
    parser.add_argument("--min-anchors", type=int, default=1000)
    parser.add_argument("--out", default="results/bench.json")
    parser.add_argument("--snakemake-dir", default=".", help="where a finished pipeline lives (P5 warm re-run)")
    parser.add_argument("--device", default="auto", help="auto (a GPU when visible), cpu, cuda, cuda:1...")
    parser.add_argument("--dtype", default="auto", help="auto (fp32 on CPU, bf16 on GPU), float32, bfloat16, float16")
    parser.add_argument("--random-weights", action="store_true",
                        help="members are directories with config.json + tokenizer files; draw their weights at "
                             "random (timing only: P6 is skipped)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    out = Path(args.out)
    res = bench(args.members, quick=args.quick, repeats=repeats, out_json=out, out_md=out.with_suffix(".md"),
                p6_anchors=args.p6_anchors, snakemake_dir=Path(args.snakemake_dir) if args.snakemake_dir else None,
                min_anchors=args.min_anchors, device=args.device, dtype=args.dtype,
                random_weights=args.random_weights)
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
