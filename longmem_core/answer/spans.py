"""Answers copied from what was read (beyond the paper): the span of a read-back sentence the backbone finds most
likely as the whole answer.

The small backbone copies well but reads poorly: asked to answer in its own words it often copies a run-on line,
stops mid-sentence or misreads ("as_numeric()" for ``as.numeric(as.character(f))``). Here it does not write the
answer; it scores candidates. Every span of one to ``settings.SPANS.max_span_words`` words of the best read-back
sentences (not starting or ending on a stop word, not made only of the question's words) is a candidate answer,
scored by

    log P(span | prompt, opening) + log P(the answer ends right after it)

where the end is one of a few closing tokens (a stop, a comma, a line break, the end of the turn): the span must
be likely *and* complete. The winner is copied exactly, character for character, from the source; its sentence is
the quote. Pointer-style extraction (as in pointer networks and extractive QA), with the frozen backbone as the
scorer: no training.

All candidates starting at one word share one row (their log-probabilities are prefix sums of the row's), and all
rows are read in one batch after the prompt, read once.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import torch

from ..documents import layout
from ..model.kv_cache import ModelCaches
from ..model.model import LongMemModel
from ..model.prompts import stop_token_ids
from . import settings
from .sentences import Sentence

# The longest span, the sentences whose spans are candidates, a per-word bonus, a row's tokens: settings.SPANS
ROWS_AT_ONCE = 16  # rows read in one batch (each holds its own copy of the prompt's keys and values): bounds memory
# tokens that close an answer: what may follow a complete span
CLOSERS = (".", ",", ";", "!", "?", "\n", ".\n", ")")
_WORD = re.compile(r"\S+")
_PLAIN = re.compile(r"[^\W_]+")
_NUMBERING = re.compile(r"^(?:\d+\.)+\d*$")  # "3.5", "7.26", "4.": a section's number where it opens a line
# a pointer to another part of the document, with its title and page where given ("Section 4.3.1 [The Set Builtin],
# page 67", "Chapter 7", "page 44"): where to read, not what it says. No part of one is an answer.
_CROSS_REFERENCE = re.compile(r"\b(?i:see\s+)?(?i:section|chapter|figure|table|appendix)\s+"
                              r"(?:\d+(?:\.\d+)*|[A-Z](?:\.\d+)*)\b"
                              r"(?:\s*\[[^\]]{0,80}\])?(?:,?\s*(?i:on\s+)?(?i:page)\s+\d+)?"
                              r"|\b(?i:see\s+)?(?i:page|pages|p\.|pp\.)\s*\d+(?:\s*[-\u2013]\s*\d+)?")


@dataclass
class Span:
    """An answer copied from a read-back sentence."""

    sentence: Sentence
    text: str  # as in the source, each run of spaces and line breaks one space
    char_start: int  # span in the source text, [start, end)
    char_end: int
    score: float  # log P(span, then an end)
    likely: float = 0.0  # log P(span) alone
    closes: float = 0.0  # log P(an end right after it)


_OPENERS = "\"'\u201c\u2018([{<"
_CLOSING = "\"'\u201d\u2019)]}>.,;:!?"


def _core(word: str) -> tuple[int, int]:
    """[a, b) of ``word`` without quotes, brackets and stops at its edges; a closing bracket that closes one
    opened inside the word stays ("as.numeric(as.character(f))." -> "as.numeric(as.character(f))")."""
    a, b = 0, len(word)
    while a < b - 1 and word[a] in _OPENERS:
        a += 1
    while b > a + 1 and word[b - 1] in _CLOSING:
        pair = {")": "(", "]": "[", "}": "{"}.get(word[b - 1])
        if pair and word[a:b].count(pair) >= word[a:b].count(word[b - 1]):
            break
        b -= 1
    return a, b


def _opens_line(text: str, i: int) -> bool:
    """Does position ``i`` of ``text`` open a line (only spaces or tabs before it on its line)?"""
    j = i - 1
    while j >= 0 and text[j] in " \t":
        j -= 1
    return j < 0 or text[j] == "\n"


def _plain_words(text: str) -> set[str]:
    return {w for w in _PLAIN.findall(text.lower())}


def closers(model: LongMemModel) -> list[int]:
    """Token ids that close an answer (``CLOSERS`` that are one token, and the tokens that end a turn)."""
    out = set(stop_token_ids(model.tokenizer))
    for text in CLOSERS:
        ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) == 1:
            out.add(ids[0])
    return sorted(out)


def _balanced_end(word: str, end: int, span: str) -> int:
    """``end`` (in ``word``) moved past the closing brackets or quotes ``span`` opened and the word closes right
    after it ("3.0 (quilt" -> "3.0 (quilt)")."""
    for opener, closer in (("(", ")"), ("[", "]"), ("\u201c", "\u201d")):
        while end < len(word) and word[end] == closer and span.count(opener) > span.count(closer):
            span, end = span + closer, end + 1
    if end < len(word) and word[end] == '"' and span.count('"') % 2:
        end += 1
    return end


def _on_heading(source: str, i: int) -> bool:
    """Is position ``i`` of ``source`` on a numbered section heading's line ("3.5 devscripts")?"""
    lo = source.rfind("\n", 0, i) + 1
    hi = source.find("\n", i)
    return layout.is_heading(source[lo:hi if hi >= 0 else len(source)])


