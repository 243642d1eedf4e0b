"""Sentence read-back (beyond the paper): only the sentences of the read-back passages that bear on the question.

Read-back (``read_back.py``) puts up to ``settings.READ_BACK.context_tokens`` tokens of passages before the
question.
Measured on this project's 135M backbone, a long prompt of passages often makes it talk about the passages
instead of answering (docs/DESIGN.md section 2), while it copies a fact stated in a
short context. Sentence read-back keeps the same search and passages, cuts them into sentences, ranks the
sentences by BM25 against the question (the sentences of the found passages are the collection; ``weight``: code
counts less, and a number more where the question asks for one), and puts only the best few, in document order,
before the question: a short prompt whose every line was chosen for the question.

Pure functions over ``read_back.Passage`` lists; ``narrow`` turns a ``read_back.ReadBack`` into its sentence form.
For the quote mode's answers (``answer.py``): ``whole_sentence`` widens a scored piece to its sentence, and
``following``, ``preceding``, ``reads_on`` and ``points_back`` decide whether a quote reads on into a neighbouring
sentence.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Callable

from ..documents import layout
from ..model.model import Retrieved
from .read_back import Passage, ReadBack, sentence_bounds
from . import settings
from ..model import settings as search_settings
from ..model.search import query_words, stop_words

# How many sentences are kept and which, how long a piece is, what a title is, BM25's b: settings.SENTENCES. A long
# "sentence" (a run-on, a table, text without stops) is cut into pieces at spaces, each scored on its own; a kept
# piece brings the next piece of its sentence (a cut can fall between "...magic numbers for quiet-lake is:" and
# "4591245.": the key scores, the value must come too).


# a sentence opening with one of these points back at the sentence before it ("It needs a package for its own: ...")
_POINTS_BACK = re.compile(r"^(it|its|this|these|that|those|they|their|such|there|here|then|thus|so|hence|also|however|"
                          r"otherwise|instead|therefore|second|secondly|third|finally|for example|for instance|e\.g\.|"
                          r"in this case|in that case|in the latter case|in addition|in particular|the latter|"
                          r"the former|note|example)\b", re.IGNORECASE)
# a question asking for a number: its answer is a sentence holding a digit more often than not
_QUANTITY = re.compile(r"\b(?:how (?:many|much|long|big|large|wide|tall|high|often|far|old)|"
                       r"what (?:size|percentage|year|version|value|number|step|amount|width|height|length|ratio)|"
                       r"which (?:year|version|number)|default value|when did|in what year)\b", re.IGNORECASE)
_DIGIT = re.compile(r"\d")
# a plain word, perhaps in quotes or brackets or before a comma: "the", "option,", "(see"
_PLAIN_WORD = re.compile(r"^[(\"'\u2018\u201c]?[A-Za-z][a-z'\u2019-]*[,.;:)\"'\u2019\u201d]*$")
_CAPITAL_LINE = re.compile(r"\n[ \t]*([A-Z])")  # a line opening with a capital letter


@dataclass
class Sentence:
    """One sentence of a read-back passage, with its span in its source text."""

    passage: int  # index of its passage in the read-back's passages (document order)
    char_start: int  # span in the source text, [start, end)
    char_end: int
    text: str
    score: float = 0.0  # BM25 score against the question (0: no word in common)
    whole: int = -1  # index of the whole sentence this is a piece of (pieces of one run-on sentence share it)
    matched: frozenset[str] = frozenset()  # the question's words it holds (after stop words)
    anchored: bool = False  # it holds a chunk the model's own search put among its best (``anchor``): kept, and a
    # candidate for the answer, whatever its words
    sentence_start: int = -1  # the whole sentence it is a piece of, [start, end) in the source text (-1: itself)
    sentence_end: int = -1

    @property
    def is_piece(self) -> bool:
        """Is this a piece of a longer run-on sentence, not the whole of it?"""
        return self.sentence_start >= 0 and (self.sentence_start, self.sentence_end) != (self.char_start, self.char_end)


def pieces(text: str, lo: int, hi: int, limit: int | None = None) -> list[tuple[int, int]]:
    """[lo, hi) of ``text`` as spans of at most ``limit`` characters (default
    ``settings.SENTENCES.max_sentence_chars``), cut at the last space before each limit (or at the limit where a
    stretch has no space)."""
    limit = settings.SENTENCES.max_sentence_chars if limit is None else limit
    out = []
    while hi - lo > limit:
        cut = text.rfind(" ", lo + 1, lo + limit)
        cut = cut if cut > lo else lo + limit
        out.append((lo, cut))
        lo = cut
    return out + [(lo, hi)]


def split(passages: list[Passage], skip: dict[int, list[tuple[int, int]]] | None = None) -> list[Sentence]:
    """Every sentence of every passage (long ones in ``pieces``), in document order (spans in the sources).
    ``skip``: per source index, spans of lines that are not prose (``layout.furniture``: running headers, page
    numbers, contents lines): each ends a sentence, and is itself left out."""
    out: list[Sentence] = []
    whole = 0
    for i, p in enumerate(passages):
        spans = (skip or {}).get(p.source_index, [])
        bounds = sentence_bounds(p.text)
        inside = [(max(0, s - p.char_start), min(len(p.text), e - p.char_start)) for s, e in spans
                  if s < p.char_end and e > p.char_start]
        if inside:
            bounds = sorted(set(bounds).union(x for span in inside for x in span))
        for a, b in zip(bounds[:-1], bounds[1:]):
            if inside and 2 * layout.overlaps(inside, a, b) >= len(p.text[a:b].strip()):
                continue
            for lo, hi in pieces(p.text, a, b):
                text = p.text[lo:hi].strip()
                if text:
                    out.append(Sentence(i, p.char_start + lo, p.char_start + hi, text, whole=whole,
                                        sentence_start=p.char_start + a, sentence_end=p.char_start + b))
            whole += 1
    return out


def whole_sentence(s: Sentence, source: str, limit: int, at: int | None = None) -> Sentence:
    """``s`` widened to the whole sentence it is a piece of (``source``: the text its span indexes), where that is at
    most ``limit`` characters: a quote then neither opens nor stops mid-sentence. A longer run-on is a list or a
    table running into prose without a stop ("...cmyk(green)\nThe standard 140 RGB X11 colors can be imported
    with..."): given ``at`` (where the answer in it starts), the sentence is taken to open at the last line before
    ``at`` that opens with a capital, where that fits. Else ``s`` itself."""
    if not s.is_piece:
        return s
    start = s.sentence_start
    if s.sentence_end - start > limit and at is not None:
        opens = [m.start(1) for m in _CAPITAL_LINE.finditer(source, s.sentence_start, at)]
        start = opens[-1] if opens else start
    if s.sentence_end - start > limit:
        return s
    return spanning(s, source, start, s.sentence_end)


def spanning(s: Sentence, source: str, start: int, end: int) -> Sentence:
    """``s`` as the whole sentence [start, end) of ``source`` (the text its span indexes), its text as quoted: each
    run of spaces and line breaks one space."""
    return replace(s, char_start=start, char_end=end, sentence_start=start, sentence_end=end,
                   text=" ".join(source[start:end].split()))


def opens_with_heading(source: str, start: int, end: int) -> bool:
    """Does [start, end) of ``source`` open with a heading's line ("3.2 Plotting\nPlots are..."): another section?"""
    return layout.is_heading(source[start:end].strip().split("\n", 1)[0])


def following(s: Sentence, source: str, skip: list[tuple[int, int]], limit: int) -> Sentence | None:
    """The whole sentence right after ``s`` in ``source`` (the text its span indexes), passing over lines that are
    not prose (``skip``: ``layout.furniture``), where it ends within ``limit`` characters and is not a title (a
    heading opens another section). None otherwise."""
    end = s.sentence_end if s.sentence_start >= 0 else s.char_end
    window = Passage(0, "", end, min(len(source), end + limit), source[end:end + limit], 0.0)
    after = split([window], {0: skip})
    if not after or is_title(after[0]):
        return None
    first = after[0]
    if opens_with_heading(source, first.sentence_start, first.sentence_end):
        return None  # another section
    if first.sentence_end >= window.char_end and window.char_end < len(source):
        return None  # it runs past what was looked at: too long to quote
    if layout.overlaps(skip, end, first.sentence_end):
        return None  # a running header or a page number between them: a quote reads on across no page furniture
    return spanning(first, source, first.sentence_start, first.sentence_end)


def preceding(s: Sentence, source: str, skip: list[tuple[int, int]], limit: int) -> Sentence | None:
    """The whole sentence right before ``s`` in ``source`` (only spaces between them), where it starts within
    ``limit`` characters, neither is a title, ``s`` opens with no heading (a new section) and no page furniture
    (``skip``) lies between them. None otherwise."""
    start = s.sentence_start if s.sentence_start >= 0 else s.char_start
    lo = max(0, start - limit)
    if opens_with_heading(source, start, s.sentence_end if s.sentence_start >= 0 else s.char_end) or lo >= start:
        return None
    window = Passage(0, "", lo, start, source[lo:start], 0.0)
    before = split([window], {0: skip})
    if not before or is_title(before[-1]) or layout.overlaps(skip, before[-1].sentence_end, start):
        return None
    last = before[-1]
    if source[last.sentence_end:start].strip() or (last.sentence_start <= lo and lo > 0):
        return None  # not right before it, or it starts before what was looked at: too long to quote
    return spanning(last, source, last.sentence_start, last.sentence_end)


def reads_on(quoted: Sentence, other: Sentence, passages: list[Passage], question: str,
             skip: dict[int, list[tuple[int, int]]] | None = None, share: float | None = None) -> bool:
    """Does ``other`` (the sentence after ``quoted``, ``following``, or before it, ``preceding``) bear on the
    question beside it: among the sentences of the read-back ``passages`` (``split``, ``skip`` as there), with
    ``other`` in place of any it overlaps, does it score at least ``share`` (default ``settings.SENTENCES.min_share``:
    it would be read back itself) of ``quoted``'s best-scored sentence for ``question``? A sentence holding only a
    word the whole section repeats ("package", "Debian") does not."""
    share = settings.SENTENCES.min_share if share is None else share
    mine = lambda s: s.passage == quoted.passage  # noqa: E731
    collection = [s for s in split(passages, skip) if not (mine(s) and s.char_start < other.char_end
                                                             and other.char_start < s.char_end)]
    other = replace(other, passage=quoted.passage)
    collection.append(other)
    score(collection, question)
    quoted_score = max((s.score for s in collection if mine(s) and s is not other and s.char_start < quoted.char_end
                        and quoted.char_start < s.char_end), default=0.0)
    return other.score > 0 and other.score >= share * quoted_score


def points_back(sentence: Sentence) -> bool:
    """Does ``sentence`` open with words that point back at the sentence before it ("It needs a package for its own:
    vdmlisting.", "Second, it allows...", "In that case, ...")? Then it goes on with the same matter."""
    return bool(_POINTS_BACK.match(sentence.text))


def is_title(sentence: Sentence) -> bool:
    """A heading or a label standing alone ("2.10 What is CRAN?", "Note"): what it introduces is the next
    sentence, which is kept with it."""
    return layout.is_heading(sentence.text) or len(sentence.text.split()) < settings.SENTENCES.title_words


def group_of(sentences: list[Sentence], i: int, before: int, neighbours: int) -> list[int]:
    """Indices kept with sentence ``i``: up to ``before`` sentences before it and ``neighbours`` after it in its
    passage, and, when ``i`` is a piece of a run-on sentence or a title (``is_title``), the next piece or sentence."""
    lo, hi = max(0, i - before), min(len(sentences), i + neighbours + 1)
    if hi < len(sentences) and (sentences[hi].whole == sentences[i].whole or is_title(sentences[i])):
        hi += 1
    return [j for j in range(lo, hi) if sentences[j].passage == sentences[i].passage]


def score(sentences: list[Sentence], question: str) -> None:
    """Set each sentence's BM25 ``score`` for ``question`` (the sentences are the collection; stop words dropped,
    length normalization ``settings.SENTENCES.length_norm``), times its ``weight``, and the question words it holds
    (``matched``)."""
    import bm25s
    if not sentences:
        return
    stop = stop_words()
    words = bm25s.tokenize([question], stopwords=stop, show_progress=False, return_ids=False)[0]
    if not words:
        return
    texts = bm25s.tokenize([s.text for s in sentences], stopwords=stop, show_progress=False, return_ids=False)
    index = bm25s.BM25(b=settings.SENTENCES.length_norm)
    index.index(texts, show_progress=False)
    asked = set(words)
    quantity = asks_a_quantity(question)
    for s, x, tokens in zip(sentences, index.get_scores(words), texts):
        s.score, s.matched = float(x) * weight(s.text, quantity), frozenset(asked.intersection(tokens))


def question_words(question: str) -> set[str]:
    """The question's words BM25 scores with (stop words dropped)."""
    return query_words(question, stop_words())


def coverage(sentences: list[Sentence], question: str) -> float:
    """The largest share of the question's words one sentence holds (after ``score``; 0 for a question of stop words
    only)."""
    asked = question_words(question)
    return max((len(s.matched) for s in sentences), default=0) / len(asked) if asked else 0.0


def asks_a_quantity(question: str) -> bool:
    """Does ``question`` ask for a number ("How much memory...", "About how long...", "What step size...")?"""
    return bool(_QUANTITY.search(question))


def prose_share(text: str) -> float:
    """The share of ``text``'s words that are plain words ("the", "option,"), not code, numbers or symbols."""
    words = text.split()
    return sum(bool(_PLAIN_WORD.match(w)) for w in words) / max(1, len(words))


def weight(text: str, quantity: bool) -> float:
    """What a sentence's BM25 score is multiplied by: ``settings.SENTENCES.code_weight`` where it is mostly code
    ("\\num{0.001} \\\\ \\num{0.0100} \\\\ ..."; ``prose_share`` under ``settings.SENTENCES.min_prose``), and
    1 + ``settings.SENTENCES.number_bonus`` where the question asks for a quantity and it holds a digit."""
    conf = settings.SENTENCES
    out = conf.code_weight if prose_share(text) < conf.min_prose else 1.0
    return out * (1.0 + conf.number_bonus) if quantity and _DIGIT.search(text) else out


def choose(sentences: list[Sentence], count_tokens: Callable[[str], int], *, top: int | None = None,
           budget: int | None = None, neighbours: int | None = None, min_share: float | None = None,
           before: int | None = None, drop_dominated: bool | None = None) -> list[Sentence]:
    """The best-scored sentences (score > 0 and at least ``min_share`` of the best score, not ``dominated``; each
    with its ``group_of``) that fit ``budget`` tokens, at most ``top`` chosen for their score; returned in document
    order. Each option left None is ``settings.SENTENCES``'s (``top``: ``sentences``, ``budget``:
    ``sentence_tokens``)."""
    conf = settings.SENTENCES
    top = conf.sentences if top is None else top
    budget = conf.sentence_tokens if budget is None else budget
    neighbours = conf.neighbours if neighbours is None else neighbours
    min_share = conf.min_share if min_share is None else min_share
    before = conf.before if before is None else before
    drop_dominated = conf.drop_dominated if drop_dominated is None else drop_dominated
    kept: dict[int, Sentence] = {}
    used, chosen = 0, 0
    best = max((s.score for s in sentences), default=0.0)
    for i in sorted(range(len(sentences)), key=lambda i: -sentences[i].score):
        if chosen == top or sentences[i].score <= 0 or sentences[i].score < min_share * best:
            break
        if i in kept or (drop_dominated and dominated(sentences[i], kept.values())):
            continue
        group = [j for j in group_of(sentences, i, before, neighbours) if j not in kept]
        cost = sum(count_tokens(sentences[j].text) for j in group)
        if used + cost > budget:
            continue
        for j in group:
            kept[j] = sentences[j]
        used += cost
        chosen += 1
    return [kept[j] for j in sorted(kept)]


def dominated(sentence: Sentence, kept) -> bool:
    """Does a kept sentence hold every question word ``sentence`` holds, and more? (Then ``sentence`` adds no
    evidence: "the special magic number for quiet-lake" beside "the special magic number for tidy-saddle", when
    quiet-lake was asked. Sentences holding the same words, the values of one key, are not dominated.)"""
    return any(sentence.matched < k.matched for k in kept)


def format_sentences(sentences: list[Sentence]) -> str:
    """The text put into the prompt: one sentence per line (consecutive sentences of one passage on one line), each
    line's own line breaks made spaces. No label: the small backbone took a file's name on a line for content."""
    lines: list[str] = []
    last: Sentence | None = None
    for s in sentences:
        text = " ".join(s.text.split())
        if last is not None and last.passage == s.passage and last.char_end >= s.char_start - 2:
            lines[-1] += " " + text
        else:
            lines.append(text)
        last = s
    return "\n".join(lines)


def chunks_behind(sentences: list[Sentence], passages: list[Passage]) -> list[Retrieved]:
    """The chunks of the passages whose spans overlap a kept sentence, best first (each once)."""
    out: dict[int, Retrieved] = {}
    for s in sentences:
        for r in passages[s.passage].chunks:
            if r.info.char_start < s.char_end and s.char_start < r.info.char_end:
                out.setdefault(int(r.info.chunk_id), r)
    return sorted(out.values(), key=lambda r: -r.score)


def furniture_of(sources: list[dict], passages: list[Passage]) -> dict[int, list[tuple[int, int]]]:
    """``layout.furniture`` of each source the passages come from."""
    used = {p.source_index for p in passages}
    return {i: layout.furniture(sources[i]["text"], sources[i].get("pages")) for i in used}


def anchor(sentences: list[Sentence], passages: list[Passage], count: int) -> None:
    """Mark ``anchored`` the sentences holding the best ``count`` chunks the model's own search or the meaning search
    listed in places of their own (``Retrieved.found_by`` "memory" or "meaning"): what the memory found by meaning is
    read even when it shares no word with the question."""
    own = [r for p in passages for r in p.chunks if r.found_by in ("memory", "meaning")]
    own = sorted(own, key=lambda r: -r.score)[:count]
    for s in sentences:
        s.anchored = any(passages[s.passage].source == r.info.source and r.info.char_start < s.char_end
                         and s.char_start < r.info.char_end for r in own)


def with_anchors(kept: list[Sentence], sentences: list[Sentence], count_tokens: Callable[[str], int],
                 budget: int) -> list[Sentence]:
    """``kept`` and the anchored sentences it lacks (those that fit ``budget`` tokens with them), in document
    order."""
    used = sum(count_tokens(s.text) for s in kept)
    out = list(kept)
    for s in sentences:
        if s.anchored and s not in out and used + count_tokens(s.text) <= budget:
            out.append(s)
            used += count_tokens(s.text)
    return sorted(out, key=lambda s: (s.passage, s.char_start))


def narrow(found: ReadBack, question: str, count_tokens: Callable[[str], int], *, top: int | None = None,
           budget: int | None = None, neighbours: int | None = None, min_share: float | None = None,
           before: int | None = None, drop_dominated: bool | None = None,
           sources: list[dict] | None = None, anchors: int = 0) -> ReadBack:
    """``found`` cut to its best sentences for ``question`` (``choose``; options left None are
    ``settings.SENTENCES``'s), with the sentences holding the model's own ``anchors`` best chunks (``anchor``) where
    no sentence holds ``SEARCH.meaning_below`` of the question's words (``coverage``). When
    no sentence shares a word with the question (BM25 has nothing to go on) and none is anchored, ``found`` is
    returned unchanged: the whole passages are read back. ``sources``: the bank's sources, whose lines that are not
    prose (``layout.furniture``) are never read back."""
    budget = settings.SENTENCES.sentence_tokens if budget is None else budget  # the anchored sentences' too
    sentences = split(found.passages, furniture_of(sources, found.passages) if sources else None)
    score(sentences, question)
    if coverage(sentences, question) < search_settings.SEARCH.meaning_below:  # the question's words point nowhere
        anchor(sentences, found.passages, anchors)
    kept = choose(sentences, count_tokens, top=top, budget=budget, neighbours=neighbours, min_share=min_share,
                  before=before, drop_dominated=drop_dominated)
    kept = with_anchors(kept, sentences, count_tokens, budget)
    if not kept:
        return found
    chunks = chunks_behind(kept, found.passages) or found.chunks
    return ReadBack(found.passages, format_sentences(kept), chunks, kept)
