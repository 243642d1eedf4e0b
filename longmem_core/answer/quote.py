"""The quote an answer rests on (beyond the paper): the read-back sentence its span was copied from
(``spans.py``), exactly as written, with its source, page label and section heading: what a person checks the
answer against. And whether a generated answer ends a sentence (``ends_sentence``).

Pure functions over ``sentences.Sentence`` and a bank's source records.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from ..documents import layout
from ..memory.memory_bank import label_of, page_of
from .sentences import Sentence

NOT_FOUND = "I did not find this in what I read."
_ENDED = re.compile(r"[.!?][\"'\u201d\u2019)\]]*$")


@dataclass
class Quote:
    """An exact sentence (or a few) of a source, and where it is."""

    text: str
    source: str
    char_start: int  # span in the source text, [start, end)
    char_end: int
    page: int | None = None  # 1-based page (a PDF), else None
    page_label: str | None = None  # the label printed on that page ("iv", "38")
    section: str | None = None  # the section heading it sits under, where one is found

    def to_dict(self) -> dict:
        """Its fields and its ``citation``, as the app and ``ask --json`` show them."""
        return asdict(self) | {"citation": self.citation()}

    def citation(self) -> str:
        """Where the quote is, for a reader: "manual.pdf, page 38, under 7.10 Factors"."""
        out = self.source or "memory"
        if self.page_label is not None:
            out += f", page {self.page_label}"
        if self.section:
            out += f", under \u201c{self.section}\u201d"
        return out


def quote_of(sentence: Sentence, source: dict) -> Quote:
    """The quote of ``sentence`` from ``source`` (a bank's source record): its exact text, page and section (a
    heading on the sentence's first line is its section, and left out of the quoted text)."""
    text, pages = source["text"], source.get("pages")
    page = page_of(pages, sentence.char_start)
    raw = text[sentence.char_start:sentence.char_end]
    first_line_end = text.find("\n", sentence.char_start + len(raw) - len(raw.lstrip()), sentence.char_end)
    looked_before = first_line_end if first_line_end >= 0 else sentence.char_start  # a heading opening it counts
    section = layout.heading_before(text, looked_before, layout.furniture(text, pages))
    start = sentence.char_start
    if first_line_end >= 0 and layout.is_heading(text[start:first_line_end]) \
            and text[first_line_end:sentence.char_end].strip():
        start = first_line_end + 1  # the heading opening it is shown as its section, not quoted as if prose
        start += len(text[start:sentence.char_end]) - len(text[start:sentence.char_end].lstrip())
        page = page_of(pages, start)
    return Quote(" ".join(text[start:sentence.char_end].split()), source["name"], start, sentence.char_end, page,
                 label_of(source, page), section)


def ends_sentence(text: str) -> bool:
    """Does a generated answer end a sentence (a stop, possibly inside closing quotes or brackets), rather than
    stopping mid-sentence at its token limit?"""
    return bool(_ENDED.search(text.rstrip()))