def _rows(sentences: list[Sentence], question: str, stop: frozenset[str], source_of: Callable[[Sentence], str]):
    """Per candidate start word: (sentence, the row's text, [(end char in the row, span start, span end in the
    source)] for every span starting there that may answer). The row's text is the sentence's words joined by
    single spaces, as the prompt shows them (a line break inside an answer, "radar\ncharts", is a space there)."""
    asked = _plain_words(question) | stop
    for s in sentences:
        source = source_of(s)
        raw = source[s.char_start:s.char_end]
        offset = s.char_start + max(0, raw.find(s.text))
        words = [(m.start(), m.end()) for m in _WORD.finditer(s.text)]
        flat_at, at = [], 0  # where each word starts in the words joined by single spaces
        for a0, a1 in words:
            flat_at.append(at)
            at += a1 - a0 + 1
        flat = " ".join(s.text[a0:a1] for a0, a1 in words)
        pointers = [(m.start(), m.end()) for m in _CROSS_REFERENCE.finditer(flat)]  # [start, end) in ``flat``
        for i, (a0, a1) in enumerate(words):
            ca, _ = _core(s.text[a0:a1])
            first = s.text[a0 + ca:a1]
            if not _plain_words(first) or _plain_words(first) <= stop:
                continue
            if _on_heading(source, offset + a0):
                continue  # a heading names a section; it does not answer
            last = min(len(words), i + settings.SPANS.max_span_words)  # a row holds every span starting at word i
            row_start = flat_at[i] + ca
            ends = []
            for j in range(i, last):
                b0, b1 = words[j]
                word = s.text[b0:b1]
                _, cb = _core(word)
                cb = _balanced_end(word, cb, flat[row_start:flat_at[j] + cb])
                end = flat_at[j] + cb
                span = flat[row_start:end]
                tail = word[:cb]
                if not _plain_words(span) - asked or (_plain_words(tail) and _plain_words(tail) <= stop):
                    continue
                if _NUMBERING.match(span) and _opens_line(source, offset + a0 + ca):
                    continue  # a heading's number, not an answer
                if any(x < end and row_start < y for x, y in pointers):
                    continue  # a cross-reference, or part of one
                ends.append((end - row_start, offset + a0 + ca, offset + b0 + cb))
            if ends:
                yield s, flat[row_start:flat_at[last - 1] + words[last - 1][1] - words[last - 1][0]], ends


