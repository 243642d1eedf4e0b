"""The Memory tab's handlers: read documents into the session's bank, describe it, clear it.
(Saving and loading a bank file: ``bank_file.py``.)"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from longmem_core import Document, DocumentError, LongMemModel, MemoryBank, neural_cache, read_document

from ..background import Stopped
from ..session import Session
from .common import ASSETS, AppError, busy, check_bank_settings, named

BOOKS = {  # bundled public-domain examples: label -> file in assets/
    "The Time Machine, chapter I (H. G. Wells; 10 KB, ~2,500 tokens)": "the_time_machine_ch1.txt",
    "The Time Machine, whole book (H. G. Wells; 180 KB, ~45,000 tokens)": "the_time_machine.txt",
}


@dataclass
class MemorizeProgress:
    name: str  # document being read
    index: int  # its position among the documents (0-based)
    count: int  # documents in this run
    done: int  # tokens of this document read so far
    total: int  # tokens in this document
    seconds: float  # since the run began
    eta: float | None  # seconds left for the whole run, estimated from the speed so far


@dataclass
class MemorizeReport:
    documents: list[dict] = field(default_factory=list)  # {"name", "tokens", "chunks", "seconds"} per document read
    stopped: bool = False  # the user pressed Stop; what was read before stays in memory
    seconds: float = 0.0


def read_documents(paths: Sequence[str | os.PathLike], max_bytes: int | None = None) -> list[Document]:
    """Every file as a Document, or AppError naming the first one that cannot be read (nothing is read then)."""
    if not paths:
        raise AppError("Choose one or more files (.txt, .md, .pdf), or pick a bundled example.")
    documents = []
    for path in paths:
        try:
            documents.append(read_document(path, max_bytes=max_bytes))
        except DocumentError as exc:
            raise AppError(named(str(exc), path)) from exc
    return documents


def bundled_book(label: str) -> Path:
    if label not in BOOKS:
        raise AppError(f"Unknown example {label!r}; choose one of: {', '.join(BOOKS)}.")
    return ASSETS / BOOKS[label]


def memorize(model: LongMemModel, session: Session, documents: Sequence[Document], *, chunk_size: int | None = None,
             capacity: int | None = None, progress: Callable[[MemorizeProgress], None] | None = None) -> MemorizeReport:
    """Read documents into the session's bank (a new one, with the given chunk size and capacity, while it is
    empty). ``progress`` gets a MemorizeProgress after every segment; if it raises ``Stopped`` the reading
    stops there and what was read stays."""
    chunk_size, capacity = check_bank_settings(model, chunk_size, capacity)
    with busy(session):
        bank = session.bank
        if bank is None or (len(bank) == 0 and (bank.chunk_size, bank.capacity) != (chunk_size, capacity)):
            bank = session.bank = model.new_bank(capacity=capacity, chunk_size=chunk_size)
        report, t0 = MemorizeReport(), time.perf_counter()
        chars_left = sum(len(d.text) for d in documents)
        for index, doc in enumerate(documents):
            chars_left -= len(doc.text)
            t_doc = time.perf_counter()

            def on_segment(done: int, total: int) -> None:
                elapsed = time.perf_counter() - t_doc
                eta = None
                if done and elapsed > 0:
                    later_tokens = chars_left * total / max(len(doc.text), 1)  # same tokens per character
                    eta = (total - done + later_tokens) * elapsed / done
                if progress:
                    progress(MemorizeProgress(doc.name, index, len(documents), done, total,
                                              time.perf_counter() - t0, eta))
            try:
                stats = model.memorize(doc.text, bank, source=doc.name, progress=on_segment, pages=doc.pages,
                                         page_labels=doc.page_labels)
            except Stopped:
                report.stopped = True
                break
            report.documents.append({"name": doc.name, "tokens": stats.tokens, "chunks": stats.chunks,
                                     "seconds": round(stats.seconds, 2)})
        if len(bank):  # the copy path's token cache, built now rather than at the first question (bench: ttft)
            neural_cache.cache_from_sources(model, bank)
        report.seconds = time.perf_counter() - t0
        return report


def describe_bank(bank: MemoryBank | None, questions: int = 0) -> dict:
    """Size, capacity and sources of a bank, for display and for API clients (computed before a loaded bank is
    adopted, so a bank that cannot be described is refused)."""
    if bank is None:
        return {"tokens": 0, "chunks": 0, "capacity": None, "chunk_size": None, "used": 0.0, "sources": [],
                "questions": questions}
    stats = bank.stats()
    chunks_per_source: dict[int, int] = {}
    for s in bank.chunk_source.tolist():
        chunks_per_source[s] = chunks_per_source.get(s, 0) + 1
    sources = [{"name": src["name"], "chunks": chunks_per_source.get(i, 0), "characters": len(src["text"])}
               for i, src in enumerate(bank.sources)]
    return {"tokens": stats["tokens"], "chunks": stats["chunks"], "capacity": stats["capacity"],
            "chunk_size": bank.chunk_size, "used": round(stats["used"], 6), "bytes": stats["bytes"],
            "sources": sources, "questions": questions}


def bank_stats(session: Session) -> dict:
    """``describe_bank`` of the session's memory."""
    return describe_bank(session.bank, len(session.turns))


def clear(session: Session) -> None:
    """Forget everything the session read, asked and classified, and delete its saved bank file."""
    with busy(session):
        session.forget_documents()
        session.demonstrations = None
        session.drop_saved()
