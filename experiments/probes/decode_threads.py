"""Probe: one decoding step's blocks on one core vs two, and two block stacks at once (why the SideNet decodes
in its own thread, longmem_core/model/threads.py).

    PYTHONPATH=. .venv/bin/python experiments/probes/decode_threads.py

Times one token (T = 1) through the default backbone's 30 blocks with 2 and with 1 intra-op thread; then 15
backbone blocks alone vs 15 backbone blocks and the 15 side layers at the same time in two threads of one
intra-op thread each. Two rounds.
"""
from __future__ import annotations

import threading
import time

import torch

from longmem_core.model.model import LongMemModel

STEPS = 20


@torch.no_grad()
def per_step_ms(blocks, x, rope, steps: int = STEPS) -> float:
    for _ in range(3):
        for b in blocks:
            b(x, rope, None)
    t0 = time.perf_counter()
    for _ in range(steps):
        for b in blocks:
            b(x, rope, None)
    return (time.perf_counter() - t0) / steps * 1000


def main() -> None:
    model = LongMemModel.load()
    bb = model.backbone
    x = torch.randn(1, 1, bb.d_model)
    rope = bb.rope(x, torch.tensor([[40]]))
    saved = torch.get_num_threads()
    for r in range(2):
        torch.set_num_threads(2)
        two = per_step_ms(list(bb.blocks), x, rope)
        torch.set_num_threads(1)
        one = per_step_ms(list(bb.blocks), x, rope)
        alone = per_step_ms(list(bb.blocks[:15]), x, rope)
        stacks = [list(bb.blocks[:15]), list(model.side.layers)]
        threads = [threading.Thread(target=per_step_ms, args=(s, x, rope)) for s in stacks]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        both = (time.perf_counter() - t0) / (STEPS + 3) * 1000
        torch.set_num_threads(saved)
        print(f"round {r + 1}: 30 blocks {two:.1f} ms on 2 threads, {one:.1f} ms on 1; 15 blocks alone {alone:.1f} ms, "
              f"15 blocks + 15 side layers at once {both:.1f} ms", flush=True)


if __name__ == "__main__":
    main()