@torch.no_grad()
def score_spans(model: LongMemModel, prompt_ids: list[int], sentences: list[Sentence], question: str,
                stop: frozenset[str], source_of: Callable[[Sentence], str]) -> list[Span]:
    """Every candidate span of the best-scored ``sentences`` that offer one (``settings.SPANS.sentences`` at most,
    those within ``settings.SPANS.sentence_share`` of the best of them) and of the anchored ones, scored as the whole
    answer after ``prompt_ids`` (which end where the answer begins). ``source_of``: the source text a sentence's span
    indexes."""
    conf = settings.SPANS
    # a sentence that offers no candidate (a heading's line, only the question's own words) is passed over: the
    # best of the others are the candidates, not none ("I did not find this" with the answer read back)
    offering = [s for s in sorted(sentences, key=lambda s: -s.score)
                if next(_rows([s], question, stop, source_of), None) is not None]
    chosen = offering[:conf.sentences]
    chosen = [s for s in chosen if s.score >= conf.sentence_share * chosen[0].score] if chosen else []
    chosen += [s for s in sentences if s.anchored and s not in chosen]  # what the memory found by meaning
    rows = list(_rows(chosen, question, stop, source_of))
    tok = model.tokenizer
    encoded = []  # per row: token ids, and per candidate end the number of row tokens it takes
    for s, text, ends in rows:
        enc = tok(" " + text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"][:conf.row_tokens], enc["offset_mapping"][:conf.row_tokens]
        cuts = []
        for end, a, b in ends:
            n = next((k for k, (_, e) in enumerate(offsets) if e >= end + 1), None)  # +1: the leading space
            if n is not None and offsets[n][1] == end + 1:
                cuts.append((n + 1, a, b))
        if cuts:
            encoded.append((s, ids, cuts))
    if not encoded:
        return []
    # the prompt but its last token read once; then every row from that last token, in batches
    caches = ModelCaches.empty(model, max_length=len(prompt_ids) + conf.row_tokens + 1)
    model.backbone(torch.tensor([prompt_ids[:-1]], device=model.device), caches=caches.backbone)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    close = torch.tensor(closers(model), device=model.device)
    out: list[Span] = []
    for lo in range(0, len(encoded), ROWS_AT_ONCE):
        part = encoded[lo:lo + ROWS_AT_ONCE]
        width = 1 + max(len(ids) for _, ids, _ in part)
        batch = torch.full((len(part), width), pad, dtype=torch.long, device=model.device)
        for r, (_, ids, _) in enumerate(part):
            batch[r, :1 + len(ids)] = torch.tensor(prompt_ids[-1:] + ids)
        rows_cache = caches.expand(len(prompt_ids) - 1, len(part))
        hidden = model.backbone(batch, caches=rows_cache.backbone).hidden_states[-1]  # [R, width, W]
        for r, (s, ids, cuts) in enumerate(part):
            logp = torch.log_softmax(model.backbone.logits(hidden[r:r + 1, :len(ids) + 1])[0].float(), -1)  # [n+1, V]
            taken = logp[torch.arange(len(ids)), torch.tensor(ids)].cumsum(0)  # [n] log P(its first k tokens)
            ended = torch.logsumexp(logp[1:len(ids) + 1][:, close], dim=-1)  # [n] log P(a close after k tokens)
            out += [Span(s, (t := " ".join(source_of(s)[a:b].split())), a, b,
                         float(taken[n - 1] + ended[n - 1]) + conf.word_bonus * len(t.split()),
                         float(taken[n - 1]), float(ended[n - 1])) for n, a, b in cuts]
    return out


def answer_span(model: LongMemModel, prompt_ids: list[int], sentences: list[Sentence], question: str,
                stop: frozenset[str], source_of: Callable[[Sentence], str]) -> tuple[Span | None, bool]:
    """The candidate span (``score_spans``) most likely as the whole answer (None when no sentence offers one), and
    whether the backbone is sure of it: the only candidate, or more likely than every other by
    ``settings.SPANS.sure_margin`` (a log-probability). When it is not, the answer is the span's whole sentence:
    the 135M backbone picks a wrong word of a right sentence about half the time, and the sentence itself holds
    the answer far more often (beyond the paper)."""
    ranked = sorted(score_spans(model, prompt_ids, sentences, question, stop, source_of), key=lambda sp: -sp.score)
    if not ranked:
        return None, False
    return ranked[0], len(ranked) == 1 or ranked[0].score - ranked[1].score >= settings.SPANS.sure_margin
