"""Exact search over 1-token chunks: the float16 torch ring (FlatIndex, use_faiss=False) against faiss float32,
best of 15 runs, one thread, one kv head, k = 16 (experiments/results/bank_memory.json notes).

    OMP_NUM_THREADS=1 python experiments/probes/ring_search_speed.py
"""
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from longmem_core.memory.index import FlatIndex  # noqa: E402

torch.set_num_threads(1)
G, D = 3, 64  # the default backbone's memory layer


def best_ms(fn, reps: int = 15) -> float:
    fn()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return round(best * 1e3, 2)


for n in (4096, 32_768):
    means = torch.randn(G, n, D).half()  # [G, n, D] float16 numbers: what 1-token chunk means are
    faiss32 = FlatIndex(G, D, use_faiss=True)
    faiss32.add(means.float(), 0)
    ring16 = FlatIndex(G, D, use_faiss=False, dtype=torch.float16, limit=n)
    ring16.add(means, 0)
    for M in (2, 3, 48, 512):  # queries of one kv head: one generated token (2-3 heads per kv head) .. a segment
        q = torch.randn(M, D)
        same = torch.equal(faiss32.search(0, q, 16, 0)[1], ring16.search(0, q, 16, 0)[1])
        print(f"{n} chunks, {M} queries: faiss float32 {best_ms(lambda: faiss32.search(0, q, 16, 0))} ms, "
              f"float16 ring {best_ms(lambda: ring16.search(0, q, 16, 0))} ms, same ids {same}", flush=True)
