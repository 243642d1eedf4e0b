"""The documents package's tuned defaults: how a PDF page's running headers, footers and contents lines are told
from its text. One frozen dataclass, one default instance that the code reads at call time (``tuning.py`` says how
a field is written). Change it with ``dataclasses.replace``::

    settings.LAYOUT = dataclasses.replace(settings.LAYOUT, toc_run=4)
"""
from __future__ import annotations

from dataclasses import dataclass

from ..tuning import tuned


@dataclass(frozen=True)
class LayoutSettings:
    """Page furniture (running headers and footers) and table-of-contents lines in text extracted from PDFs."""

    lines_at_edge: int = tuned(
        2, "lines at the top and at the bottom of a page looked at for running headers and footers", "qa_pdf.md")
    min_repeats: int = tuned(
        2, "a line at a page's edge is furniture when its shape (digits dropped) is at the edge of this many pages",
        "qa_pdf.md")
    prefix_words: int = tuned(
        4, "... or when its first this-many words (a running head naming the chapter, then the section) are",
        "long_pdf.md")
    min_prefix_repeats: int = tuned(
        3, "... at the edge of this many pages", "long_pdf.md")
    max_furniture_chars: int = tuned(
        120, "a running header or footer is short: longer lines are text", "qa_pdf.md")
    toc_run: int = tuned(
        3, "a numbered title ending in a number is a contents line only in a run of this many such lines",
        "long_pdf.md")


LAYOUT = LayoutSettings()
