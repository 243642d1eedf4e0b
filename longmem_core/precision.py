"""The number format memorizing computes in: bfloat16 where the CPU multiplies it natively, else float32.

Reading a document into memory runs the frozen backbone up to the memory layer over every token, which is most
of the work of an upload. On a CPU with AMX tiles or AVX-512 BF16 (Intel Sapphire Rapids and later, AMD Zen 4+)
torch's autocast runs those matrix products in bfloat16 at about 2.4x the float32 speed on this project's
machine (a 1,023-token segment of SmolLM2-135M, one or two threads). The keys and values come out within about
1-2% (relative norm) of the float32 ones and are stored as float16 either way. Where the CPU has no native
bfloat16, autocast would emulate it and be slower, so "auto" stays float32 there, and on accelerators (whose
default dtype the backbone already chose). Only memorizing is affected: answering, scoring and training compute
as before. Beyond the paper; the results page measures what it changes (docs/results/memorize.md).
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Iterator

import torch

MEMORIZE_PRECISIONS = ("auto", "float32", "bfloat16")


def native_bf16_cpu() -> bool:
    """Does this CPU multiply bfloat16 in hardware (AMX tiles or AVX-512 BF16)?"""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    try:
        return any(bool(check()) for check in checks if check is not None)
    except RuntimeError:
        return False


def check_precision(precision: str) -> None:
    if precision not in MEMORIZE_PRECISIONS:
        raise ValueError(f"memorize_precision must be one of {MEMORIZE_PRECISIONS}, got {precision!r}")


def memorize_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype memorizing runs under on ``device``, or None (the model's own dtype)."""
    check_precision(precision)
    if precision == "float32":
        return None
    if precision == "bfloat16":
        return torch.bfloat16
    return torch.bfloat16 if device.type == "cpu" and native_bf16_cpu() else None


@contextmanager
def computing_in(dtype: torch.dtype | None, device: torch.device) -> Iterator[None]:
    """Autocast to ``dtype`` on ``device``'s kind for the block; nothing when ``dtype`` is None."""
    with torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext():
        yield
