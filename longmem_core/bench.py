"""Measured figures, each next to a baseline measured in the same run: python -m longmem_core bench [--json]."""
from __future__ import annotations

import os
import platform
import time

import torch


def _timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__}


@torch.no_grad()
def memorize_throughput(model, text: str, max_tokens: int = 8192) -> dict:
    """Tokens/s into the bank vs a plain transformers-style forward (all blocks + LM head) over the same segments."""
    ids = model.tokenizer(text, add_special_tokens=False)["input_ids"][:max_tokens]
    text = model.tokenizer.decode(ids)
    bank = model.new_bank(capacity=1 << 22)
    t_mem = _timed(lambda: model.memorize(text, bank))
    n = len(bank)
    seg = model.segment_length
    bb = model.backbone

    def plain():
        for s in range(0, n, seg):
            bb.logits(bb(torch.tensor([ids[s:s + seg]])).hidden_states[-1])
    t_plain = _timed(plain)
    return {"memorize_tokens": n, "memorize_tokens_per_s": n / t_mem, "plain_forward_tokens_per_s": n / t_plain,
            "memorize_speedup": t_plain / t_mem}


@torch.no_grad()
def retrieval_time(model, sizes=(16_384, 65_536), query_tokens: int = 256, seed: int = 0) -> dict:
    """Exact search + gather per query token at several bank sizes (bank filled with real-scale random keys)."""
    g = torch.Generator().manual_seed(seed)
    bb, cfg = model.backbone, model.cfg
    out = {}
    for size in sizes:
        bank = model.new_bank(capacity=size)
        step = 8192
        for s in range(0, size, step):
            k = torch.randn(min(step, size - s), bb.n_kv_heads, bb.head_dim, generator=g)
            bank.add(k, k)
        q = torch.randn(query_tokens, bb.n_heads, bb.head_dim, generator=g)
        t = _timed(lambda: bank.search(q, cfg.chunks_per_query), repeat=3)
        t1 = _timed(lambda: bank.search(q[:1], cfg.chunks_per_query), repeat=5)
        out[str(size)] = {"ms_per_query_token_batched": 1000 * t / query_tokens, "ms_single_token": 1000 * t1}
    return out


def run(quick: bool = False) -> dict:
    from .model import LongMemModel
    from pathlib import Path
    model = LongMemModel.load()
    book = Path(__file__).resolve().parents[1] / "assets" / "the_time_machine.txt"
    text = book.read_text(encoding="utf-8")
    result = {"machine": machine(), "backbone": model.cfg.backbone}
    result.update(memorize_throughput(model, text, max_tokens=4096 if quick else 16384))
    result["retrieval"] = retrieval_time(model, sizes=(16_384,) if quick else (16_384, 65_536))
    return result
