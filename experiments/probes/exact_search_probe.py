"""Time the exact search of one generated token on a 65,536-token bank (random keys), as the bench does.

    PYTHONPATH=TREE python experiments/probes/exact_search_probe.py     # run from a worktree of each commit, interleaved

Used to check the one bench figure the before/after comparison of issue 12 flagged (exact search at 65k): 32
single-token queries [1, 9, 64] (the default backbone's heads), 15 repetitions, median and minimum ms per query.
"""
import json
import statistics
import time

import torch

from longmem_core.memory.memory_bank import MemoryBank

torch.manual_seed(0)
H, D = 3, 64  # kv heads and head dim of the default backbone
bank = MemoryBank(n_kv_heads=H, head_dim=D, chunk_size=4, capacity=65536, index="flat")
keys = torch.randn(65536, H, D).half()
bank.add(keys, keys)
queries = [torch.randn(1, 9, D) for _ in range(32)]
times = []
for _ in range(15):
    t0 = time.perf_counter()
    for q in queries:
        bank.search(q, 16)
    times.append(1000 * (time.perf_counter() - t0) / len(queries))
print(json.dumps({"median_ms": statistics.median(times), "min_ms": min(times)}))
