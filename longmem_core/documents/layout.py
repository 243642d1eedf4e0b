"""A document's layout, read from its text: lines that are not prose, and the section a character sits under.

Real PDFs carry lines a reader skips: running headers and footers ("CHAPTER 2. PREREQUISITES", "gnuplot 5.4 31"),
page numbers, and table-of-contents lines ("2.10 What is CRAN? . . . . 8"). They stay in memory and on the map,
but the read-back should not quote them as an answer. Headings ("2.3 Social dynamics of Debian") are not
answers either, but they name the section a quote sits under.

Pure functions of a source's text and page starts; ``furniture`` is cached per text (the same source is asked
about question after question).
"""
from __future__ import annotations

import bisect
import re
from functools import lru_cache

from . import settings
from .settings import LayoutSettings

_DOT_LEADER = re.compile(r"(?:\.\s?){4,}\s*\S{0,8}\s*$|(?:\.\s?){4,}")  # ". . . . 12" / "........ 12"
_TOC_LINE = re.compile(r"^\s*(?:[A-Z]\.|\d+(?:\.\d+)*\.?)\s+\S.{0,100}?\s(?:\d{1,4}|[ivxlc]{1,6})\s*$", re.I)
_NUMBERED_HEADING = re.compile(r"^\s*(?:(?:chapter|section|part|appendix)\s+)?(?P<number>\d{1,2}(?:\.\d+)*\.?|"
                               r"[A-Z]\.(?:\d+\.?)*):?\s+(?P<title>[^\W\d_\\`'\"].{0,90})$", re.I)
# an appendix lettered without a dot ("F Revision History"): a heading only when every word of its title is
# capitalised, or a short joining word, so that a wrapped line of prose ("A Londoner who had seen") is not one; never
# "I" (the pronoun opens lines of prose)
_LETTER_HEADING = re.compile(r"^\s*(?:[Aa]ppendix\s+)?[A-HJ-Z]\s+(?P<title>[A-Z][\w-]+(?:\s+[\w-]+){0,8})$")
_JOINING_WORDS = {"a", "an", "and", "as", "for", "in", "of", "on", "or", "the", "to", "with"}
# unnumbered headings of a document's front and back matter, on a line of their own (the listings manual's "Preface");
# not "Contents": no quote sits under it (its lines are furniture)
_MATTER_HEADINGS = frozenset({"preface", "foreword", "introduction", "abstract", "summary", "acknowledgements",
                              "acknowledgments", "bibliography", "references",
                              "index", "glossary", "appendix", "appendices", "license", "licence", "colophon",
                              "about this document", "about this manual", "overview"})
_HEADING_WORDS = 8  # a heading numbered like a list's item ("3.") has at most this many words
_LIST_ITEM = re.compile(r"^\s*\d+[.)]\s+[a-z]")  # "3. provide your name...": a numbered list's item, not a heading
_PAGE_NUMBER = re.compile(r"^\s*(?:page\s+)?(?:\d{1,4}|[ivxlcdm]{1,7})(?:\s*(?:/|of)\s*\d{1,4})?\s*$", re.I)
_DIGITS = re.compile(r"\d+")
# how many lines at a page's edge are looked at, how often a line repeats to be furniture: settings.LAYOUT


def lines_of(text: str, lo: int = 0, hi: int | None = None) -> list[tuple[int, int]]:
    """The [start, end) spans of the non-blank lines of text[lo:hi] (ends exclude the line break)."""
    hi = len(text) if hi is None else hi
    out, start = [], lo
    while start < hi:
        end = text.find("\n", start, hi)
        end = hi if end < 0 else end
        if text[start:end].strip():
            out.append((start, end))
        start = end + 1
    return out



def has_dot_leader(line: str) -> bool:
    return bool(_DOT_LEADER.search(line))


def is_toc_line(line: str) -> bool:
    """A line shaped like a table-of-contents entry: dot leaders, or a numbered title ending in a page number
    (the latter counts as contents only in a run of ``settings.LAYOUT.toc_run`` such lines: see ``contents_lines``)."""
    return has_dot_leader(line) or bool(_TOC_LINE.match(line)) and len(line) < 140


def contents_lines(text: str) -> list[tuple[int, int]]:
    """Spans of the table-of-contents lines of ``text``: every line with dot leaders, the lines of each run of at
    least ``settings.LAYOUT.toc_run`` consecutive contents-shaped lines, and a line between two contents lines (an
    entry wrapped onto two lines: "7.2 Listings with a background" / "colour and formulas . . . . 56")."""
    out, run = [], []
    lines = lines_of(text)
    for s, e in lines + [(len(text), len(text))]:
        line = text[s:e]
        if s < e and is_toc_line(line):
            run.append((s, e))
            continue
        out += run if len(run) >= settings.LAYOUT.toc_run else [(a, b) for a, b in run if has_dot_leader(text[a:b])]
        run = []
    found = set(out)
    wrapped = [b for a, b, c in zip(lines, lines[1:], lines[2:]) if a in found and c in found and b not in found
               and not text[b[0]:b[1]].rstrip().endswith(".")]
    return sorted(found.union(wrapped))


