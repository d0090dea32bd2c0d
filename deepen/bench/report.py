"""The benchmark's table (Markdown): every figure against its goal, with the members' own figure beside it."""

from __future__ import annotations

GOALS = {"P1": ("<=", 1.10), "P3": ("<=", 1.10), "peers": ("<=", 1.0), "P2": (">=", 0.95), "release": (">=", 10.0),
         "P4": ("<=", 1.5), "P5_cold": ("<", 60.0), "P5_warm": ("<", 10.0), "P6": (">=", 0.995)}


def verdict(key: str, value: float) -> str:
    op, goal = GOALS[key]
    met = {"<=": value <= goal, ">=": value >= goal, "<": value < goal}[op]
    return f"{op} {goal:g} | {'met' if met else '**not met**'}"


def ms(seconds: float) -> str:
    return f"{1000 * seconds:.1f} ms"


def speed_rows(s: dict) -> list[str]:
    one, many = s["batch_1"], s["batch_n"]
    alone = " + ".join(ms(v) for k, v in one["s_per_token_per_row"].items() if k.startswith("alone:"))
    alone_n = " + ".join(ms(v) for k, v in many["s_per_token_per_row"].items() if k.startswith("alone:"))
    rows = [f"| P1 DeePEn per token, batch 1 / members alone | {ms(one['s_per_token_per_row']['deepen'])} / "
            f"({alone}) = **{s['P1']:.2f}x** | {verdict('P1', s['P1'])} |",
            f"| P3 DeePEn per token per row, batch {many['batch']} / members alone | "
            f"{ms(many['s_per_token_per_row']['deepen'])} / ({alone_n}) = **{s['P3']:.2f}x**; batch gain "
            f"{s['batch_gain']['deepen']:.2f}x (members alone: "
            + ", ".join(f"{s['batch_gain'][k]:.2f}x" for k in s["batch_gain"] if k.startswith("alone:"))
            + f") | {verdict('P3', s['P3'])} |"]
    if "floor" in s:
        rows.append(floor_row(s))
    for name, ratio in many["ratio"].items():
        if name != "deepen":
            rows.append(f"| {name} per token / members alone (batch 1; batch {many['batch']}) | "
                        f"{one['ratio'][name]:.2f}x; {ratio:.2f}x | |  |")
    rows.append(f"| DeePEn's ratio / the cheapest peer's that ensembles every step (batch {many['batch']}) | "
                f"**{s['deepen_vs_cheapest_every_step_peer']:.2f}**"
                + (f" (floor {s['floor']['deepen_vs_cheapest_every_step_peer']:.2f})" if "floor" in s else "")
                + f" | {verdict('peers', s['deepen_vs_cheapest_every_step_peer'])} |")
    share = s["safe_share"]
    rows.append(f"| SAFE+DeePEn, share of tokens ensembled ({share['rows']} GSM8K/TriviaQA/NQ prompts) | "
                f"{share['ensembled']}/{share['tokens']} = **{100 * share['share']:.1f}%** | published 0.7-19% | |")
    return rows


def floor_row(s: dict) -> str:
    """The measured floor of P1 and P3: DeePEn with its fusion replaced by its relative rows at the best rate."""
    f, rates, batch = s["floor"], s["rates"], s["batch_n"]["batch"]
    rows = " + ".join(f"{r:.0f}" for r in s["rows_per_step"]["batch_n"])
    best = ", ".join(f"{t:.3f}" for t in rates["row_ms"]["float32"])
    return (f"| floor of P1; P3: DeePEn with its fusion replaced by its relative rows ({rows} new rows per step at "
            f"batch {batch}) at the best per-row rate ({best} ms) | fp32 **{f['batch_1']['float32']:.2f}x; "
            f"{f['batch_n']['float32']:.2f}x**; rows from bf16 anchor embeddings {f['batch_1']['bfloat16']:.2f}x; "
            f"{f['batch_n']['bfloat16']:.2f}x (rows within {100 * rates['bf16_rows_max_relative_deviation']:.1f}% "
            f"of fp32's) | measured floor | |")


def resync_rows(r: dict) -> list[str]:
    rows = []
    for x in r["lengths"]:
        same = all(x["same_tokens"].values())
        key = f"| P2 KV resync vs re-prefill, {x['tokens']} tokens (same tokens: {same}) | ensemble " \
              f"{x['ensemble_gain']:.1f}x, members alone {x['members_alone_gain']:.1f}x: **{x['share_of_members_gain']:.2f}** |"
        rows.append(key + (f" {verdict('P2', x['share_of_members_gain'])} |" if x["tokens"] == r["P2_tokens"] else " | |"))
    return rows


def release_row(r: dict) -> str:
    return (f"| the release's scheme (paper + re-prefill, {r['anchors']} anchors) / ours, {r['tokens']} tokens "
            f"(same tokens: {r['same_tokens']}) | {r['seconds']['release']:.1f} s / {r['seconds']['ours']:.1f} s = "
            f"**{r['speedup']:.1f}x**"
            + (f"; ceiling (the release / the main model alone with its cache: what a scheme that costs nothing "
               f"beyond the main model would reach) {r['ceiling']:.1f}x" if "ceiling" in r else "")
            + f" | {verdict('release', r['speedup'])} |")


