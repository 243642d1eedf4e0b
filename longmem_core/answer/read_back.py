"""Read-back (beyond the paper): the passages around the chunks a search found, re-read into the prompt.

The LongMem paper only lets memory in through the memory layer's attention. Measured on this project's
backbone (docs/DESIGN.md section 2), the small backbone hardly reads memory that way, but it copies a fact stated
in its own context. Read-back plays to that: each retrieved chunk is widened to the sentences around it
(character spans of the bank's source texts), overlapping passages are merged, the best ones that fit a
token budget are kept, and they are put, in document order, before the question.

Pure text functions first (``sentence_bounds``, ``expand``, ``merge``), then ``read_back`` over a bank.
"""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

from ..memory.memory_bank import MemoryBank
from ..model.model import LongMemModel, Retrieved
from . import settings

# How long a passage is and how many tokens of them a prompt holds: settings.READ_BACK
# a stop and the spaces after it, but not a spaced ellipsis's dot (". . ." in "0, 1, . . . , 9" goes on), or a blank line
_SENTENCE_END = re.compile(r"(?<!\. )[.!?][\"'\u201d\u2019)\]]*\s+(?!\.(?:\s|$))|\n\s*\n")
# a period after one of these (or after a single capital: an initial) ends no sentence: "Mr. Hubble the
# wheelwright" is one sentence (cut after "Mr." it lost the name a question asked about on a tuning book)
# (and in manuals "et al.", "cf.", "e.g.", "i.e.": "as Jones et al. (1990) do" is one sentence; natbib's was cut)
_ABBREVIATIONS = frozenset("mr mrs ms messrs dr st mt jr sr capt col gen lt sgt rev prof hon gov esq vs al cf".split())
# a period after one of these ends no sentence where a number follows: "TUGboat, Volume 19 (1998), No. 3 states"
# (a listings manual's sentence was cut at "No.", losing the two languages asked about), "see Fig. 2", "pp. 3-5"
_BEFORE_A_NUMBER = frozenset("no nos vol vols fig figs eq eqs sec ch chap pp p art".split())
_NUMBER_NEXT = re.compile(r"\s*\(?\d")
_LETTERS_WITH_STOPS = re.compile(r"\b[a-zA-Z]\.[a-zA-Z]\.$")  # "e.g.", "i.e." just before the stop's end
_WORD_BEFORE_STOP = re.compile(r"(\w+)\.$")
# an unspaced ellipsis going on in lower case ("in the syntax ‘word () ...’ to be a word") ends no sentence
_ELLIPSIS_GOING_ON = re.compile(r"\.\.\.[\"'\u201d\u2019)\]]*\s+[a-z]")


@dataclass
class Passage:
    """A span of one source text that was read back, and the chunks that asked for it."""

    source_index: int  # index into bank.sources
    source: str  # the source's name
    char_start: int
    char_end: int
    text: str
    score: float  # best score of its chunks
    chunks: list[Retrieved] = field(default_factory=list)


def sentence_bounds(text: str) -> list[int]:
    """Character offsets where sentences (or paragraphs) start, always including 0 and len(text)."""
    starts = {0, len(text)}
    starts.update(m.end() for m in _SENTENCE_END.finditer(text) if not _ends_no_sentence(text, m))
    return sorted(starts)


def _ends_no_sentence(text: str, stop: re.Match) -> bool:
    """Is the sentence end ``stop`` a period that ends no sentence: right after a title, an initial or an abbreviation
    ("Mrs.", "J.", "e.g."), after "No." or "Fig." with a number next, or an unspaced ellipsis going on in lower
    case?"""
    if text[stop.start()] != ".":
        return False
    if _ELLIPSIS_GOING_ON.match(text, max(0, stop.start() - 2)):
        return True
    word = _WORD_BEFORE_STOP.search(text, max(0, stop.start() - 12), stop.start() + 1)
    if word is None:
        return False
    w = word.group(1)
    if _LETTERS_WITH_STOPS.search(text, max(0, stop.start() - 4), stop.start() + 1):
        return True
    if w.lower() in _BEFORE_A_NUMBER and _NUMBER_NEXT.match(text, stop.start() + 1):
        return True
    return w.lower() in _ABBREVIATIONS or (len(w) == 1 and w.isupper())


