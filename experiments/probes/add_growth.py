"""Probe: the cost of adding 16k-token blocks to one bank of capacity 1M (as the bench grows it), per 1k tokens
at each size. VARIANT "empty" patches the storage to start uninitialized (now the code itself does); any other
name runs the code as it is. Timings swing with the machine's memory state: run it several times.

    .venv/bin/python experiments/probes/add_growth.py base
"""
import sys
import time

import torch
sys.path.insert(0,'.')
from longmem_core.memory.memory_bank import MemoryBank
import longmem_core.memory.memory_bank as mb
variant = sys.argv[1]
if variant == "empty":
    orig = MemoryBank._allocate
    def alloc(self, slots):
        orig(self, 0)
        G, D, c = self.n_kv_heads, self.head_dim, self.chunk_size
        import numpy as np
        self._k = torch.empty(G, slots, c, D, dtype=mb.STORAGE_DTYPE)
        self._v = torch.empty(G, slots, c, D, dtype=mb.STORAGE_DTYPE)
        self._mask = torch.zeros(slots, c, dtype=torch.bool)
        self._source = np.full(slots, -1, dtype=np.int64); self._tok = np.zeros((slots, 2), dtype=np.int64); self._chr = np.full((slots, 2), -1, dtype=np.int64)
    MemoryBank._allocate = alloc
b = MemoryBank(n_kv_heads=3, head_dim=64, chunk_size=4, capacity=1<<20)
b.index_kind="flat"
keys=torch.randn(16384,3,64).half()
t_add=0; n=0
for size in [16384, 65536, 262144, 1<<20]:
    t_add=0; n=0
    while len(b) < size:
        t=time.perf_counter(); b.add(keys,keys); t_add+=time.perf_counter()-t; n+=len(keys)
    print(variant, size, f"{1e6*t_add/n:.3f} ms/1k", flush=True)
