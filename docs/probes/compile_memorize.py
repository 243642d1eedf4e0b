"""Does torch.compile make memorizing faster, and does it change what is stored? (issue 5, not yet in the library)

Runs bench.memorize_throughput (memorize vs a plain transformers forward over the same 1,023-token segments of
The Time Machine) with the eager backbone, then with each backbone block wrapped in torch.compile, and compares
the stored keys of both banks.

Run from the repo root, on an otherwise idle machine: PYTHONPATH=. .venv/bin/python docs/probes/compile_memorize.py
"""
import time
from pathlib import Path

import torch

from longmem_core import LongMemModel
from longmem_core.bench import memorize_throughput

TOKENS = 8184  # 8 segments


def main() -> None:
    model = LongMemModel.load()
    text = Path("assets/the_time_machine.txt").read_text(encoding="utf-8")[:60000]
    memorize_throughput(model, text, 2046)  # warm-up
    eager, eager_bank = memorize_throughput(model, text, TOKENS)
    blocks = model.backbone.blocks
    for i, block in enumerate(blocks):
        blocks[i] = torch.compile(block, dynamic=False)
    t = time.perf_counter()
    memorize_throughput(model, text, 2046)  # compiles (a short last segment compiles once more below)
    memorize_throughput(model, text, TOKENS)
    warm = time.perf_counter() - t
    compiled, compiled_bank = memorize_throughput(model, text, TOKENS)
    k0, k1 = eager_bank.keys.float(), compiled_bank.keys.float()
    rel = float((k1 - k0).norm() / k0.norm())
    print(f"eager:    memorize {eager['memorize_tokens_per_s']:.0f} tok/s, plain transformers forward "
          f"{eager['plain_forward_tokens_per_s']:.0f} tok/s, speedup {eager['memorize_speedup']:.2f}x")
    print(f"compiled: memorize {compiled['memorize_tokens_per_s']:.0f} tok/s, plain transformers forward "
          f"{compiled['plain_forward_tokens_per_s']:.0f} tok/s, speedup {compiled['memorize_speedup']:.2f}x")
    print(f"compiled vs eager memorize: {compiled['memorize_tokens_per_s'] / eager['memorize_tokens_per_s']:.2f}x; "
          f"compiling and first runs took {warm:.0f} s; stored keys differ by {rel:.2e} (relative norm)")


if __name__ == "__main__":
    main()