def memory_row(p: dict) -> str:
    what = "GPU memory" if p["memory"].startswith("cuda") else "RSS"
    return (f"| P4 peak {what} / weights | {p['peak_bytes'] / 1e9:.2f} GB / {p['weights_bytes'] / 1e9:.2f} GB = "
            f"**{p['P4']:.2f}x**; members alone {p['members_alone_ratio']:.2f}x; the release's dense matrices "
            f"{p['release_dense_bytes'] / 1e9:.1f} GB | {verdict('P4', p['P4'])} |")


def build_rows(b: dict) -> list[str]:
    rows = [f"| P5 cold anchors + relative spaces | **{b['cold_s']:.1f} s** | {verdict('P5_cold', b['cold_s'])} |"]
    if "warm_snakemake_s" in b:
        rows.append(f"| P5 warm snakemake, nothing to do ({b['warm_nothing_to_do']}) | **{b['warm_snakemake_s']:.1f} s** "
                    f"| {verdict('P5_warm', b['warm_snakemake_s'])} |")
    if "slurm_probe_s" in b:
        rows.append(f"| P5 warm less the SLURM plugin's start-up probe (`scontrol show config`, timed alone: "
                    f"{b['slurm_probe_s']:.1f} s) | {b['warm_without_probe_s']:.1f} s | what the re-run costs where "
                    f"the probe returns at once (e.g. no SLURM client) | |")
    return rows


def agreement_rows(a: dict) -> list[str]:
    worst = a["worst_cell_share"]
    acc = a["arc_c_accuracy"]
    return [f"| P6 default (certify auto) = paper, worst of {a['cells']} η x T cells ({a['anchors']} anchors, "
            f"{a['prompts']} prompts, both orders) | default **{100 * worst['default']:.1f}%** (plain fast "
            f"{100 * worst['fast']:.1f}%, topk 256 {100 * worst['topk256']:.1f}%, certified "
            f"{100 * worst['certified']:.1f}%); ARC-C ({acc['questions']} q.) fast {acc['fast']:.1f}% vs paper "
            f"{acc['paper']:.1f}% | {verdict('P6', worst['default'])} |"]


def grid_table(a: dict) -> list[str]:
    """One line per (order, η): each T's agreements of fast / certified with paper mode, and certified's escalations."""
    steps = sorted({c["steps"] for c in a["grid"]})
    lines = ["| order | η | " + " | ".join(f"T {t}" for t in steps) + " |", "|---|---|" + "---|" * len(steps)]
    cells = {}
    for c in a["grid"]:
        cells.setdefault((c["order"][0], c["eta"]), {})[c["steps"]] = c
    for (main, eta), row in cells.items():
        text = []
        for t in steps:
            c = row.get(t)
            if c is None:
                text.append("")
                continue
            n, k = c["compared"], c["certified_counts"]
            mark = "*" if c.get("default_fuser") == "certified" else ""
            text.append(f"{c['agree']['fast']}/{n}, cert.{mark} {c['agree']['certified']}/{n} "
                        f"({k.get('escalated', 0)} esc., {k.get('exact', 0)} exact)")
        lines.append(f"| {main} first | {eta:g} | " + " | ".join(text) + " |")
    return lines


def markdown(res: dict) -> str:
    sections = res["sections"]
    lines = ["| figure | measured | goal | |", "|---|---|---|---|"]
    if "speed" in sections:
        lines += speed_rows(sections["speed"])
    if "resync" in sections:
        lines += resync_rows(sections["resync"])
    if "release" in sections:
        lines.append(release_row(sections["release"]))
    if "memory" in sections:
        lines.append(memory_row(sections["memory"]))
    if "build" in sections:
        lines += build_rows(sections["build"])
    if "agreement" in sections:
        lines += agreement_rows(sections["agreement"])
        lines += ["", "Agreement with paper mode per cell (plain fast mode; certified fast mode, with the steps it "
                  "escalated or decided with paper mode's arithmetic). The default (certify auto) runs certified fast "
                  "mode in the cells marked *, plain fast mode in the others (the cells where plain fast mode agreed "
                  "on every step in both orders: on this grid the default agrees by construction, deepen.exactness):",
                  ""] + grid_table(sections["agreement"])
    if "speed" in sections:
        b = sections["speed"]["breakdown_ms_per_step"]
        sizes = {"batch_1": 1, "batch_n": sections["speed"]["batch_n"]["batch"]}
        lines += [""] + [f"One DeePEn step at batch {sizes[k]} (ms): " + ", ".join(f"{p} {v:.1f}" for p, v in parts.items())
                         for k, parts in b.items()]
    lines += ["", "Sections: " + "; ".join(f"{name}: {s['meta']['when']}, commit {s['meta']['commit']}, "
                                           f"{s['meta']['device']}" for name, s in sections.items()),
              f"Members: {', '.join(res['members'])}. Machine: {res['machine']['platform']}, "
              f"{res['machine']['cpus']} CPUs, torch {res['machine']['torch']}."]
    return "\n".join(lines) + "\n"
