"""``python -m deepen.bench``: run the benchmark's sections and write results/bench.{json,md} (see deepen.bench)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from deepen import bench as package
from deepen.bench import agreement, build, peak, release, resync, speed
from deepen.bench.checkpoints import random_weight_members
from deepen.bench.report import markdown
from deepen.bench.timing import log
from deepen.members import load_member, resolve_device

SECTIONS = ("speed", "resync", "release", "memory", "build", "agreement")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m deepen.bench", description=package.__doc__.split("\n\n")[0])
    p.add_argument("members", nargs="*", default=["smollm2-135m", "gemma3-270m"])
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections: {', '.join(SECTIONS)}")
    p.add_argument("--quick", action="store_true", help="smoke run: few tokens, one repeat (checks that it runs)")
    p.add_argument("--repeats", type=int, default=None, help="rounds per timing (default 3; --quick 1)")
    p.add_argument("--tokens", type=int, default=None, help="tokens per timed generation (default 48)")
    p.add_argument("--batch", type=int, default=16, help="the batched figure's batch size (P3)")
    p.add_argument("--lengths", default="64,256,1024", help="P2's lengths in tokens")
    p.add_argument("--min-anchors", type=int, default=1000)
    p.add_argument("--capped-anchors", type=int, default=2048, help="anchors where paper mode runs (release, P6)")
    p.add_argument("--p6-per-task", type=int, default=4, help="P6: prompts per task")
    p.add_argument("--p6-tokens", type=int, default=16, help="P6: tokens decoded per prompt")
    p.add_argument("--p6-etas", default="0.05,0.15,0.3,0.5,1.0")
    p.add_argument("--p6-steps", default="1,3,5,10")
    p.add_argument("--out", default="results/bench.json")
    p.add_argument("--snakemake-dir", default=".", help="a finished pipeline (P5's warm re-run); '' to skip")
    p.add_argument("--device", default="auto", help="auto (a GPU when visible), cpu, cuda, cuda:1...")
    p.add_argument("--dtype", default="auto", help="auto (fp32 on CPU, bf16 on GPU), float32, bfloat16, float16")
    p.add_argument("--random-weights", action="store_true",
                   help="members are directories with config.json + tokenizer files; weights drawn at random "
                        "(timing only: the agreement section is skipped)")
    args = p.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(args.only) - set(SECTIONS))
    if unknown:
        p.error(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.tokens = args.tokens or (6 if args.quick else 48)
    return args


def commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                               check=True)
        return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def section(name: str, args, members, alone, device: str, last: dict | None) -> dict:
    """One section's figures; ``last`` is the previous run's figures for it (the agreement grid keeps its cells)."""
    quick = args.quick
    if name == "speed":
        return speed.run(members, alone, batch=4 if quick else args.batch, tokens=args.tokens, repeats=args.repeats,
                         min_anchors=args.min_anchors, quick=quick)
    if name == "resync":
        lengths = [8, 16] if quick else [int(x) for x in args.lengths.split(",")]
        return resync.run(members, alone, lengths=lengths, repeats=args.repeats, min_anchors=args.min_anchors)
    if name == "release":
        return release.run(members, alone, anchors=args.capped_anchors, tokens=8 if quick else 64, repeats=args.repeats)
    if name == "memory":
        return peak.run(members, tokens=8 if quick else 32, min_anchors=args.min_anchors, device=device,
                        dtype=args.dtype)
    if name == "build":
        return build.run(members, min_anchors=args.min_anchors, repeats=args.repeats,
                         snakemake_dir=Path(args.snakemake_dir) if args.snakemake_dir else None)
    return agreement.run(members, anchors=args.capped_anchors, per_task=1 if quick else args.p6_per_task,
                         tokens=4 if quick else args.p6_tokens,
                         etas=[float(x) for x in args.p6_etas.split(",")][: 1 if quick else None],
                         steps_list=[int(x) for x in args.p6_steps.split(",")][: 1 if quick else None],
                         questions=4 if quick else 40, commit=commit(), previous=last,
                         progress=lambda cell: log(f"agreement cell: {cell}"))


def previous(out: Path, members: list[str]) -> dict:
    """The last run's sections, kept where this run does not redo them (same members only)."""
    if out.is_file():
        old = json.loads(out.read_text())
        if old.get("members") == members and "sections" in old:
            return old["sections"]
    return {}


def write(res: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(res, indent=1))
    tmp.replace(out)
    out.with_suffix(".md").write_text(markdown(res))


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    device = resolve_device(args.device)
    out = Path(args.out)
    sources = random_weight_members(args.members, out.parent / "random-weights") if args.random_weights else args.members
    torch.manual_seed(0)
    log("loading members (twice: the members-alone runs get their own copies)")
    members = [load_member(s, device=device, dtype=args.dtype) for s in sources]
    alone = [load_member(s, device=device, dtype=args.dtype) for s in sources]
    names = [m.name for m in members]
    res = {"members": names, "machine": machine(), "sections": previous(out, names)}
    for name in args.only:
        if name == "agreement" and args.random_weights:
            continue  # random models' agreement says nothing
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        figures = section(name, args, members, alone, device, res["sections"].get(name))
        figures["meta"] = {"when": started, "commit": commit(), "device": device, "quick": args.quick,
                           "random_weights": args.random_weights, "dtype": str(members[0].model.dtype)[6:],
                           "command": "python -m deepen.bench " + " ".join(argv if argv is not None else sys.argv[1:])}
        res["sections"][name] = figures
        write(res, out)  # each finished section is kept, even if a later one is cut short
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