def expand(text: str, start: int, end: int, chars: int | None = None,
           bounds: list[int] | None = None) -> tuple[int, int]:
    """Widen [start, end) of ``text`` to whole sentences, about ``chars`` characters in all (never less than
    the sentences that hold the span itself, never cut inside a sentence). ``chars``: default
    ``settings.READ_BACK.passage_chars``."""
    chars = settings.READ_BACK.passage_chars if chars is None else chars
    bounds = bounds if bounds is not None else sentence_bounds(text)
    start, end = max(0, min(start, len(text))), max(0, min(end, len(text)))
    pad = max(0, chars - (end - start)) // 2
    # the first sentence start at or after start - pad, unless that would cut the span: then the sentence holding it
    i = bisect.bisect_left(bounds, max(0, start - pad))
    lo = bounds[i] if bounds[i] <= start else bounds[max(0, bisect.bisect_right(bounds, start) - 1)]
    # the last sentence start at or before end + pad, unless that would cut the span: then the end of its sentence
    j = bisect.bisect_right(bounds, min(len(text), end + pad)) - 1
    hi = bounds[j] if bounds[j] >= end else bounds[min(len(bounds) - 1, bisect.bisect_left(bounds, end))]
    return lo, max(hi, lo)


def merge(passages: list[Passage], texts: list[str]) -> list[Passage]:
    """Merge passages of the same source that overlap or touch; result in document order."""
    out: list[Passage] = []
    for p in sorted(passages, key=lambda p: (p.source_index, p.char_start)):
        last = out[-1] if out else None
        if last is not None and last.source_index == p.source_index and p.char_start <= last.char_end:
            last.char_end = max(last.char_end, p.char_end)
            last.text = texts[p.source_index][last.char_start:last.char_end]
            last.score = max(last.score, p.score)
            last.chunks.extend(p.chunks)
        else:
            out.append(Passage(p.source_index, p.source, p.char_start, p.char_end, p.text, p.score, list(p.chunks)))
    return out


def passages_for(bank: MemoryBank, chunks: list[Retrieved], chars: int | None = None) -> list[Passage]:
    """One passage per chunk that has source text (chunks read without a source are skipped), merged; each about
    ``chars`` characters (``expand``)."""
    names = [s["name"] for s in bank.sources]
    texts = [s["text"] for s in bank.sources]
    bounds: dict[int, list[int]] = {}
    raw = []
    for r in chunks:
        src = int(bank.chunk_source[_position(bank, r.info.chunk_id)])
        if src < 0 or r.info.char_start < 0:
            continue
        if src not in bounds:
            bounds[src] = sentence_bounds(texts[src])
        lo, hi = expand(texts[src], r.info.char_start, r.info.char_end, chars, bounds[src])
        raw.append(Passage(src, names[src], lo, hi, texts[src][lo:hi], r.score, [r]))
    return merge(raw, texts)


def _position(bank: MemoryBank, chunk_id: int) -> int:
    """Index of a stored chunk in the bank's oldest-first arrays."""
    return int(chunk_id) - bank.first_id


def fit_budget(passages: list[Passage], count_tokens, budget: int | None = None) -> list[Passage]:
    """The best-scored passages whose tokens fit ``budget`` (default ``settings.READ_BACK.context_tokens``; a
    passage that does not fit is skipped, smaller ones after it may still fit), returned in document order."""
    budget = settings.READ_BACK.context_tokens if budget is None else budget
    kept, used = [], 0
    for p in sorted(passages, key=lambda p: -p.score):
        n = count_tokens(p.text)
        if used + n <= budget:
            kept.append(p)
            used += n
    return sorted(kept, key=lambda p: (p.source_index, p.char_start))


def format_context(passages: list[Passage]) -> str:
    """The text put into the prompt: each passage on its own, labelled by its source."""
    return "\n\n".join(f"[{p.source}] {p.text.strip()}" if p.source else p.text.strip() for p in passages)


def read_back_prompt(context: str, question: str) -> str:
    """The user turn that carries the read-back passages and the question."""
    if not context:
        return question
    return f"Read these passages from memory:\n\n{context}\n\nUse them to answer. {question}"


def token_counter(model: LongMemModel):
    """A function giving the number of the model's tokens in a text (no special tokens): what budgets count."""
    tok = model.tokenizer
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])


@dataclass
class ReadBack:
    passages: list[Passage]  # what was read, in document order
    context: str  # exactly the text put into the prompt
    chunks: list[Retrieved]  # the chunks behind the passages, best first
    sentences: list = field(default_factory=list)  # the sentences read back (``sentences.Sentence``), when narrowed


def read_back(model: LongMemModel, bank: MemoryBank, chunks: list[Retrieved], *, chars: int | None = None,
              budget: int | None = None) -> ReadBack:
    """The passages around ``chunks`` (best first), about ``chars`` characters each, that fit ``budget`` tokens, in
    document order (defaults: ``settings.READ_BACK``)."""
    passages = fit_budget(passages_for(bank, chunks, chars), token_counter(model), budget)
    used = sorted((r for p in passages for r in p.chunks), key=lambda r: -r.score)
    return ReadBack(passages, format_context(passages), used)
