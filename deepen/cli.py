r"""The ``deepen`` command (also ``python -m deepen``).

    deepen generate smollm2-135m gemma3-270m --prompt "The capital of France is" --max-new-tokens 32 --json
    deepen generate meta-llama/Llama-2-13b-hf facebook/nllb-200-distilled-600M --prompt $'English: Hello.\nGerman:' \
        --source "Hello." --src-lang en --tgt-lang de --stop $'\n'      # with an encoder-decoder translator
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

from deepen.ensemble import Ensemble
from deepen.errors import DeepenError
from deepen.fuse import FusionConfig
from deepen.members import load_member, resolve_device
from deepen.methods import REGISTRY, parse as parse_method
from deepen.progress import log
from deepen.sources import cache_home, locate


def _weights(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"weights must be comma-separated numbers, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepen", description="DeePEn: ensemble LLMs with different vocabularies.")
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="greedy generation with an ensemble (main model first)")
    g.add_argument("members", nargs="+",
                   help="main model first: embedded name (smollm2-135m, gemma3-270m), GGUF file, checkpoint dir or hub id")
    g.add_argument("--prompt", action="append", required=True, help="prompt text (repeat for a batch)")
    g.add_argument("--source", action="append", default=None,
                   help="text an encoder-decoder member's encoder reads, one per --prompt (default: the prompt)")
    g.add_argument("--src-lang", default=None, help="source language of encoder-decoder translators (en, deu_Latn)")
    g.add_argument("--tgt-lang", default=None, help="target language of encoder-decoder translators (de, deu_Latn)")
    g.add_argument("--max-new-tokens", type=int, default=32)
    g.add_argument("--method", default="deepen",
                   help=f"decoding method: {', '.join(REGISTRY)}, or safe+<method> (default deepen)")
    g.add_argument("--eta", type=float, default=None,
                   help=f"DeePEn: relative ensemble learning rate (0 = main model alone; default {FusionConfig.eta})")
    g.add_argument("--steps", type=int, default=None,
                   help=f"DeePEn: search iterations per token (T; default {FusionConfig.steps})")
    g.add_argument("--weights", type=_weights, default=None, help="one per member, e.g. 0.6,0.4 (default uniform)")
    g.add_argument("--mode", choices=("fast", "paper"), default=None, help=f"DeePEn (default {FusionConfig.mode})")
    g.add_argument("--certify", action=argparse.BooleanOptionalAction, default=None,
                   help="DeePEn fast mode: prove every fused token is paper mode's (docs/method.md); default: only at "
                   "the η / T where plain fast mode was not measured exact")
    g.add_argument("--gate", type=float, default=None, help="GaC: ensemble only where the main model's top "
                   "probability is below this (default 0.5)")
    g.add_argument("--top-k", dest="unite_k", type=int, default=None,
                   help="UniTE: tokens each member contributes (default 10)")
    g.add_argument("--draft", type=int, default=None, help="safe+<method>: tokens the main model drafts (default 5)")
    g.add_argument("--max-dense-gb", type=float, default=None,
                   help="paper mode: memory budget of the dense relative matrices (default 90%% of what is free)")
    g.add_argument("--stop", action="append", default=[], help="stop string (repeatable), e.g. --stop $'\\n'")
    g.add_argument("--min-anchors", type=int, default=None, help="DeePEn (default 1000)")
    g.add_argument("--max-anchors", type=int, default=None, help="keep only the first N anchors")
    g.add_argument("--topk", type=int, default=None,
                   help=f"DeePEn fast mode: most relative rows per member and step (default {FusionConfig.topk})")
    g.add_argument("--mass", type=float, default=None,
                   help=f"DeePEn fast mode: probability mass the rows must cover (default {FusionConfig.mass})")
    g.add_argument("--row-cache", type=int, default=None,
                   help="DeePEn fast mode: relative rows kept per member, at least: the cache grows to twice a step's "
                        "request within 512 MiB (~185 KB a row at 46k anchors; 0 = none; default 128)")
    g.add_argument("--sync", choices=("cache", "reprefill"), default="cache")
    g.add_argument("--batch-size", type=int, default=8)
    g.add_argument("--dtype", default="auto", help="auto (fp32 on CPU, bf16 on GPU), float32, bfloat16, float16")
    g.add_argument("--device", default="auto")
    g.add_argument("--cache-dir", default=None, help="where GGUF models are materialised (default $DEEPEN_HOME)")
    g.add_argument("--chat-template", action="store_true", help="wrap prompts in each member's chat template")
    g.add_argument("--timings", action="store_true", help="include a per-step time breakdown in --json output")
    g.add_argument("--json", action="store_true", help="print one JSON object (a list of them for several prompts)")
    return parser


#: the flags of each method's options: flag attribute -> option name (a flag another method takes is refused)
METHOD_FLAGS: dict[str, dict[str, str]] = {
    "deepen": {"eta": "eta", "steps": "steps", "mode": "mode", "certify": "certify", "topk": "topk", "mass": "mass",
               "min_anchors": "min_anchors", "max_anchors": "max_anchors", "row_cache": "row_cache",
               "max_dense_gb": "max_dense_bytes"},
    "gac": {"gate": "gate"},
    "unite": {"unite_k": "k"},
    "safe": {"draft": "draft"},
}


def method_options(args) -> dict:
    """The options of ``--method`` from the flags given; a flag that belongs to another method is an error."""
    composer, base = parse_method(args.method)
    takes = {**METHOD_FLAGS[base], **METHOD_FLAGS.get(composer or "", {})}
    options = {"weights": args.weights}
    for method, flags in METHOD_FLAGS.items():
        for flag, option in flags.items():
            value = getattr(args, flag)
            if value is None:
                continue
            if flag not in takes:
                raise DeepenError(f"--{flag.replace('_', '-').replace('unite-k', 'top-k')} is an option of {method}; "
                                  f"--method {args.method} does not take it")
            options[option] = int(value * 1e9) if flag == "max_dense_gb" else value
    return options


def check_args(args) -> None:
    """Settings checks that need no model: bad values end the command before anything is loaded."""
    parse_method(args.method)
    for name in ("max_new_tokens", "batch_size", "min_anchors"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise DeepenError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.row_cache is not None and args.row_cache < 0:
        raise DeepenError(f"--row-cache must be >= 0, got {args.row_cache}")
    if args.max_anchors is not None and args.max_anchors < 1:
        raise DeepenError(f"--max-anchors must be >= 1, got {args.max_anchors}")
    if args.max_dense_gb is not None and not (math.isfinite(args.max_dense_gb) and args.max_dense_gb > 0):
        raise DeepenError(f"--max-dense-gb must be a finite number > 0, got {args.max_dense_gb}")
    if len(set(args.members)) != len(args.members):
        raise DeepenError(f"a member is listed twice ({', '.join(args.members)}); an ensemble needs distinct members")
    if any(not p for p in args.prompt):
        raise DeepenError("--prompt: an empty prompt gives the models nothing to read")
    if args.source is not None and len(args.source) != len(args.prompt):
        raise DeepenError(f"--source: give one per --prompt ({len(args.source)} sources for {len(args.prompt)} prompts)")
    options = method_options(args)
    if parse_method(args.method)[1] == "deepen":
        fusion = {k: options[k] for k in ("eta", "steps", "mode", "topk", "mass") if k in options}
        FusionConfig(**fusion, weights=None if args.weights is None else tuple(args.weights)).validate(
            len(args.members))
    resolve_device(args.device)
    if args.cache_dir is not None:
        cache_home(args.cache_dir)


def cmd_generate(args) -> int:
    check_args(args)
    t0 = time.perf_counter()
    for source in args.members:  # materialise everything first: one dequantisation in memory at a time
        locate(source, args.cache_dir)
    members = []
    for source in args.members:
        log(f"loading {source}...")
        members.append(load_member(source, dtype=args.dtype, device=args.device, cache_dir=args.cache_dir,
                                   chat_template=args.chat_template))
    options = method_options(args)
    ensemble = Ensemble(members, args.method, sync=args.sync, **options)
    setup = time.perf_counter() - t0
    t1 = time.perf_counter()
    # A prompt that cannot be decoded (invalid text, too long for a member) gets an error row; the others decode.
    outputs = ensemble.generate(args.prompt, max_new_tokens=args.max_new_tokens, stop=args.stop,
                                batch_size=args.batch_size, timings=args.timings, sources=args.source,
                                src_lang=args.src_lang, tgt_lang=args.tgt_lang)
    seconds = time.perf_counter() - t1
    for i, out in enumerate(outputs):
        if out.stop_reason.startswith("error"):
            print(f"deepen: error: prompt {i + 1}: {out.stop_reason.removeprefix('error: ')}", file=sys.stderr)
    status = 2 if all(o.stop_reason.startswith("error") for o in outputs) else 0  # nothing was generated
    if not args.json:
        for out in outputs:
            print(out.text)
        return status
    deepen_method = getattr(ensemble.method, "base", ensemble.method)  # safe+deepen runs DeePEn underneath
    anchors = getattr(deepen_method, "anchors", None)
    fusion = getattr(deepen_method, "config", None)
    records = []
    for prompt, out in zip(args.prompt, outputs):
        rec = {
            "prompt": prompt.encode("utf-8", "backslashreplace").decode(), "text": out.text, "token_ids": out.token_ids, "stop_reason": out.stop_reason,
            "seconds": round(out.seconds, 4), "members": [m.name for m in members], "main": members[0].name,
            "method": args.method, "options": {k: v for k, v in options.items() if k != "weights"},
            **({} if fusion is None else {"mode": fusion.mode, "eta": fusion.eta, "steps": fusion.steps,
                                          "certified": fusion.certifies, "certificate": ensemble.certificate}),
            "weights": args.weights or [1 / len(members)] * len(members), "ensembled": out.ensembled,
            "anchors": None if anchors is None else len(anchors),
            "setup_seconds": round(setup, 2), "generate_seconds": round(seconds, 3),
        }
        if args.timings:
            rec["timings"] = out.timings
        records.append(rec)
    print(json.dumps(records[0] if len(records) == 1 else records, ensure_ascii=False))
    return status


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "generate":
            return cmd_generate(args)
    except DeepenError as exc:
        print(f"deepen: error: {exc}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
