"""The GPU path with the real default backbone: speed figures on a CUDA GPU, each next to its baseline measured
in the same run on the same GPU (the benchmark suite's own functions, minus its CPU-only parts: faiss IVF and the
app's cold start).

    PYTHONPATH=. python experiments/probes/gpu_check.py [--device cuda] [--quick] > gpu_check.json

Runs on the CPU too (``--device cpu``), which is how it was tried before a GPU run.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from longmem_core.bench import bench
from longmem_core.config import default_checkpoint
from longmem_core.model.model import LongMemModel


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@torch.no_grad()
def exact_search_scaling(model, real_bank, queries, sizes, n_chunks=16) -> dict:
    """Exact search on the model's device: ms per generated token (one query token, all heads) and per query
    token in a batch, and bytes of device memory per stored token, as the bank grows."""
    g = torch.Generator().manual_seed(0)
    bank = model.new_bank(capacity=max(sizes))
    out = {"ms_per_generated_token": {}, "ms_per_query_token": {}, "bytes_per_token": {}, "index": None}
    q = queries.to(model.device)
    single = [q[i:i + 1] for i in range(0, min(len(q), 64), 2)]
    for size in sizes:
        while len(bank) < size:
            keys = bench.resampled_keys(real_bank, min(16_384, size - len(bank)), g)
            bank.add(keys, keys)
        bank.search(q, n_chunks)  # warm-up
        key = str(size)
        out["ms_per_query_token"][key] = 1000 * bench._timed(lambda: bank.search(q, n_chunks), 3) / len(q)
        out["ms_per_generated_token"][key] = 1000 * bench._timed(
            lambda: [bank.search(s, n_chunks) for s in single], 3) / len(single)
        out["bytes_per_token"][key] = bank.nbytes() / len(bank)
        out["index"] = f"{bank.index.kind} on {bank.device}"
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    result: dict = {"machine": bench.machine(), "device": args.device}
    model = LongMemModel.load(checkpoint=default_checkpoint(), device=args.device)
    result["checkpoint"] = model.checkpoint_path
    text = bench.BOOK.read_text(encoding="utf-8")
    held_out = int(len(text) * 0.9)
    log("memorize vs plain transformers forward (first call warms up the GPU) ...")
    tokens = 2048 if args.quick else 16_384
    bench.memorize_throughput(model, text[:held_out], max_tokens=2048)
    figures, real_bank = bench.memorize_throughput(model, text[:held_out], max_tokens=tokens)
    result["memorize"] = figures
    print(json.dumps(result), file=sys.stderr, flush=True)
    log("exact search on the device at growing bank sizes ...")
    queries = bench.real_queries(model, real_bank, text[held_out:], 256)
    sizes = [16_384, 65_536] if args.quick else [16_384, 65_536, 262_144, 1_048_576]
    result["search"] = exact_search_scaling(model, real_bank, queries, sizes)
    print(json.dumps(result), file=sys.stderr, flush=True)
    log("generation with a 65k-token bank ...")
    bank = bench.generation_bank(model, real_bank)
    new = 16 if args.quick else 48
    bench.generation_speed(model, bank, new_tokens=8)  # warm-up
    result["generation"] = bench.generation_speed(model, bank, new_tokens=new)
    result["generation_all_side_layers"] = bench.generation_speed_all_side_layers(model, bank, new_tokens=new)
    print(json.dumps(result), file=sys.stderr, flush=True)
    log("training step ...")
    result["training"] = [bench.training_speed(model, text, "memory", 3),
                          bench.training_speed(LongMemModel.load(device=args.device), text, "all", 3)]
    if torch.cuda.is_available() and model.device.type == "cuda":
        result["cuda_max_allocated_bytes"] = torch.cuda.max_memory_allocated()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
