"""The speed and scale claims of the results page, computed from experiments/results/bench.json.

One function per claim of ``claims.toml`` that says ``source = "bench.json"``; each returns the claim's rows
(``Row``: one line of a claim table) and any markdown shown under its table. Targets are the ones issue 5 set
for this 2-core CPU; whether a row meets its target is computed from the figures, so a new bench run can
turn a "yes" into a "no".
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Row:
    """One line of a claim table."""
    metric: str
    figure: str
    baseline: str = "—"
    target: str = "—"
    met: str = "—"
    command: str = ""  # empty: the claim's or the results file's command
    date: str = ""


def met(ok: bool) -> str:
    return "yes" if ok else "no"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def per_round(values: list[float]) -> str:
    return "per round " + ", ".join(f"{v:.2f}" for v in values)


def size_label(tokens: int) -> str:
    return f"{tokens // 1024}k" if tokens < 1 << 20 else f"{tokens / (1 << 20):g}M"


def memorize(b: dict, page_dir: Path) -> tuple[list[Row], list[str]]:
    """The headline compares like with like: memorizing against the plain forward in the same number format. A
    bench.json from before ``plain_forward_precision`` (the run of 2026-12-03) timed its main plain forward in
    float32 against bfloat16 memorizing; its like-with-like ratio is ``memorize_speedup_vs_plain_same_precision``,
    and its other ratios are shown as the mixed-precision figures they are."""
    n, precision = b["memorize_tokens"], b.get("memorize_precision", "float32")
    old = "plain_forward_precision" not in b
    mixed_run = old and precision != "float32"  # that run's memorize_speedup & co. set bfloat16 against float32
    same = b["memorize_speedup_vs_plain_same_precision"] if mixed_run else b["memorize_speedup"]
    plain = b["plain_forward_same_precision_tokens_per_s"] if mixed_run else b["plain_forward_tokens_per_s"]
    rounds = "" if mixed_run else f" ({per_round(b['memorize_speedup_per_round'])})"
    bound = 1 / b["memorize_forward_share"] if "memorize_forward_share" in b else None
    near = f", {same * (b['memorize_forward_share']):.0%} of its {bound:.2f}x bound" if bound else ""
    blocks = f"all {b['backbone_blocks']} blocks" if "backbone_blocks" in b else "all blocks"
    rows = [
        Row(f"memorize, {n:,} tokens of *The Time Machine*, segments read side by side in "
            f"{plural(b['memorize_workers'], 'thread')}, in {precision}, against the plain forward in the same "
            f"{precision} ({plural(b['memorize_rounds'], 'interleaved round')}, medians)",
            f"{b['memorize_tokens_per_s']:.0f} tokens/s = **{same:.3f}x**{near}{rounds}",
            f"{plain:.0f} tokens/s: plain transformers forward in {precision} ({blocks} + LM head, no cache), "
            "same segments, one at a time", "≥ 2x", met(same >= 2.0)),
    ]
    if bound:
        share, m = b["memorize_forward_share"], b["memory_layer"]
        rows.append(Row(
            f"the bound: memorizing runs blocks 0-{m - 1} and the keys and values of block {m} of "
            f"{b['backbone_blocks']}, no LM head: {share:.0%} of the plain forward's multiply-adds (arithmetic, "
            "not timed), so skipping the rest saves at most 1 / that when both run alike (memorizing also reads "
            f"{plural(b['memorize_workers'], 'segment')} side by side; its baseline runs one at a time)",
            f"≤ **{bound:.2f}x**; the figure above is **{same / bound:.0%}** of it", "—",
            "≥ 2x lies beyond the bound" if bound < 2 else "—", "—",
            "" if "memorize_limit" in b else "arithmetic on the backbone's shapes: the command in bench.json's notes"))
    if "memorize_limit" in b:
        limit = b["memorize_limit"]
        rows.append(Row(
            f"the bound as timed: the backbone up to the memory layer's keys and values alone (no bank), in "
            f"memorizing's threads and {precision}",
            f"{b['up_to_memory_layer_tokens_per_s']:.0f} tokens/s = {limit:.3f}x; the figure above is "
            f"{same / limit:.0%} of it", f"{plain:.0f} tokens/s: plain forward in {precision}"))
    label = ", against the float32 plain forward: mixed precision, not like with like" if mixed_run else ""
    rows += [
        Row("memorize against the plain forward given the same threads (how much is memorizing's own)" + label,
            f"{b['memorize_speedup_vs_threaded_plain']:.3f}x",
            f"{b['plain_forward_threaded_tokens_per_s']:.0f} tokens/s: plain forward in "
            f"{'float32' if mixed_run else precision}, same threads"),
        Row("memorize one segment at a time, torch's own threading" + label,
            f"{b['memorize_sequential_tokens_per_s']:.0f} tokens/s = {b['memorize_speedup_sequential']:.3f}x",
            f"{b['plain_forward_tokens_per_s']:.0f} tokens/s: plain forward in {'float32' if mixed_run else precision}"),
    ]
    if mixed_run or "memorize_speedup_mixed_precision" in b:
        plain32 = b["plain_forward_tokens_per_s"] if mixed_run else b["plain_forward_float32_tokens_per_s"]
        mixed = b["memorize_speedup"] if mixed_run else b["memorize_speedup_mixed_precision"]
        mixed_rounds = f" ({per_round(b['memorize_speedup_per_round'])})" if mixed_run else ""
        rows += [
            Row("memorize in float32 (`memorize_precision=\"float32\"`: a CPU without native bfloat16) against the "
                "plain forward in float32, same threads: like with like",
                f"{b['memorize_float32_tokens_per_s']:.0f} tokens/s = {b['memorize_speedup_float32']:.3f}x",
                f"{plain32:.0f} tokens/s: plain forward in float32"),
            Row(f"mixed precision, **not like with like**: {precision} memorizing against the float32 plain forward "
                "(the headline before issue 28)", f"{mixed:.3f}x{mixed_rounds}",
                f"{plain32:.0f} tokens/s: plain forward in float32"),
        ]
    return rows, []


def ram(b: dict, page_dir: Path) -> tuple[list[Row], list[str]]:
    r, at = b["ram_bytes_per_token"], b["ram_bytes_per_token"]["at_tokens"]
    rss = b["retrieval"].get("rss_growth_bytes_per_token")
    rows = [Row(f"bank RAM per token, IVF index, at {at:,} tokens",
                f"{r['ivf']:.0f} B/token = **{r['ivf'] * at / 1e9:.2f} GB**",
                f"exact index: {r['exact']:.0f} B/token", "< 1.5 GB for 1M tokens", met(r["ivf"] * at < 1.5e9))]
    if rss is not None:
        rows.append(Row(f"process resident memory growth while building the {at:,}-token bank",
                        f"{rss:.0f} B/token = {rss * at / 1e9:.2f} GB", "—", "< 1.5 GB for 1M tokens",
                        met(rss * at < 1.5e9)))
    if b.get("disk_bytes_per_token"):
        rows.append(Row("bank on disk (`bank.save`) per token", f"{b['disk_bytes_per_token']:.0f} B/token"))
    return rows, []


def index(b: dict, page_dir: Path) -> tuple[list[Row], list[str]]:
    r = b["retrieval"]
    sizes = [int(s) for s in r["sizes"]]
    big, small = str(sizes[-1]), str(sizes[0])
    ivf, exact, recall = r["ivf_ms_per_generated_token"], r["exact_ms_per_generated_token"], r["recall_at_16"]
    add = r["add_ms_per_1k_tokens"]
    memorize_ms = 1e6 / b["memorize_tokens_per_s"]
    rows = [
        Row(f"IVF search, ms per generated token (one token, all heads), {sizes[-1]:,} tokens in memory",
            f"**{ivf[big]:.2f} ms**", f"exact search: {exact[big]:.1f} ms", "< 10 ms at 1M tokens",
            met(ivf[big] < 10.0)),
        Row(f"recall@16 of IVF against exact, {sizes[-1]:,} tokens", f"**{recall[big]:.3f}**",
            "exact: 1 by definition", "≥ 0.9", met(recall[big] >= 0.9)),
        Row("recall@16, lowest over the sizes measured (" + ", ".join(size_label(s) for s in sizes) + ")",
            f"{min(recall.values()):.3f}", "—", "≥ 0.9", met(min(recall.values()) >= 0.9)),
        Row(f"adding to the bank, ms per 1,000 tokens, from {size_label(sizes[0])} to {size_label(sizes[-1])} tokens",
            f"{add[small]:.2f} → {add[big]:.2f} ms", f"memorizing those 1,000 tokens: {memorize_ms:,.0f} ms",
            "cost linear in tokens: add cost per token within 2x across the sizes",
            met(max(add.values()) <= 2 * min(add.values()))),
    ]
    header = "| tokens in memory | exact: ms / generated token | IVF: ms / generated token | exact: ms / query token " \
             "(batch of 256) | IVF: ms / query token (batch) | IVF lists / probes | recall@16 | RAM B/token (exact, IVF) " \
             "| add: ms per 1k tokens |\n|---|---|---|---|---|---|---|---|---|"
    lines = [header] + [
        f"| {s:,} | {exact[k]:.2f} | {ivf[k]:.2f} | {r['exact_ms_per_query_token'][k]:.2f} | "
        f"{r['ivf_ms_per_query_token'][k]:.2f} | {r['ivf_nlist'][k]} / {r['ivf_nprobe'][k]} | {recall[k]:.3f} | "
        f"{r['ram_bytes_per_token_exact'][k]:.0f}, {r['ram_bytes_per_token_ivf'][k]:.0f} | "
        + (f"{add[k]:.2f} |" if k in add else "— |") for s, k in ((s, str(s)) for s in sizes)]
    sweep = ["IVF lists searched (probes) against recall@16 and ms per generated token, at each size:", ""]
    for s in sizes:
        points = r.get("nprobe_sweep", {}).get(str(s), {})
        sweep.append(f"- {s:,} tokens: " + "; ".join(
            f"{p}: {v['recall_at_16']:.3f}, {v['ms_per_generated_token']:.2f} ms" for p, v in points.items()))
    extra = ["Every size, from the same run:", "\n".join(lines), "\n".join(sweep)]
    if b.get("plot"):
        extra.append(f"![retrieval time and RAM against bank size]({os.path.relpath(ROOT / b['plot'], page_dir)})")
    return rows, extra


def generation(b: dict, page_dir: Path) -> tuple[list[Row], list[str]]:
    g = b["generation"]
    rows = [
        Row(f"greedy generation, {g['bank_tokens']:,}-token bank, default checkpoint (idle side layers skipped), "
            f"decode schedule {g.get('decode_schedule', 'beside' if g['parallel_decode'] else 'after')}",
            f"{g['memory_tokens_per_s']:.2f} tokens/s = **{g['ratio_vs_transformers_generate']:.2f}x**",
            f"{g['transformers_generate_tokens_per_s']:.2f} tokens/s: transformers' `generate` (KV cache)",
            "≥ 0.65x", met(g["ratio_vs_transformers_generate"] >= 0.65)),
        Row("the same, against our own KV-cached backbone path",
            f"{g['ratio_vs_backbone']:.2f}x ({per_round(g['ratio_vs_backbone_per_round'])})",
            f"{g['backbone_tokens_per_s']:.2f} tokens/s: backbone alone", "≥ 0.65x", met(g["ratio_vs_backbone"] >= 0.65)),
    ]
    hows = {"beside": "SideNet forced beside the backbone in a second thread",
            "after": "SideNet forced after the backbone in one thread"}
    for key, label in (("generation_beside", "default checkpoint"), ("generation_after", "default checkpoint"),
                       ("generation_all_side_layers", "all 15 side layers running"),
                       ("generation_all_side_layers_beside", "all 15 side layers running"),
                       ("generation_all_side_layers_after", "all 15 side layers running"),
                       ("generation_all_side_layers_other_schedule", "all 15 side layers running")):
        a = b.get(key)
        if not a:
            continue
        schedule = a.get("decode_schedule") or ("beside" if a["parallel_decode"] else "after")
        how = hows.get(schedule, f"schedule {schedule} (the first decode steps time both; decode_schedule.py)")
        rows.append(Row(f"{label}, {how}",
                        f"{a['memory_tokens_per_s']:.2f} tokens/s = **{a['ratio_vs_backbone']:.2f}x** "
                        f"({per_round(a['ratio_vs_backbone_per_round'])})",
                        f"{a['backbone_tokens_per_s']:.2f} tokens/s: backbone alone", "≥ 0.65x",
                        met(a["ratio_vs_backbone"] >= 0.65)))
    return rows, []


def app_start(b: dict, page_dir: Path) -> tuple[list[Row], list[str]]:
    return [Row("`python app.py` to the first served page (model loaded), second start of two",
                f"**{b['app_ready_s']:.1f} s** (first start {b['app_ready_first_s']:.1f} s)", "—", "≤ 20 s",
                met(b["app_ready_s"] <= 20.0))], []


def ttft(b: dict, page_dir: Path) -> tuple[list[Row], list[str]]:
    t = b.get("ttft")
    if not t:  # a bench.json from before the key: the claim's hand-kept rows stand alone
        return [], []
    return [
        Row(f"time to the first answer token, {t['bank_tokens']:,}-token bank, `{t['mode']}` mode (the default), "
            "first question after memorizing (cold: the copy cache is built then)",
            f"**{t['cold_s']:.2f} s**", "—", "≤ 3 s", met(t["cold_s"] <= 3.0)),
        Row("the same, a second question (warm)", f"**{t['warm_s']:.2f} s**", "—", "≤ 3 s", met(t["warm_s"] <= 3.0)),
        Row("its parts, timed apart: search / building the tokens-only copy cache / prompt prefill + first token",
            f"{t['search_s']:.2f} s / {t['copy_cache_build_s']:.2f} s / {t['prefill_first_token_s']:.2f} s "
            f"({t['prompt_tokens']} prompt tokens, {t['copy_cache_tokens']:,} tokens in the copy cache)"),
    ], []


def training(b: dict, page_dir: Path) -> tuple[list[Row], list[str]]:
    rows = []
    for t in b["training"]:
        rows.append(Row(f"training step (forward + backward), `--trainable {t['trainable']}` ({t['params']:,} "
                        "parameters)", f"{t['tokens_per_s']:.0f} tokens/s", "—", "none set"))
        if "cached_tokens_per_s" in t:
            rows.append(Row(f"the same step from the frozen backbone's cached work (`train --cache-features`, "
                            "from the second epoch on: the backbone ran once)",
                            f"{t['cached_tokens_per_s']:.0f} tokens/s = "
                            f"**{t['cached_tokens_per_s'] / t['tokens_per_s']:.2f}x**",
                            f"{t['tokens_per_s']:.0f} tokens/s: the step recomputing the backbone", "none set"))
    return rows, []


BENCH_ROWS: dict[str, Callable[[dict, Path], tuple[list[Row], list[str]]]] = {
    "memorize": memorize, "ram": ram, "index": index, "generation": generation, "ttft": ttft,
    "app_start": app_start, "training": training}
