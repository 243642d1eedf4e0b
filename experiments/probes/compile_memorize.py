"""Does torch.compile make memorizing faster, and does it change what is stored? (issue 5, not yet in the library)

Runs bench.memorize_throughput (memorize vs a plain transformers forward over the same 1,023-token segments of
The Time Machine) with the eager backbone, then with each backbone block wrapped in torch.compile, and compares
the stored keys of both banks.

Run from the repo root, on an otherwise idle machine: PYTHONPATH=. .venv/bin/python experiments/probes/compile_memorize.py [ROUNDS]
"""
import time
from pathlib import Path

import torch

from longmem_core import LongMemModel
from longmem_core.bench.bench import memorize_throughput

TOKENS = 8184  # 8 segments


def _use(blocks, chosen) -> None:
    for i, block in enumerate(chosen):
        blocks[i] = block


def main(rounds: int = 3) -> None:
    """One warm-up and compile, then ``rounds`` interleaved rounds: eager, compiled (each against the plain
    transformers forward measured in the same round), so drift of the machine hits both paths alike."""
    model = LongMemModel.load()
    text = Path("assets/the_time_machine.txt").read_text(encoding="utf-8")[:60000]
    blocks = model.backbone.blocks
    eager_blocks = list(blocks)
    compiled_blocks = [torch.compile(b, dynamic=False) for b in eager_blocks]
    memorize_throughput(model, text, 2046)  # warm-up
    _, eager_bank = memorize_throughput(model, text, TOKENS)
    _use(blocks, compiled_blocks)
    t = time.perf_counter()
    memorize_throughput(model, text, 2046)  # compiles (a short last segment compiles once more below)
    _, compiled_bank = memorize_throughput(model, text, TOKENS)
    warm = time.perf_counter() - t
    k0, k1 = eager_bank.keys.float(), compiled_bank.keys.float()
    rel = float((k1 - k0).norm() / k0.norm())
    print(f"compiling and first runs took {warm:.0f} s; stored keys differ by {rel:.2e} (relative norm)")
    ratios = []
    for r in range(rounds):
        figures = {}
        for name, chosen in (("eager", eager_blocks), ("compiled", compiled_blocks)):
            _use(blocks, chosen)
            figures[name] = memorize_throughput(model, text, TOKENS)[0]
            f = figures[name]
            print(f"round {r + 1} {name:8s}: memorize {f['memorize_tokens_per_s']:.0f} tok/s, plain transformers "
                  f"forward {f['plain_forward_tokens_per_s']:.0f} tok/s, speedup {f['memorize_speedup']:.2f}x", flush=True)
        ratios.append(figures["compiled"]["memorize_tokens_per_s"] / figures["eager"]["memorize_tokens_per_s"])
    print("compiled / eager memorize, per round: " + ", ".join(f"{x:.2f}x" for x in ratios))


if __name__ == "__main__":
    import sys
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
