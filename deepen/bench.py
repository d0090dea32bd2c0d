"""Benchmark: the ensemble against its physical floor, the members' own forward passes.

    python -m deepen.bench                       # SmolLM2-135M (main) + Gemma-3-270M, writes results/bench.{json,md}
    python -m deepen.bench --quick               # a smoke run (few tokens, one repeat): checks it runs, not timings
    python -m deepen.bench MAIN ASSISTANT ...     # any members (hub ids, directories, GGUF files)

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
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

PROMPT = "Once upon a time, in a small village by the sea,"
TARGETS = {"P1": ("<=", 1.10), "P2": (">=", 10.0), "P3": (">=", 5.0), "P4": ("<=", 1.5), "P5_cold": ("<", 60.0),
           "P5_warm": ("<", 10.0), "P6": (">=", 0.995)}


def _log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
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


def peak_rss_of_generate(sources: list[str], tokens: int, alone: bool = False, min_anchors: int = 1000) -> int:
    """Peak RSS (bytes) of a fresh process generating with the ensemble (fast mode, all anchors), or, with ``alone``,
    with each member by itself one after the other (the floor: weights, tokenizers, torch, activations)."""
    run = (f"for m in members: Ensemble([m], progress=False).generate([{PROMPT!r}], max_new_tokens={tokens})\n"
           if alone else
           f"Ensemble(members, progress=False, **kw).generate([{PROMPT!r}], max_new_tokens={tokens}, ignore_eos=True)\n")
    code = (
        "import os, resource\n"
        "from deepen import Ensemble, load_member\n"
        f"members = [load_member(s) for s in {sources!r}]\n"
        f"kw = dict(min_anchors={min_anchors})\n"
        + run +
        # VmHWM, the peak RSS of this process image: ru_maxrss would carry the parent's RSS across fork + exec
        "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
        "      if os.path.exists('/proc/self/status') else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) * 1024


def task_prompts(per_task: dict[str, int]) -> list[dict]:
    from deepen.tasks import build_prompts

    rows = []
    for task, n in per_task.items():
        rows += build_prompts(task, limit=n)
    return rows


def bench(sources: list[str], *, quick: bool, repeats: int, out_json: Path, out_md: Path, p6_anchors: int,
          snakemake_dir: Path | None, min_anchors: int = 1000) -> dict:
    from deepen import Ensemble, load_member
    from deepen.fuse import Fuser, FusionConfig

    torch.manual_seed(0)
    res: dict = {"machine": {"platform": platform.platform(), "python": platform.python_version(),
                             "torch": torch.__version__, "threads": torch.get_num_threads(),
                             "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
                 "members": sources, "quick": quick, "repeats": repeats}
    tokens = 8 if quick else 64
    long_tokens = 16 if quick else 256
    batch = 4 if quick else 16

    _log("loading members")
    members = [load_member(s) for s in sources]
    res["members"] = [m.name for m in members]

    # P5 (cold): anchors + relative spaces from loaded models
    t0 = time.perf_counter()
    ens = Ensemble(members, min_anchors=min_anchors, progress=False)
    res["P5_cold_build_s"] = time.perf_counter() - t0
    res["anchors"] = len(ens.anchors)

    # P1: ensemble vs the members alone, batch 1
    _log("P1: per-token latency")
    alone = [per_token_latency(Ensemble([m], progress=False), [PROMPT], tokens, repeats) for m in members]
    ens_tok = per_token_latency(ens, [PROMPT], tokens, repeats)
    res["P1"] = {"members_s_per_token": alone, "ensemble_s_per_token": ens_tok, "ratio": ens_tok / sum(alone)}

    # breakdown of one ensemble step (batch 1)
    g = ens.generate([PROMPT], max_new_tokens=tokens, timings=True, ignore_eos=True)[0]
    steps = max(g.timings["steps"] - 1, 1)
    res["breakdown_ms_per_step"] = {k: 1000 * v / steps for k, v in g.timings.items()
                                    if k in ("forward_main", "forward_assistants", "fuse", "relative", "search",
                                             "tokenizer")}

    # P2: KV-cache resync vs re-prefill, same tokens
    _log(f"P2: {long_tokens} tokens, cache vs re-prefill")
    ref = Ensemble(members, sync="reprefill", anchors=ens.anchors, spaces=ens.spaces, progress=False)
    out_c = ens.generate([PROMPT], max_new_tokens=long_tokens, ignore_eos=True)[0]
    out_r = ref.generate([PROMPT], max_new_tokens=long_tokens, ignore_eos=True)[0]
    t_cache = _median_time(lambda: ens.generate([PROMPT], max_new_tokens=long_tokens, ignore_eos=True), repeats)
    t_ref = _median_time(lambda: ref.generate([PROMPT], max_new_tokens=long_tokens, ignore_eos=True),
                         1 if not quick else repeats)
    res["P2"] = {"cache_s": t_cache, "reprefill_s": t_ref, "speedup": t_ref / t_cache,
                 "same_tokens": out_c.token_ids == out_r.token_ids}

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

    # P4: peak RSS vs weights
    _log("P4: peak memory")
    wb = weights_bytes(members)
    rss = peak_rss_of_generate([m.source for m in members], 8 if quick else 32, min_anchors=min_anchors)
    floor = peak_rss_of_generate([m.source for m in members], 8 if quick else 32, alone=True)
    res["P4"] = {"peak_rss_bytes": rss, "weights_bytes": wb, "ratio": rss / wb, "members_alone_peak_rss_bytes": floor,
                 "floor_ratio": floor / wb, "release_dense_bytes": sum(s.dense_bytes() for s in ens.spaces)}

    # P5 (warm): snakemake with nothing to do
    if snakemake_dir is not None and (snakemake_dir / "results" / "summary.md").is_file():
        exe = Path(sys.executable).with_name("snakemake")
        t0 = time.perf_counter()
        proc = subprocess.run([str(exe), "--cores", "2"], cwd=snakemake_dir, capture_output=True, text=True)
        res["P5_warm_snakemake_s"] = time.perf_counter() - t0
        res["P5_warm_nothing_to_do"] = "Nothing to be done" in (proc.stdout + proc.stderr)

    # P6: fast vs paper on real prompts, capped anchors
    _log(f"P6: fast vs paper with {p6_anchors} anchors")
    capped = Ensemble(members, max_anchors=p6_anchors, min_anchors=min(min_anchors, p6_anchors), progress=False)
    shadow = Fuser(capped.spaces, FusionConfig(eta=capped.config.eta, steps=capped.config.steps, mode="paper"))
    rows = task_prompts({"arc_c": 2, "piqa": 2} if quick else {"triviaqa": 16, "nq": 16, "gsm8k": 4, "arc_c": 8,
                                                                "mmlu": 8, "piqa": 8})
    agree = compared = skipped = 0
    for start in range(0, len(rows), 4):
        part = rows[start : start + 4]
        outs = capped.generate([r["prompt"] for r in part], max_new_tokens=8 if quick else 24,
                               stop=[r["stop"] for r in part], batch_size=4, shadow=shadow)
        agree += sum(o.timings["agree"] for o in outs)
        compared += sum(o.timings["compared"] for o in outs)
        skipped += sum(o.timings["skipped"] for o in outs)
    res["P6"] = {"anchors": p6_anchors, "agree": agree, "steps": compared, "skipped_steps": skipped,
                 "share": agree / max(compared, 1)}
    mc = task_prompts({"arc_c": 4} if quick else {"arc_c": 40})
    acc = {}
    for mode in ("fast", "paper"):
        e = Ensemble(members, mode=mode, anchors=capped.anchors, spaces=capped.spaces, progress=False)
        outs = e.generate([r["prompt"] for r in mc], max_new_tokens=1, choices=[r["choices"] for r in mc],
                          batch_size=8)
        acc[mode] = 100 * sum(o.choice == r["answers"][0] for o, r in zip(outs, mc)) / len(mc)
    res["P6"]["arc_c_accuracy"] = acc | {"questions": len(mc)}

    res["targets"] = {k: f"{op} {v}" for k, (op, v) in TARGETS.items()}
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(res, indent=2))
    out_md.write_text(markdown(res))
    return res


def markdown(res: dict) -> str:
    def ok(key, value):
        op, target = TARGETS[key]
        good = {"<=": value <= target, ">=": value >= target, "<": value < target}[op]
        return f"{op} {target} | {'met' if good else 'NOT met'}"

    lines = ["| figure | measured | target | |", "|---|---|---|---|"]
    p1, p2, p3, p4, p6 = (res[k] for k in ("P1", "P2", "P3", "P4", "P6"))
    lines.append(f"| P1 ensemble / sum of members, s per token (batch 1) | {p1['ensemble_s_per_token']*1000:.1f} ms / "
                 f"{sum(p1['members_s_per_token'])*1000:.1f} ms = **{p1['ratio']:.2f}x** | {ok('P1', p1['ratio'])} |")
    lines.append(f"| P2 KV-cache resync vs re-prefill (same tokens: {p2['same_tokens']}) | {p2['cache_s']:.1f} s vs "
                 f"{p2['reprefill_s']:.1f} s = **{p2['speedup']:.1f}x** | {ok('P2', p2['speedup'])} |")
    lines.append(f"| P3 tokens/s batch {p3['batch']} vs 1 | {p3['tokens_per_s_batch']:.1f} vs {p3['tokens_per_s_1']:.1f} "
                 f"= **{p3['ratio']:.1f}x**; members alone (the floor): {p3['members_alone_tokens_per_s_batch']:.1f} vs "
                 f"{p3['members_alone_tokens_per_s_1']:.1f} = {p3['members_alone_ratio']:.1f}x | {ok('P3', p3['ratio'])} |")
    lines.append(f"| P4 peak RSS / weights ({res['anchors']} anchors) | {p4['peak_rss_bytes']/1e9:.2f} GB / "
                 f"{p4['weights_bytes']/1e9:.2f} GB = **{p4['ratio']:.2f}x** (release's dense matrices: "
                 f"{p4['release_dense_bytes']/1e9:.1f} GB); members alone, same process kind: "
                 f"{p4['members_alone_peak_rss_bytes']/1e9:.2f} GB = {p4['floor_ratio']:.2f}x | {ok('P4', p4['ratio'])} |")
    lines.append(f"| P5 cold anchors + relative build | **{res['P5_cold_build_s']:.1f} s** | "
                 f"{ok('P5_cold', res['P5_cold_build_s'])} |")
    if "P5_warm_snakemake_s" in res:
        lines.append(f"| P5 warm snakemake, nothing to do ({res['P5_warm_nothing_to_do']}) | "
                     f"**{res['P5_warm_snakemake_s']:.1f} s** | {ok('P5_warm', res['P5_warm_snakemake_s'])} |")
    acc = p6["arc_c_accuracy"]
    lines.append(f"| P6 fast = paper, share of steps ({p6['anchors']} anchors; {p6['skipped_steps']} of the steps "
                 f"needed no fusion) | {p6['agree']}/{p6['steps']} = **{100*p6['share']:.1f}%**; ARC-C ({acc['questions']} q.) fast {acc['fast']:.1f}% vs paper "
                 f"{acc['paper']:.1f}% | {ok('P6', p6['share'])} |")
    b = res["breakdown_ms_per_step"]
    lines += ["", "One ensemble step, batch 1 (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in b.items())]
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
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    out = Path(args.out)
    res = bench(args.members, quick=args.quick, repeats=repeats, out_json=out, out_md=out.with_suffix(".md"),
                p6_anchors=args.p6_anchors, snakemake_dir=Path(args.snakemake_dir) if args.snakemake_dir else None,
                min_anchors=args.min_anchors)
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
