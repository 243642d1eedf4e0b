"""The quote an answer rests on (beyond the paper): the read-back sentence that supports it, exactly as written,
with its source, page label and section heading; and the clean form of a generated answer.

After a mode that reads back has answered, the sentence of what it read that holds the most of the answer's own
words (those the question did not bring) is the quote: what a person checks the answer against. An answer none of
whose own words stand in anything read back rests on nothing, and is replaced by ``NOT_FOUND``.

Pure functions over ``sentences.Sentence`` lists and a bank's sources.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from . import layout
from .memory_bank import label_of, page_of
from .sentences import Sentence

NOT_FOUND = "I did not find this in what I read."
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
# where a generated answer's first sentence ends: a stop (not inside "3.0" or "as.numeric") or a line break
_SENTENCE_END = re.compile(r"[.!?][\"'\u201d\u2019)\]]*(?=\s)|\n")
MIN_ANSWER_WORDS = 2  # a sentence end before this many words is not the answer's end ("No. 5 is ...")


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
        return asdict(self)

    def citation(self) -> str:
        """Where the quote is, for a reader: "manual.pdf, page 38, under 7.10 Factors"."""
        out = self.source or "memory"
        if self.page_label is not None:
            out += f", page {self.page_label}"
        if self.section:
            out += f", under \u201c{self.section}\u201d"
        return out


def words(text: str, stop: frozenset[str] = frozenset()) -> set[str]:
    """Lower-cased word tokens of ``text`` that are not in ``stop``."""
    return {w for w in _WORD.findall(text.lower()) if w not in stop}


def own_words(answer: str, question: str, stop: frozenset[str]) -> set[str]:
    """The answer's words that neither the question nor the stop list brought: what it claims."""
    return words(answer, stop) - words(question)


def supporting(sentences: list[Sentence], answer: str, question: str, stop: frozenset[str]) -> Sentence | None:
    """The sentence holding the most of the answer's own words (ties: the better score for the question); None when
    no sentence holds any (the answer rests on nothing read back)."""
    claim = own_words(answer, question, stop)
    best, key = None, (0, 0.0)
    for s in sentences:
        k = (len(claim & words(s.text)), s.score)
        if k[0] > 0 and k > key:
            best, key = s, k
    return best


def quote_of(sentence: Sentence, source: dict) -> Quote:
    """The quote of ``sentence`` from ``source`` (a bank's source record): its exact text, page and section."""
    text, pages = source["text"], source.get("pages")
    page = page_of(pages, sentence.char_start)
    section = layout.heading_before(text, sentence.char_start, layout.furniture(text, pages))
    return Quote(" ".join(text[sentence.char_start:sentence.char_end].split()), source["name"], sentence.char_start,
                 sentence.char_end, page, label_of(source, page), section)


def first_sentence(text: str) -> tuple[str, bool]:
    """``text`` up to the end of its first complete sentence (of at least ``MIN_ANSWER_WORDS`` words), and whether
    a sentence ended there (False: the text stops mid-sentence)."""
    for m in _SENTENCE_END.finditer(text):
        head = text[:m.end()]
        if len(head.split()) >= MIN_ANSWER_WORDS:
            return head.rstrip(), True
    return text.rstrip(), False


def clean(text: str, stop: frozenset[str]) -> str:
    """A generated continuation of the answer's opening as a reader sees it: the comma and spaces the opening left
    before it dropped, and its first word capitalised when it is a common word ("the ..." -> "The ...";
    "as.numeric(...)" or a name stays as written)."""
    text = text.lstrip(" ,:;\n")
    first = text.split(" ", 1)[0]
    return text[:1].upper() + text[1:] if first.isalpha() and first.lower() in stop else text
