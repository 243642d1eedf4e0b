"""What every tab's handlers share: the user-facing error, the model, the bank settings check, the session
lock, and the limits on uploads and questions. No Gradio here."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from longmem_core import LongMemModel, MemoryBank, default_checkpoint, limits

from ..session import Session

ASSETS = Path(__file__).resolve().parents[2] / "assets"
BUSY = "This session is busy (reading into memory, answering or classifying). Wait for it to finish, or press Stop."


class AppError(ValueError):
    """Bad input, or a request that cannot be served now. The message is shown to the user as it is."""


def load_model(backbone: str | None = None, checkpoint: str | os.PathLike | None = None) -> LongMemModel:
    """The default backbone with the trained SideNet when there is one, else the untrained SideNet."""
    checkpoint = checkpoint or default_checkpoint()
    return LongMemModel.load(backbone=backbone, checkpoint=str(checkpoint) if checkpoint else None)


def top_k_choices(model: LongMemModel) -> list[int]:
    """Retrieval widths offered in Settings (tokens per query token and head); the model's own among them."""
    return sorted({8, 16, 32, 64, 128, 256, model.cfg.top_k})


def chunk_size_choices(model: LongMemModel) -> list[int]:
    """Chunk sizes the model can read: divisors of its retrieval width top_k (paper: 4 of 64)."""
    return [c for c in range(1, min(model.cfg.top_k, 32) + 1) if model.cfg.top_k % c == 0]


def retrieval_width(top_k: int | None, bank: MemoryBank | None) -> int | None:
    """``top_k`` rounded up to whole chunks of ``bank`` (None: the model's own)."""
    if not top_k or bank is None:
        return None
    c = bank.chunk_size
    return max(c, -(-int(top_k) // c) * c)


def check_bank_settings(model: LongMemModel, chunk_size: int | None, capacity: int | None) -> tuple[int, int]:
    """The chunk size and capacity of a new bank (the model's where None), or AppError."""
    chunk_size = int(chunk_size or model.cfg.chunk_size)
    capacity = int(capacity or model.cfg.capacity)
    if chunk_size not in chunk_size_choices(model):
        raise AppError(f"Chunk size {chunk_size} does not fit this model; choose one of {chunk_size_choices(model)}.")
    if capacity < chunk_size:
        raise AppError(f"Memory capacity must hold at least one chunk ({chunk_size} tokens).")
    return chunk_size, capacity


def named(message: str, path: str | os.PathLike) -> str:
    """A library message about ``path`` with the server's folders taken out: only the file's own name stays
    (an upload keeps its original name as the last part of its server path)."""
    return str(message).replace(str(path), Path(path).name)


def check_file_size(path: Path, max_bytes: int | None) -> None:
    """AppError naming the file (never its server path) when it is over ``max_bytes``."""
    size = path.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise AppError(f"{path.name}: {size / 1e6:.1f} MB is over the limit of {max_bytes / 1e6:.1f} MB")


def check_question(text: str | None, max_chars: int | None, what: str = "question") -> str:
    """The text stripped, or AppError when it is longer than ``max_chars`` characters (None: the library's limit
    for its kind, ``limits.MAX_CHARS``); the message is the library's, the same on the CLI."""
    text = (text or "").strip()
    try:
        return limits.check_text(text, what, max_chars)
    except limits.TooLongError as exc:
        raise AppError(str(exc)) from exc


def check_number(value: object, name: str, low: float, high: float, *, integer: bool = False) -> float | int:
    """A numeric input from the page or an API client as a number in [low, high], or AppError (a string that is
    not a number, null, NaN or infinity, out of range)."""
    try:
        return limits.check_number(value, name, low, high, integer=integer)
    except ValueError as exc:
        raise AppError(f"{exc}.") from exc


@contextmanager
def busy(session: Session) -> Iterator[None]:
    """Hold the session while its memory is written or read, so two of its requests never overlap."""
    if not session.busy.acquire(blocking=False):
        raise AppError(BUSY)
    try:
        yield
    finally:
        session.busy.release()


def wait_idle(session: Session, seconds: float = 60.0) -> bool:
    """Wait until the session's current work (stopping after its current step) has ended."""
    if session.busy.acquire(timeout=seconds):
        session.busy.release()
        return True
    return False
