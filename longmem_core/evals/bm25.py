"""The lexical baseline: BM25 (``bm25s``) over the same memory chunks or passages the model's search sees.

The memory search ranks chunks by the model's own keys; BM25 ranks the same units by words shared with the
question (English stop words dropped, no stemming). Both are scored with the same ``retrieval_recall``.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..memory.memory_bank import MemoryBank


@dataclass
class Unit:
    """A piece of a document BM25 can return: its character span in the source and its text."""

    char_start: int
    char_end: int
    text: str


class BM25:
    """BM25 over a list of units; ``search`` gives the best ``top`` of them, best first."""

    def __init__(self, units: list[Unit]) -> None:
        import bm25s
        if not units:
            raise ValueError("BM25 needs at least one unit to index")
        self.units = units
        self._bm25s = bm25s
        self.index = bm25s.BM25()
        self.index.index(bm25s.tokenize([u.text for u in units], stopwords="en", show_progress=False),
                         show_progress=False)

    def search(self, query: str, top: int) -> list[Unit]:
        tokens = self._bm25s.tokenize([query], stopwords="en", show_progress=False)
        if not tokens.vocab:  # only stop words: BM25 has nothing to rank by
            return []
        k = min(top, len(self.units))
        ids, scores = self.index.retrieve(tokens, k=k, show_progress=False)  # [1, k] each
        return [self.units[int(i)] for i, s in zip(ids[0], scores[0]) if s > 0]


def chunk_units(bank: MemoryBank, source: str | None = None) -> list[Unit]:
    """The bank's chunks (of ``source``, or all), in bank order, as BM25 units."""
    units = []
    for cid in bank.chunk_ids:
        info = bank.chunk_info(int(cid))
        if source is None or info.source == source:
            units.append(Unit(info.char_start, info.char_end, info.text))
    return units


def passage_span(text: str, char_start: int, char_end: int, context_chars: int) -> tuple[int, int]:
    """The span ``[char_start, char_end)`` widened by ``context_chars`` on each side, out to whole words."""
    start = max(0, char_start - context_chars)
    end = min(len(text), char_end + context_chars)
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    while end < len(text) and not text[end].isspace():
        end += 1
    return start, end


def passage_units(text: str, passage_chars: int) -> list[Unit]:
    """``text`` cut into consecutive passages of about ``passage_chars`` characters, at word boundaries."""
    if passage_chars < 1:
        raise ValueError("passage_chars must be positive")
    units, start = [], 0
    while start < len(text):
        end = min(len(text), start + passage_chars)
        while end < len(text) and not text[end].isspace():
            end += 1
        if text[start:end].strip():
            units.append(Unit(start, end, text[start:end]))
        start = end
    return units

