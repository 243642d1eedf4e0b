"""Probe: segment_kv (what memorizing runs) in float32 against bfloat16 autocast, 1 and 2 threads, and the
relative error of the bfloat16 keys and values. Run from the repo root:

    .venv/bin/python experiments/probes/bf16_probe.py
"""
import sys
import time

import torch
sys.path.insert(0,'.')
from longmem_core.model.model import LongMemModel
m = LongMemModel.load()
bb = m.backbone
ids = torch.randint(100, 40000, (1, 1024))
def t(f, n=3):
    f(); ts=[]
    for _ in range(n):
        a=time.perf_counter(); f(); ts.append(time.perf_counter()-a)
    return min(ts)
for th in (1,2):
    torch.set_num_threads(th)
    with torch.no_grad():
        f32 = t(lambda: m.segment_kv(ids[0].tolist()))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            b16 = t(lambda: m.segment_kv(ids[0].tolist()))
    print(f"threads {th}: fp32 {f32:.3f}s  autocast bf16 {b16:.3f}s  speedup {f32/b16:.2f}x", flush=True)
k32,v32 = m.segment_kv(ids[0].tolist())
with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
    k16,v16 = m.segment_kv(ids[0].tolist())
print(k32.dtype, k16.dtype, ((k32.float()-k16.float()).norm()/k32.float().norm()).item(), ((v32.float()-v16.float()).norm()/v32.float().norm()).item())
