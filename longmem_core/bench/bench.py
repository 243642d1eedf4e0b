"""The benchmark suite: python -m longmem_core bench [--json] [--quick] [--out FILE.json] [--plot FILE].

A run writes its figures, with the command and the date, to the JSON file ``--out`` names and its plot to ``--plot``
(the results page's command gives both; ``python scripts/results_page.py`` then rebuilds the page from them).

Every figure is measured in this run next to a baseline measured in the same run; ratios are what compare
across machines. Sections: memorize throughput vs a plain transformers forward; retrieval time and recall,
exact vs IVF, at growing bank sizes, with RAM and add cost; generation with a 65k-token bank vs the backbone;
the time to the first answer token with a 65k-token bank (``ttft_s``); training tokens/s; the app's cold start.

Why one module of ~640 lines: every section times something against a baseline *in the same run* and shares
the timing helpers (interleaved rounds, medians), the machine record and the result writer; split by section,
each file would be a few timing functions importing the same five helpers. Each section is its own banner.

Banks bigger than the text memorized here are filled with *real* chunk keys of the default backbone (from
the memorized book) resampled with Gaussian jitter (see ``resampled_keys``): retrieval speed does not depend
on content, and the keys keep the real distribution's shape, which is what IVF recall depends on.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..model.decode_schedule import DecodeSchedule
from ..memory.memory_bank import IVFIndex, MemoryBank, default_nprobe
from ..paths import DEFAULT_BOOK
from ..precision import computing_in, memorize_dtype
from ..model.threads import default_workers, ordered_map

ROOT = Path(__file__).resolve().parents[2]
BOOK = DEFAULT_BOOK


def _timed(fn, repeat: int = 1) -> float:
    """Best wall-clock seconds of ``repeat`` calls."""
    best = float("inf")
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(repeat):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": _ram_gib(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def _ram_gib() -> float | None:
    """Total RAM in GiB (from /proc/meminfo), or None where that file does not exist."""
    try:
        with open("/proc/meminfo") as fh:
            kib = next(int(line.split()[1]) for line in fh if line.startswith("MemTotal"))
    except (OSError, StopIteration):
        return None
    return round(kib / (1 << 20), 1)


def _median(values) -> float:
    return float(statistics.median(values))


def _rss_bytes() -> int:
    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmRSS"))
    except (OSError, StopIteration):
        return 0


# -- memorizing --

def forward_share(backbone, memory_layer: int, tokens: int) -> float:
    """The share of a plain forward's multiply-adds (one segment of ``tokens``) that memorizing runs: blocks
    0 .. memory_layer - 1, then only the key/value projections of block ``memory_layer``; none of the later blocks,
    nor the LM head. Weight products from the weights' shapes, attention scores and sums causal (each query meets
    (tokens + 1) / 2 keys). Its inverse bounds ``memorize_speedup``: the work memorizing skips is all it saves."""
    def products(module) -> int:  # multiply-adds per token of the module's matrices
        return sum(p.numel() for p in module.parameters() if p.dim() == 2)

    attention = backbone.n_heads * backbone.head_dim * (tokens + 1)  # QK^T and AV over (tokens + 1) / 2 keys each
    blocks = [products(b) + attention for b in backbone.blocks]
    last = backbone.blocks[memory_layer]
    done = sum(blocks[:memory_layer]) + products(last.k_proj) + products(last.v_proj)
    return done / (sum(blocks) + products(backbone.lm_head))


@torch.no_grad()
def memorize_throughput(model, text: str, max_tokens: int, rounds: int = 1) -> tuple[dict, MemoryBank]:
    """Tokens/s into the bank vs a plain transformers forward (model(input_ids), all layers and the LM head, no
    cache) over the same segments, both in memorizing's number format (``cfg.memorize_precision``: bfloat16
    autocast where the CPU multiplies it natively), in ``rounds`` interleaved rounds of these timings:

    - memorize as shipped (segments read side by side in ``threads.default_workers`` threads),
    - memorize one segment at a time (torch's own threading only),
    - the plain forward one segment at a time, as one would run it (the baseline of ``memorize_speedup``),
    - the plain forward spread over the same threads as memorizing (the fairest baseline for the threading),
    - the backbone up to the memory layer's keys and values alone, no bank, in memorizing's threads: the work
      memorizing cannot skip, done as it does it, so plain / this bounds ``memorize_speedup`` as timed
      (``memorize_limit``; ``memorize_forward_share`` gives the bound by arithmetic, at equal threading),
    - where memorizing computes in bfloat16: memorize in float32 and the plain forward in float32 (like with like
      again), and the ratio of bfloat16 memorizing to the float32 plain forward, labelled as mixed precision.

    Figures are medians over rounds; each ratio is the median of the per-round ratios (the machine's speed
    drifts between rounds, so only timings from one round are divided). Returns them and the last bank."""
    ids = model.tokenizer(text, add_special_tokens=False)["input_ids"][:max_tokens]
    text = model.tokenizer.decode(ids)
    seg = model.segment_length
    hf = model.backbone.transformers_model()
    device = next(hf.parameters()).device
    segments = [torch.tensor([model.with_sink(ids[s:s + seg - 1])], device=device) for s in range(0, len(ids), seg - 1)]
    workers = default_workers(model.device)
    dtype = memorize_dtype(model.cfg.memorize_precision, model.device)

    def plain_in(number_format):
        def plain_one(x):
            with torch.inference_mode(), computing_in(number_format, device):
                hf(input_ids=x, use_cache=False)
        return plain_one

    plain_one = plain_in(dtype)  # in memorizing's number format: like with like

    def memorize_float32(bank):
        shipped = model.cfg.memorize_precision
        try:
            model.cfg.memorize_precision = "float32"
            model.memorize(text, bank, workers=workers)
        finally:
            model.cfg.memorize_precision = shipped

    per_round = []
    bank = None
    for _ in range(rounds):
        t = {}
        for name, workers_used in (("memorize", workers), ("memorize_sequential", 1)):
            bank = model.new_bank(capacity=1 << 22)
            t[name] = _timed(lambda: model.memorize(text, bank, workers=workers_used))
        t["plain"] = _timed(lambda: [plain_one(x) for x in segments])
        t["plain_threaded"] = _timed(lambda: list(ordered_map(plain_one, segments, min(workers, len(segments)))))
        t["up_to_memory"] = _timed(lambda: list(ordered_map(model.memory_kv, segments, min(workers, len(segments)))))
        if dtype is not None:
            t["memorize_float32"] = _timed(lambda: memorize_float32(model.new_bank(capacity=1 << 22)))
            t["plain_float32"] = _timed(lambda: [plain_in(None)(x) for x in segments])
        per_round.append(t)
    n = len(bank)

    def tokens_per_s(name: str) -> float:
        return _median([n / t[name] for t in per_round])

    def ratio(slow: str, fast: str) -> float:
        return _median([t[slow] / t[fast] for t in per_round])

    precision = str(dtype or "float32").replace("torch.", "")
    figures = {"memorize_tokens": n, "memorize_rounds": rounds, "memorize_workers": workers,
               "memorize_precision": precision, "plain_forward_precision": precision,
               "memorize_tokens_per_s": tokens_per_s("memorize"),
               "memorize_sequential_tokens_per_s": tokens_per_s("memorize_sequential"),
               "plain_forward_tokens_per_s": tokens_per_s("plain"),
               "plain_forward_threaded_tokens_per_s": tokens_per_s("plain_threaded"),
               "memorize_speedup": ratio("plain", "memorize"),
               "memorize_speedup_sequential": ratio("plain", "memorize_sequential"),
               "memorize_speedup_vs_threaded_plain": ratio("plain_threaded", "memorize"),
               "memorize_speedup_per_round": [round(t["plain"] / t["memorize"], 3) for t in per_round],
               "memory_layer": model.memory_layer, "backbone_blocks": model.backbone.n_layers,
               "memorize_forward_share": forward_share(model.backbone, model.memory_layer, seg),
               "up_to_memory_layer_tokens_per_s": tokens_per_s("up_to_memory"),
               "memorize_limit": ratio("plain", "up_to_memory")}
    if dtype is not None:
        figures.update({"memorize_float32_tokens_per_s": tokens_per_s("memorize_float32"),
                        "plain_forward_float32_tokens_per_s": tokens_per_s("plain_float32"),
                        "memorize_speedup_float32": ratio("plain_float32", "memorize_float32"),
                        "memorize_speedup_mixed_precision": ratio("plain_float32", "memorize")})
    return figures, bank


# -- retrieval --

@torch.no_grad()
def real_queries(model, bank: MemoryBank, text: str, n_tokens: int = 256) -> torch.Tensor:
    """The memory layer's own search queries over ``text`` (what generation sends to the bank): [N, H, D]."""
    ids = model.tokenizer(text, add_special_tokens=False)["input_ids"][:n_tokens]
    captured = []
    search = bank.search
    bank.search = lambda q, n: (captured.append(q.clone()), search(q, n))[1]
    try:
        model(torch.tensor([model.with_sink(ids)], device=model.device), bank)
    finally:
        del bank.search
    return captured[0][1:]  # without the sink token


def resampled_keys(bank: MemoryBank, n_tokens: int, generator: torch.Generator) -> torch.Tensor:
    """[n_tokens, G, D] keys made of the bank's real chunks drawn at random, each with Gaussian jitter of 0.3x
    the per-dimension spread, so the resampled chunks are distinct but shaped like the real ones."""
    real = bank.keys.float().cpu()  # [G, Nc, c, D]
    G, Nc, c, D = real.shape
    spread = real.reshape(G, -1, D).std(1)  # [G, D]
    n_chunks = -(-n_tokens // c)
    pick = torch.randint(0, Nc, (n_chunks,), generator=generator)
    keys = real[:, pick] + 0.3 * spread[:, None, None, :] * torch.randn(G, n_chunks, c, D, generator=generator)
    return keys.permute(1, 2, 0, 3).reshape(n_chunks * c, G, D)[:n_tokens]


def _recall(approx: torch.Tensor, exact: torch.Tensor) -> float:
    """Mean share of the exact top-C chunk ids that the approximate search also returns. [N, H, C] each."""
    a, e = approx.reshape(-1, approx.shape[-1]).tolist(), exact.reshape(-1, exact.shape[-1]).tolist()
    return float(np.mean([len(set(x) & set(y)) / len(y) for x, y in zip(a, e)]))


@torch.no_grad()
def retrieval_scaling(model, real_bank: MemoryBank, queries: torch.Tensor, sizes: list[int], n_chunks: int = 16,
                      seed: int = 0, nprobes=(16, 32, 64, 128, 256), disk_at: int = 65_536) -> dict:
    """Grow one bank through ``sizes`` tokens; at each size time exact and IVF search (per query token in a
    batch of 256, and per generated token: one token, all heads), IVF recall@n_chunks against exact, RAM per
    token, and the time each block of tokens took to add (to show that adding stays linear)."""
    g = torch.Generator().manual_seed(seed)
    bank = model.new_bank(capacity=max(sizes))
    bank.index_kind = "flat"  # this bank switches index only when told, below
    out: dict = {"sizes": sizes, "exact_ms_per_generated_token": {}, "ivf_ms_per_generated_token": {},
                 "exact_ms_per_query_token": {}, "ivf_ms_per_query_token": {}, "recall_at_16": {},
                 "ivf_nprobe": {}, "ivf_nlist": {}, "nprobe_sweep": {}, "ram_bytes_per_token_exact": {},
                 "ram_bytes_per_token_ivf": {}, "add_ms_per_1k_tokens": {}}
    single = [queries[i:i + 1] for i in range(0, min(len(queries), 64), 2)]  # 32 different generated tokens
    block = 16_384
    rss0 = _rss_bytes()
    for size in sizes:
        t_add, n_add = 0.0, 0
        while len(bank) < size:
            keys = resampled_keys(real_bank, min(block, size - len(bank)), g)
            t0 = time.perf_counter()
            bank.add(keys, keys)
            t_add, n_add = t_add + time.perf_counter() - t0, n_add + len(keys)
        key = str(size)
        if n_add:
            out["add_ms_per_1k_tokens"][key] = 1000 * t_add / n_add * 1000
        exact = bank.search(queries, n_chunks)
        out["exact_ms_per_query_token"][key] = 1000 * _timed(lambda: bank.search(queries, n_chunks), 2) / len(queries)
        out["exact_ms_per_generated_token"][key] = 1000 * _timed(lambda: [bank.search(q, n_chunks) for q in single], 2) / len(single)
        out["ram_bytes_per_token_exact"][key] = bank.nbytes() / len(bank)
        bank.rebuild_index(approximate=True)
        index: IVFIndex = bank.index  # type: ignore[assignment]
        sweep = {}
        for nprobe in nprobes:
            if nprobe > index.nlist:
                continue
            index.nprobe = nprobe
            sweep[str(nprobe)] = {"recall_at_16": _recall(bank.search(queries, n_chunks).chunk_ids, exact.chunk_ids),
                                  "ms_per_generated_token": 1000 * _timed(lambda: [bank.search(q, n_chunks) for q in single], 2) / len(single)}
        index.nprobe = default_nprobe(index.nlist)
        out["nprobe_sweep"][key] = sweep
        out["ivf_nlist"][key], out["ivf_nprobe"][key] = index.nlist, index.nprobe
        out["recall_at_16"][key] = _recall(bank.search(queries, n_chunks).chunk_ids, exact.chunk_ids)
        out["ivf_ms_per_query_token"][key] = 1000 * _timed(lambda: bank.search(queries, n_chunks), 2) / len(queries)
        out["ivf_ms_per_generated_token"][key] = 1000 * _timed(lambda: [bank.search(q, n_chunks) for q in single], 2) / len(single)
        out["ram_bytes_per_token_ivf"][key] = bank.nbytes() / len(bank)
        if size == disk_at:
            tmp = Path(tempfile.mkdtemp(prefix="longmem-bench-"))
            try:
                bank.save(tmp / "bank")
                out["disk_bytes_per_token"] = sum(p.stat().st_size for p in (tmp / "bank").iterdir()) / len(bank)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        bank.rebuild_index(approximate=False)
    bank.rebuild_index(approximate=True)  # what the "auto" policy holds at the largest size
    out["rss_growth_bytes_per_token"] = (_rss_bytes() - rss0) / len(bank)
    return out


# -- generation --

def _per_token_seconds(gen_iter) -> tuple[float, int]:
    """Mean seconds between streamed tokens after the first (prefill excluded), and tokens streamed."""
    stamps = [time.perf_counter() for _ in gen_iter]
    if len(stamps) < 3:
        return float("nan"), len(stamps)
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1), len(stamps)


@torch.no_grad()
def generation_speed(model, bank: MemoryBank, new_tokens: int = 48, rounds: int = 1) -> dict:
    """Greedy tokens/s with ``bank`` in memory vs the backbone alone, both with a KV cache: our backbone path
    and transformers' own ``generate`` (forced to produce ``new_tokens``). In ``rounds`` interleaved rounds:
    figures are medians, ratios the medians of per-round ratios."""
    prompt = model.chat_ids("Tell me a long story about a traveller who builds a machine to visit the future.")
    hf = model.backbone.transformers_model()
    x = torch.tensor([prompt], device=model.device)
    hf.generate(x, max_new_tokens=2, min_new_tokens=2, do_sample=False)  # warm-up
    per_round = []
    for _ in range(rounds):
        t_mem, n_mem = _per_token_seconds(model.generate(prompt, bank, max_new_tokens=new_tokens))
        t_bb, n_bb = _per_token_seconds(model.generate(prompt, None, max_new_tokens=new_tokens, backbone_only=True))
        t_prefill = _timed(lambda: hf.generate(x, max_new_tokens=1, min_new_tokens=1, do_sample=False), 2)
        t_full = _timed(lambda: hf.generate(x, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False))
        per_round.append({"mem": t_mem, "bb": t_bb, "hf": (t_full - t_prefill) / (new_tokens - 1), "n": min(n_mem, n_bb)})

    return {"bank_tokens": len(bank), "rounds": rounds, "parallel_decode": model.cfg.parallel_decode,
            "decode_schedule": schedule_name(model),
            "memory_tokens_per_s": _median([1 / r["mem"] for r in per_round]),
            "backbone_tokens_per_s": _median([1 / r["bb"] for r in per_round]),
            "transformers_generate_tokens_per_s": _median([1 / r["hf"] for r in per_round]),
            "tokens_measured": min(r["n"] for r in per_round),
            "ratio_vs_backbone": _median([r["bb"] / r["mem"] for r in per_round]),
            "ratio_vs_transformers_generate": _median([r["hf"] / r["mem"] for r in per_round]),
            "ratio_vs_backbone_per_round": [round(r["bb"] / r["mem"], 3) for r in per_round]}


def schedule_name(model) -> str:
    """How the SideNet decodes: "after" the backbone, "beside" it, or measured on the first steps
    (``decode_schedule``): "measured: beside" / "measured: after" once decided."""
    if not model.cfg.parallel_decode:
        return "after"
    chosen = model.decode_schedule.chosen
    forced = getattr(model.decode_schedule, "forced", False)
    if chosen is None:
        return "measured, not decided yet"
    return ("beside" if chosen else "after") if forced else f"measured: {'beside' if chosen else 'after'}"


@contextmanager
def forced_schedule(model, beside: bool) -> Iterator[None]:
    """Decode with the SideNet beside the backbone (``beside``) or after it, whatever this machine measured; the
    model's own schedule (and what it measured) is put back afterwards."""
    saved_flag, saved_schedule = model.cfg.parallel_decode, model.decode_schedule
    forced = DecodeSchedule()
    forced.chosen, forced.forced = True, True  # type: ignore[attr-defined]
    model.cfg.parallel_decode, model.decode_schedule = beside, forced
    try:
        yield
    finally:
        model.cfg.parallel_decode, model.decode_schedule = saved_flag, saved_schedule


def generation_bank(model, real_bank: MemoryBank, tokens: int = 65_536) -> MemoryBank:
    """A bank of ``tokens`` resampled real keys (seed 1), the one generation is timed with."""
    g = torch.Generator().manual_seed(1)
    bank = model.new_bank(capacity=tokens)
    while len(bank) < tokens:
        keys = resampled_keys(real_bank, min(16_384, tokens - len(bank)), g)
        bank.add(keys, keys)
    return bank


@torch.no_grad()
def generation_speed_all_side_layers(model, bank: MemoryBank, new_tokens: int = 48, rounds: int = 1) -> dict:
    """``generation_speed`` with every side layer running. A SideNet whose side layers are all trained runs each
    of them; the shipped one skips the idle ones (scale exactly 0). Forced on here (the values do not change the
    cost), then restored."""
    saved = model.side.scale.detach().clone()
    model.side.scale.fill_(1e-3)
    try:
        return generation_speed(model, bank, new_tokens=new_tokens, rounds=rounds)
    finally:
        model.side.scale.copy_(saved)


# -- time to the first answer token --

TTFT_QUESTIONS = ("What did the Time Traveller explain to his guests?", "Who is Filby?")


def answer_bank(model, real_bank: MemoryBank, text: str, tokens: int = 65_536, seed: int = 2) -> MemoryBank:
    """A bank of ``tokens`` tokens of real text as memorizing leaves it (sources, character spans, chunks), ``text``
    as the first document and its opening again as a second one until there are ``tokens``; its keys are
    resampled real keys (``resampled_keys``), so it is built in seconds instead of memorized in minutes: the
    search's cost does not depend on the keys' values, and the copy path reads the text, which is real."""
    g = torch.Generator().manual_seed(seed)
    bank = model.new_bank(capacity=tokens + 1024)  # room for the padding of each document's last chunk
    enc = model.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    added = 0
    while added < tokens:
        n = min(len(enc["input_ids"]), tokens - added)
        src = bank.add_source(f"{BOOK.name} (part {len(bank.sources) + 1})", text[:enc["offset_mapping"][n - 1][1]])
        for s in range(0, n, 16_384):
            m = min(16_384, n - s)
            keys = resampled_keys(real_bank, m, g)
            bank.add(keys, keys, source=src, token_start=s, char_spans=enc["offset_mapping"][s:s + m])
        added += n
    return bank


@torch.no_grad()
def time_to_first_token(model, bank: MemoryBank, mode: str | None = None,
                        questions: tuple[str, str] = TTFT_QUESTIONS) -> dict:
    """Seconds from a question to its first streamed answer text in ``mode`` (default: the default answer mode),
    everything included: the search, the prompt (read-back modes: the passages), the copy path's cache, the
    prompt's prefill and the first token. ``cold``: the first question after memorizing (whatever is built on
    first use is built then); ``warm``: a second, different question. Then the parts, timed apart."""
    from ..answer import answer, neural_cache, settings
    from ..model import search

    mode = mode or answer.DEFAULT_MODE

    def ask(question: str) -> tuple[float, float, int]:
        t0 = time.perf_counter()
        prepared = answer.prepare(model, bank, question, mode)
        t_prepared = time.perf_counter()
        next(iter(answer.stream(model, prepared, max_new_tokens=4)), None)
        return time.perf_counter() - t0, t_prepared - t0, len(prepared.prompt_ids)

    cold, cold_prepare, _ = ask(questions[0])
    warm, warm_prepare, prompt_tokens = ask(questions[1])
    texts = neural_cache.retained_texts(bank)
    prepared = answer.prepare(model, bank, questions[1], mode)
    return {"mode": mode, "bank_tokens": len(bank), "cold_s": cold, "warm_s": warm,
            "cold_prepare_s": cold_prepare, "warm_prepare_s": warm_prepare, "prompt_tokens": prompt_tokens,
            "search_s": _timed(lambda: search.rank_chunks(model, bank, questions[1], settings.ANSWER.search_top), 2),
            "copy_cache_build_s": _timed(lambda: neural_cache.tokens_cache(model, texts), 2),
            "copy_cache_tokens": len(neural_cache.cache_from_sources(model, bank)),
            "prefill_first_token_s": _timed(
                lambda: next(iter(answer.stream(model, prepared, max_new_tokens=4)), None), 2)}


# -- training --

def training_speed(model, text: str, trainable: str, steps: int = 2) -> dict:
    """Tokens/s of one training step (forward + backward through the SideNet, bank of two preceding segments)."""
    from ..model.segments import read_into_memory, segment_loss, segment_tokens
    from ..training import select_trainable
    params = select_trainable(model, trainable)
    seg = segment_tokens(model)
    ids = model.tokenizer(text, add_special_tokens=False)["input_ids"][:3 * seg]
    bank = model.new_bank()
    read_into_memory(model, ids[:2 * seg], bank)
    piece = ids[2 * seg:3 * seg]

    def timed_steps(loss_of) -> float:
        """Seconds per training step whose loss ``loss_of()`` gives (forward + backward; one untimed first)."""
        def step():
            loss, n, _, _ = loss_of()
            (loss / n).backward()
            for p in params:
                p.grad = None
        step()  # warm-up
        return _timed(step, steps)

    t = timed_steps(lambda: segment_loss(model, piece, bank))
    out = {"trainable": trainable, "params": sum(p.numel() for p in params), "tokens_per_s": len(piece) / t}
    if trainable == "memory":  # the same step from the frozen backbone's cached work (train --cache-features)
        from ..training.features import cached_segment_loss, segment_features
        features = segment_features(model, piece)  # computed once, outside the timing: reused every later epoch
        out["cached_tokens_per_s"] = len(piece) / timed_steps(lambda: cached_segment_loss(model, features, bank))
    for p in model.side.parameters():
        p.requires_grad_(True)
    return out


# -- the app --

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_ready_seconds(timeout: float = 180.0) -> float:
    """Seconds from starting ``python app.py`` to the page being served (the model is loaded before that)."""
    port = _free_port()
    env = {**os.environ, "PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1", "LONGMEM_BROWSER": "0",
           "GRADIO_ANALYTICS_ENABLED": "False"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - t0 < timeout:
            if proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {proc.returncode} before serving a page")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    if r.status == 200:
                        return time.perf_counter() - t0
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"app.py served no page within {timeout:.0f} s")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


# -- the plot --

def scaling_figure(result: dict):
    """A matplotlib Figure of two panels against bank size (log scale): ms per generated token and bank RAM in
    MB, each for the exact and the IVF index. matplotlib is imported here, with the file-only Agg backend."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    r = result["retrieval"]
    sizes = [int(s) for s in r["sizes"]]
    fig = Figure(figsize=(9, 3.4), layout="constrained")
    time_ax, ram_ax = fig.subplots(1, 2)
    for name, colour, ms, ram in (("exact", "#c0392b", "exact_ms_per_generated_token", "ram_bytes_per_token_exact"),
                                  ("IVF", "#2471a3", "ivf_ms_per_generated_token", "ram_bytes_per_token_ivf")):
        time_ax.plot(sizes, [r[ms][str(s)] for s in sizes], "o-", color=colour, label=name)
        ram_ax.plot(sizes, [r[ram][str(s)] * s / 1e6 for s in sizes], "o-", color=colour, label=name)
    for ax, title in ((time_ax, "retrieval, ms per generated token"), (ram_ax, "bank RAM, MB")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [f"{s // 1024}k" if s < 1 << 20 else f"{s / (1 << 20):g}M" for s in sizes])
        ax.set_xlabel("tokens in memory (log scale)")
        ax.set_title(title)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


def plot_scaling(result: dict, path: str | os.PathLike) -> Path:
    """Write ``scaling_figure`` to ``path`` (PNG, or whatever format its suffix names) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scaling_figure(result).savefig(path, dpi=110)
    return path


# -- the suite --

def _command(quick: bool, plot: str | None, device: str | None, out: str | None = None) -> str:
    """The CLI line that runs ``run`` with these arguments (recorded in the JSON the results page is built from)."""
    return " ".join(["python -m longmem_core bench"] + (["--quick"] if quick else []) +
                    ([f"--out {out}"] if out else []) + ([f"--plot {plot}"] if plot else []) +
                    ([f"--device {device}"] if device else []))


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it (as the results page links it), else as is."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def write_result(result: dict, path: str | os.PathLike) -> Path:
    """Write the bench's figures as the JSON file ``scripts/results_page.py`` builds docs/RESULTS.md from."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return path


def run(quick: bool = False, plot: str | None = None, device: str | None = None, out: str | None = None,
        log=lambda msg: print(msg, file=sys.stderr)) -> dict:
    """Measure everything and return it; write its JSON to ``out`` and its plot to ``plot`` when they are given."""
    from ..model.model import LongMemModel
    from ..config import default_checkpoint
    command = _command(quick, plot, device, out)
    model = LongMemModel.load(checkpoint=default_checkpoint(), device=device)  # what the app and the CLI run
    text = BOOK.read_text(encoding="utf-8")
    result: dict = {"command": command, "date": datetime.now(timezone.utc).date().isoformat(), "machine": machine(),
                    "backbone": model.cfg.backbone, "checkpoint": model.checkpoint_path, "quick": quick}
    log("memorize vs plain transformers forward ...")
    held_out = int(len(text) * 0.9)  # the book's last tenth gives the search queries; the rest the real keys
    measured = 4096 if quick else 8192
    figures, real_bank = memorize_throughput(model, text[:held_out], max_tokens=measured, rounds=1 if quick else 3)
    result.update(figures)
    if not quick:  # the rest of the book too, so the pool of real chunk keys is as large as we have
        done = model.tokenizer.decode(model.tokenizer(text[:held_out], add_special_tokens=False)["input_ids"][:measured])
        model.memorize(text[len(done):held_out], real_bank)
    result["real_key_tokens"] = len(real_bank)
    log("retrieval at growing bank sizes ...")
    queries = real_queries(model, real_bank, text[held_out:], 128 if quick else 256)
    sizes = [16_384, 65_536] if quick else [16_384, 65_536, 262_144, 1_048_576]
    r = retrieval_scaling(model, real_bank, queries, sizes)
    result["retrieval"] = r
    result["retrieval_ms_per_token"] = {k: {"exact": r["exact_ms_per_generated_token"][k],
                                            "ivf": r["ivf_ms_per_generated_token"][k],
                                            "exact_batched": r["exact_ms_per_query_token"][k],
                                            "ivf_batched": r["ivf_ms_per_query_token"][k]} for k in map(str, sizes)}
    result["recall_at_16"] = r["recall_at_16"]
    big = str(sizes[-1])
    result["ram_bytes_per_token"] = {"exact": r["ram_bytes_per_token_exact"][big], "ivf": r["ram_bytes_per_token_ivf"][big],
                                     "at_tokens": sizes[-1]}
    result["disk_bytes_per_token"] = r.get("disk_bytes_per_token")
    log("generation with a 65k-token bank ...")
    bank = generation_bank(model, real_bank)
    rounds = 1 if quick else 3
    gen = generation_speed(model, bank, new_tokens=24 if quick else 48, rounds=rounds)
    result["generation"] = gen
    result["generation_ratio_65k"] = gen["ratio_vs_transformers_generate"]
    if not quick:  # each schedule forced, for comparison with what the model measured and chose
        for beside in (True, False):
            with forced_schedule(model, beside):
                result[f"generation_{'beside' if beside else 'after'}"] = generation_speed(model, bank, 48, rounds)
    if not quick and model.side.scale is not None:
        result["generation_all_side_layers"] = generation_speed_all_side_layers(model, bank, new_tokens=48, rounds=3)
        for beside in (True, False):
            with forced_schedule(model, beside):
                result[f"generation_all_side_layers_{'beside' if beside else 'after'}"] = \
                    generation_speed_all_side_layers(model, bank, new_tokens=48, rounds=3)
    log("time to the first answer token, 65k-token bank ...")
    result["ttft"] = time_to_first_token(model, answer_bank(model, real_bank, text))
    result["ttft_s"] = result["ttft"]["cold_s"]  # the first question after memorizing: what one meets first
    result["ttft_warm_s"] = result["ttft"]["warm_s"]
    log("training step ...")
    result["training"] = [training_speed(model, text, "memory", 1 if quick else 2)]
    if not quick:
        result["training"].append(training_speed(LongMemModel.load(device=device), text, "all", 1))
    result["training_tokens_per_s"] = result["training"][0]["tokens_per_s"]
    log("app cold start (twice; the second is the warm figure) ...")
    first = app_ready_seconds()
    result["app_ready_s"] = app_ready_seconds()
    result["app_ready_first_s"] = first
    if plot:
        result["plot"] = _shown(plot_scaling(result, plot))
    if out:
        log(f"figures written to {write_result(result, out)}")
    return result
