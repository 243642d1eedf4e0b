"""Before reading documents into a bank: how many tokens and chunks they take, and, where they would not fit, what
first in, first out would drop (the bank's oldest chunks, then the start of the documents), by document and
page. The app asks the person before dropping anything (``app/handlers/memory.py``); ``memorize`` on the CLI
refuses unless told ``--drop-oldest``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .data import Document
from ..memory.memory_bank import MemoryBank, label_of, page_of

GROWN_CAPACITY = 1 << 20  # tokens: a new bank for a person's documents (CLI memorize, the app): storage is allocated
# as it fills, so a 250-page PDF (~250,000 tokens) stays whole; the model's 65,536 (the paper's) dropped half of it

@dataclass
class Drop:
    """Part of a document that reading would drop from memory (its first ``tokens``), or leave unread (its last)."""

    name: str
    tokens: int
    whole: bool  # all of it
    pages: str | None = None  # printed labels of the pages concerned, "i–37" (a PDF), else None
    first: bool = True  # its first tokens (False: its last, a document read only in part)

    def to_dict(self) -> dict:
        return {"name": self.name, "tokens": self.tokens, "whole": self.whole, "pages": self.pages,
                "first": self.first}

    def describe(self) -> str:
        part = "first" if self.first else "last"
        what = f"all of {self.name}" if self.whole else f"the {part} {self.tokens:,} tokens of {self.name}"
        return what + (f" (pages {self.pages})" if self.pages else "")


@dataclass
class ReadingPlan:
    """What reading ``documents`` into ``bank`` takes, counted before anything is read."""

    tokens: list[int]  # tokens of each document
    chunks: list[int]  # chunks each adds (every segment's last chunk may be partial)
    over: int  # chunks beyond the bank's capacity (0: everything fits)
    drops: list[Drop]  # what first in, first out would drop to make room, oldest first


def segment_chunks(model, chunk_size: int, tokens: int) -> int:
    """Chunks ``tokens`` tokens of one document take: it is read in segments, and each segment's last chunk may be
    partial (``LongMemModel.memorize``)."""
    step = model.segment_length - len(model.with_sink([]))
    per_segment = -(-step // chunk_size)
    return tokens // step * per_segment + -(-(tokens % step) // chunk_size)


def tokens_fitting(model, chunk_size: int, chunks: int) -> int:
    """The most tokens of one document that take at most ``chunks`` chunks."""
    step = model.segment_length - len(model.with_sink([]))
    per_segment = -(-step // chunk_size)
    return chunks // per_segment * step + min(step, chunks % per_segment * chunk_size)


def pages_of(source: dict, first_char: int, last_char: int) -> str | None:
    """Printed labels of the pages holding characters first_char..last_char of ``source`` ("3" or "i–37")."""
    a, z = page_of(source.get("pages"), first_char), page_of(source.get("pages"), max(first_char, last_char))
    if a is None:
        return None
    return label_of(source, a) if a == z else f"{label_of(source, a)}–{label_of(source, z)}"


def plan_reading(model, bank: MemoryBank, documents: Sequence[Document]) -> ReadingPlan:
    """Count the documents' tokens and, where they would not fit, what first in, first out would drop: the
    bank's oldest chunks, then the start of the documents themselves."""
    counts, chunks = [], []
    for doc in documents:
        n = len(model.tokenizer(doc.text, add_special_tokens=False)["input_ids"])
        counts.append(n)
        chunks.append(segment_chunks(model, bank.chunk_size, n))
    over = max(0, bank.n_chunks + sum(chunks) - bank.max_chunks)
    drops: list[Drop] = []
    left = over
    if left and bank.n_chunks:  # the bank's oldest chunks first, source by source
        k = min(left, bank.n_chunks)
        src, tok, chars = bank.chunk_source[:k], bank.chunk_tokens[:k], bank.chunk_chars[:k]
        all_src = bank.chunk_source
        for s in dict.fromkeys(int(x) for x in src):  # in order of first appearance
            rows = np.flatnonzero(src == s)
            source = bank.sources[s] if s >= 0 else {"name": "", "text": ""}
            whole = int((all_src == s).sum()) == len(rows)
            drops.append(Drop(source["name"], int(tok[rows[-1], 1] - tok[rows[0], 0]), whole,
                              pages_of(source, int(chars[rows[0], 0]), int(chars[rows[-1], 1]) - 1)))
        left -= k
    for doc, n, c in zip(documents, counts, chunks):  # then the documents' own first chunks (more than fits)
        if left <= 0:
            break
        if left >= c:
            drops.append(Drop(doc.name, n, True, pages_of(doc.__dict__, 0, len(doc.text) - 1)))
        else:
            lost = min(n, tokens_fitting(model, bank.chunk_size, left))  # its first ``left`` chunks
            drops.append(Drop(doc.name, lost, False, pages_of(doc.__dict__, 0, char_of(model, doc.text, lost) - 1)))
        left -= c
    return ReadingPlan(counts, chunks, over, drops)


def char_of(model, text: str, tokens: int) -> int:
    """Characters of ``text`` its first ``tokens`` tokens cover."""
    if tokens <= 0:
        return 0
    offsets = model.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    return int(offsets[min(tokens, len(offsets)) - 1][1])


def first_part(doc: Document, chars: int) -> Document:
    """The first ``chars`` characters of a document, with the pages that start within them."""
    pages = [p for p in doc.pages if p < chars] if doc.pages else None
    labels = doc.page_labels[:len(pages)] if pages and doc.page_labels else None
    return Document(doc.name, doc.text[:chars], pages or None, labels)
