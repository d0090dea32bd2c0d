"""Benchmark: the ensemble against its physical floor (the members' own forward passes) and against the peers.

    python -m deepen.bench                          # SmolLM2-135M (main) + Gemma-3-270M: every section
    python -m deepen.bench --quick                  # a smoke run (few tokens, one repeat): it runs, timings mean little
    python -m deepen.bench --only agreement         # some sections; the others keep their last figures
    python -m deepen.bench MAIN ASSISTANT ...        # any members (embedded names, hub ids, directories, GGUF files)
    python -m deepen.bench --device cuda --random-weights DIR DIR   # timing only, weights drawn at random

Every goal is a ratio of two figures measured in the same section of the same run, and the two sides are measured
interleaved (members alone, ensemble, members alone, ...), so that a neighbour's load on a shared machine falls on
both sides. Each figure is a median over ``--repeats`` runs. The sections and their goals:

  speed      P1  per-token latency, ensemble (fast, batch 1) / sum of the members alone                 <= 1.10
             P3  the same at batch 16, per row (what the pipeline pays)                                  <= 1.10
             peers: each method's per-token ratio at batch 1 and 16; DeePEn's no larger than the cheapest peer
                 that ensembles every step; SAFE's share of ensembled tokens on task prompts (published: 0.7-19%)
  resync     P2  KV-cache resync vs the release's re-prefill at 64 / 256 / 1024 tokens, as a share of the gain
                 the members alone get from their own KV caches (same tokens, checked)                  >= 0.95
  release    the release's scheme (paper mode + re-prefill, capped anchors) vs fast mode + KV cache on the same
             members, prompt and tokens: per-token ratio (tokens identical)                             >= 10
  memory     P4  peak resident memory (GPU: max allocated) of an ensemble run with all anchors / weights <= 1.5
  build      P5  cold anchors + relative spaces (< 60 s); a warm ``snakemake`` with nothing to do (< 10 s)
  agreement  P6  fast (and certified fast) mode choosing paper mode's token, per η x T cell, both orders of the
                 members, on prompts from all six tasks, capped anchors                                 >= 99.5%

``results/bench.json`` holds each section's figures with the machine, commit, command and time it ran;
``results/bench.md`` is the table. Both are run outputs (not committed); the run docs/performance.md reports is kept
as docs/bench.{json,md}.
"""
