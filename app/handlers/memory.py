"""The Memory tab's handlers: read documents into the session's bank, describe it, clear it.
(Saving and loading a bank file: ``bank_file.py``.)"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from longmem_core import Document, DocumentError, LongMemModel, MemoryBank, read_document
from longmem_core.answer import neural_cache
from longmem_core.model import search
from longmem_core.memory.memory_bank import page_of
from longmem_core.documents.reading_plan import (Drop, ReadingPlan, char_of, first_part, pages_of, plan_reading,
                                                 tokens_fitting)

from ..background import Stopped
from ..config import WHEN_FULL, AppSettings
from ..session import Session
from .common import ASSETS, AppError, busy, check_bank_settings, named

GROWN_CAPACITY = AppSettings().new_bank_capacity  # a new bank's capacity when none is given (it grows as it reads)

BOOKS = {  # bundled public-domain examples: label -> file in assets/
    "The Time Machine, chapter I (H. G. Wells; 10 KB, ~2,500 tokens)": "the_time_machine_ch1.txt",
    "The Time Machine, whole book (H. G. Wells; 180 KB, ~45,000 tokens)": "the_time_machine.txt",
}


@dataclass
class MemorizeProgress:
    name: str  # document being read
    index: int  # its position among the documents (0-based; ``count`` while indexing, after the last)
    count: int  # documents in this run
    done: int  # tokens of this document read so far
    total: int  # tokens in this document
    seconds: float  # since the run began
    eta: float | None  # seconds left for the whole run, estimated from the speed so far
    pages: int | None = None  # pages of this document read so far (a PDF), else None
    page_count: int | None = None  # its pages
    stage: str = "reading"  # "reading", then "indexing" (the search's word index, built once reading ends)


@dataclass
class MemorizeReport:
    documents: list[dict] = field(default_factory=list)  # {"name", "tokens", "chunks", "seconds"} per document read
    stopped: bool = False  # the user pressed Stop; what was read before stays in memory
    seconds: float = 0.0
    index_seconds: float = 0.0  # of which: the search's word index, built after reading (else at the first question)
    dropped: list[dict] = field(default_factory=list)  # what made room (when_full="drop_oldest"): Drop.to_dict()
    not_read: list[dict] = field(default_factory=list)  # what did not fit (when_full="fit"): Drop.to_dict()


class WouldDrop(AppError):
    """Reading would drop what is in memory (or the start of the documents), and the person has not chosen to."""

    def __init__(self, message: str, plan: ReadingPlan) -> None:
        super().__init__(message)
        self.plan = plan


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


def would_drop_message(plan: ReadingPlan, bank: MemoryBank) -> str:
    """What the person is told before anything would be dropped."""
    over = sum(d.tokens for d in plan.drops)
    return (f"These documents ({sum(plan.tokens):,} tokens) do not fit: memory holds {len(bank):,} of at most "
            f"{bank.capacity:,} tokens. Reading them would drop {over:,} tokens, first in, first out: "
            + "; ".join(d.describe() for d in plan.drops) + ". Nothing was read. Choose what to do under "
            f"\u201cWhen memory is full\u201d ({WHEN_FULL['drop_oldest']}, or {WHEN_FULL['fit']}) and press Read again, "
            "or clear memory first (a new memory grows up to the capacity set in Settings).")


def memorize(model: LongMemModel, session: Session, documents: Sequence[Document], *, chunk_size: int | None = None,
             capacity: int | None = None, when_full: str = "ask",
             progress: Callable[[MemorizeProgress], None] | None = None) -> MemorizeReport:
    """Read documents into the session's bank (a new one, with the given chunk size and capacity, while it is
    empty; capacity None: ``GROWN_CAPACITY``, allocated as it fills). ``progress`` gets a MemorizeProgress after
    every segment; if it raises ``Stopped`` the reading stops there and what was read stays.

    Nothing is dropped without the person's say: where the documents would not fit, ``when_full`` decides:
    "ask" raises ``WouldDrop`` (what would be dropped, by document and page; nothing read), "drop_oldest" drops
    the oldest chunks first in, first out, "fit" reads only what fits; the report lists what was dropped or left."""
    if when_full not in WHEN_FULL:
        raise AppError(f"Unknown choice {when_full!r} for a full memory: choose one of {', '.join(WHEN_FULL)}.")
    chunk_size, capacity = check_bank_settings(model, chunk_size, capacity or GROWN_CAPACITY)
    with busy(session):
        bank = session.bank
        if bank is None or (len(bank) == 0 and (bank.chunk_size, bank.capacity) != (chunk_size, capacity)):
            bank = model.new_bank(capacity=capacity, chunk_size=chunk_size)
        plan = plan_reading(model, bank, documents)
        report = MemorizeReport()
        if plan.over and when_full == "ask":
            raise WouldDrop(would_drop_message(plan, bank), plan)
        if plan.over and when_full == "fit":  # whole documents while they fit, then the start of the next
            kept, room = [], bank.max_chunks - bank.n_chunks
            for doc, n, c in zip(documents, plan.tokens, plan.chunks):
                if c <= room:
                    kept.append(doc)
                else:  # cut at a token a little before the end of the room (re-read, its tokens may differ there)
                    fit = max(0, tokens_fitting(model, chunk_size, room) - 2 * chunk_size) if room > 0 else 0
                    cut = char_of(model, doc.text, fit)
                    if fit and cut:
                        kept.append(first_part(doc, cut))
                    report.not_read.append(Drop(doc.name, n - fit, not (fit and cut),
                                                pages_of(doc.__dict__, cut, len(doc.text) - 1), first=False).to_dict())
                room -= c
            documents = kept
        elif plan.over:
            report.dropped = [d.to_dict() for d in plan.drops]
        session.bank = bank
        bank.reserve(sum(plan.chunks) * chunk_size)  # allocated once at its size, not by doubling
        t0 = time.perf_counter()
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
                    pages = None
                    if doc.pages:  # the page of the last character read (tokens in proportion to characters)
                        pages = page_of(doc.pages, int(len(doc.text) * done / max(total, 1)) - 1) if done else 0
                    progress(MemorizeProgress(doc.name, index, len(documents), done, total,
                                              time.perf_counter() - t0, eta, pages,
                                              len(doc.pages) if doc.pages else None))
            try:
                stats = model.memorize(doc.text, bank, source=doc.name, progress=on_segment, pages=doc.pages,
                                         page_labels=doc.page_labels)
            except Stopped:
                report.stopped = True
                break
            report.documents.append({"name": doc.name, "tokens": stats.tokens, "chunks": stats.chunks,
                                     "seconds": round(stats.seconds, 2)})
        if len(bank):  # what the first question would otherwise build: the copy path's token cache (bench: ttft)
            t_index = time.perf_counter()  # and the hybrid search's word index, with a line on the page
            try:
                if progress and not report.stopped:  # (after Stop, the page no longer listens)
                    progress(MemorizeProgress("", len(documents), len(documents), len(bank), len(bank),
                                              time.perf_counter() - t0, 0.0, stage="indexing"))
                neural_cache.cache_from_sources(model, bank)
                search.lexical_scores(bank, "")
            except Stopped:  # built at the first question instead
                report.stopped = True
            report.index_seconds = time.perf_counter() - t_index
        report.seconds = time.perf_counter() - t0
        return report


def describe_bank(bank: MemoryBank | None, questions: int = 0) -> dict:
    """Size, capacity, pages, RAM and sources of a bank (with what was dropped of each), for display and for API
    clients (computed before a loaded bank is adopted, so a bank that cannot be described is refused)."""
    if bank is None:
        return {"tokens": 0, "chunks": 0, "capacity": None, "chunk_size": None, "used": 0.0, "sources": [],
                "questions": questions, "pages": 0, "ram_bytes": 0}
    stats = bank.stats()
    src_of, tok, chars = bank.chunk_source, bank.chunk_tokens, bank.chunk_chars
    sources, pages_in_memory = [], 0
    for i, src in enumerate(bank.sources):
        rows = np.flatnonzero(src_of == i)
        entry = {"name": src["name"], "chunks": len(rows), "characters": len(src["text"])}
        if src.get("pages"):
            starts = np.asarray(src["pages"])
            held = np.unique(np.searchsorted(starts, chars[rows, 0], side="right")) if len(rows) else []
            entry["pages"], entry["pages_in_memory"] = len(starts), len(held)
            pages_in_memory += len(held)
        if not len(rows):
            if not src["text"]:  # its text is forgotten once its last chunk is dropped (MemoryBank._forget_texts)
                entry["dropped"] = {"whole": True, "tokens": None, "pages": None}
        elif tok[rows[0], 0] > 0:  # its start was dropped, first in, first out
            entry["dropped"] = {"whole": False, "tokens": int(tok[rows[0], 0]),
                                "pages": pages_of(src, 0, int(chars[rows[0], 0]) - 1) if chars[rows[0], 0] > 0 else None}
        sources.append(entry)
    return {"tokens": stats["tokens"], "chunks": stats["chunks"], "capacity": stats["capacity"],
            "chunk_size": bank.chunk_size, "used": round(stats["used"], 6), "bytes": stats["bytes"],
            "ram_bytes": bank.nbytes(), "index": stats["index"], "pages": pages_in_memory,
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