def is_lettered_heading(line: str) -> bool:
    """An appendix heading lettered without a dot, its title in title case ("F Revision History"); a title of one
    word only after "Appendix" ("R Schlicht", an author's initial and name on a title page, is no heading)."""
    m = _LETTER_HEADING.match(line)
    words = m.group("title").split() if m else []
    if len(words) < 2 and not (words and line.strip().lower().startswith("appendix")):
        return False
    return all(w[:1].isupper() or w in _JOINING_WORDS for w in words)


def is_heading(line: str) -> bool:
    """A numbered section heading on a line of its own ("2.3 Social dynamics of Debian", "Chapter 4: Plotting",
    "F Revision History"), or an unnumbered one of the front or back matter ("Preface", "Introduction"), not a
    table-of-contents line and not a sentence (no final full stop)."""
    line = line.strip()
    if (is_lettered_heading(line) and not is_toc_line(line)) or line.lower() in _MATTER_HEADINGS:
        return True
    m = _NUMBERED_HEADING.match(line)
    if m is None or _LIST_ITEM.match(line) or is_toc_line(line) or line.endswith(".") or len(line.split()) > 14:
        return False
    number, title = m.group("number"), m.group("title")
    if number[:1].islower() or _listed(number, title):
        return False  # "i. In some cases, we have not..." / "3. We very strongly discourage vendors from editing..."
    # an undotted number opens a heading only before a capital ("1 Introduction"; not "12 apples were eaten", nor
    # a wrapped line of prose "1993 were limited to just that")
    return "." in number.rstrip(".") or title[:1].isupper()


def _listed(number: str, title: str) -> bool:
    """Is a line numbered "3." a numbered list's item rather than a heading: its title a clause (a comma in it, more
    than ``_HEADING_WORDS`` words, or a last word that joins it to the next line: "3. Gutenprint is built dynamically
    only (--disable-static or")? Headings numbered so ("2. Configuring desired options") are short."""
    words = title.split()
    return number.endswith(".") and number[:-1].isdigit() and ("," in title or len(words) > _HEADING_WORDS
                                                                or words[-1].lower() in _JOINING_WORDS)


def _shape(line: str) -> str:
    """A line with its numbers dropped and its spacing normalised: how a running header repeats from page to page."""
    return " ".join(_DIGITS.sub("#", line).split()).lower()


def _prefix(shape: str) -> str:
    """The first ``settings.LAYOUT.prefix_words`` words of a shape ("chapter #. tool setups" of
    "CHAPTER 3. TOOL SETUPS 3.5. GPG")."""
    words = shape.split()
    n = settings.LAYOUT.prefix_words
    return " ".join(words[:n]) if len(words) > n else ""


@lru_cache(maxsize=16)
def _furniture(text: str, pages: tuple[int, ...], layout: LayoutSettings) -> tuple[tuple[int, int], ...]:
    edge = layout.lines_at_edge
    ends = list(pages[1:]) + [len(text)]
    edges: list[tuple[int, int, str]] = []  # (start, end, shape) of the lines at each page's top and bottom
    for lo, hi in zip(pages, ends):
        lines = lines_of(text, lo, hi)
        n = len(lines)
        for i in sorted(set(range(min(edge, n))) | set(range(max(0, n - edge), n))):
            s, e = lines[i]
            edges.append((s, e, _shape(text[s:e])))
    counts: dict[str, int] = {}
    prefixes: dict[str, int] = {}
    for _, _, shape in set(edges):
        counts[shape] = counts.get(shape, 0) + 1
        prefixes[_prefix(shape)] = prefixes.get(_prefix(shape), 0) + 1
    out = set()
    for s, e, shape in edges:
        line = text[s:e]
        repeated = (counts[shape] >= layout.min_repeats
                    or _prefix(shape) and prefixes[_prefix(shape)] >= layout.min_prefix_repeats)
        if len(line) <= layout.max_furniture_chars and (_PAGE_NUMBER.match(line) or repeated
                                                         and len(pages) >= 2 * layout.min_repeats):
            out.add((s, e))
    out.update(contents_lines(text))
    return tuple(sorted(out))


def furniture(text: str, pages: list[int] | None) -> list[tuple[int, int]]:
    """Sorted [start, end) spans of the lines of ``text`` that are not prose: running headers and footers and page
    numbers at the pages' edges (a line whose shape, numbers aside, is at the edge of several pages, or whose first
    words are at the edge of more: a running head naming its chapter, then its section), and
    table-of-contents lines anywhere. ``pages``: where each page starts (None: one page)."""
    return list(_furniture(text, tuple(pages) if pages else (0,), settings.LAYOUT))


def overlaps(spans: list[tuple[int, int]], start: int, end: int) -> int:
    """Characters of [start, end) covered by the sorted, disjoint ``spans``."""
    i = max(0, bisect.bisect_right(spans, (start, start)) - 1)
    covered = 0
    while i < len(spans) and spans[i][0] < end:
        covered += max(0, min(end, spans[i][1]) - max(start, spans[i][0]))
        i += 1
    return covered


def heading_before(text: str, char: int, skip: list[tuple[int, int]] | None = None,
                   limit: int = 20_000) -> str | None:
    """The nearest section heading (``is_heading``) that starts before ``char``, looked for in the ``limit``
    characters before it; lines in ``skip`` (running headers, contents) are passed over."""
    lo = max(0, char - limit)
    for s, e in reversed(lines_of(text, lo, min(char, len(text)))):
        if skip and overlaps(skip, s, e):
            continue
        if is_heading(text[s:e]):
            return " ".join(text[s:e].split())
    return None
