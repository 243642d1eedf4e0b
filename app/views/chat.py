"""The Chat tab's panel: the chunks retrieved for the latest answer, each highlighted in its context."""
from __future__ import annotations

import re
from html import escape

from longmem_core.answer.answer import MODE_SPECS

from .common import flat, number


def memory_status(tokens: int, documents: list[str]) -> str:
    """What the Chat tab says before an answer: what memory holds now."""
    if not tokens:
        return ('<div class="lm-empty">Memory is empty: answers come from the backbone alone. '
                'Read a document on the <b>Memory</b> tab first.</div>')
    names = ", ".join(documents[:3]) + (f" and {len(documents) - 3} more" if len(documents) > 3 else "")
    return (f'<div class="lm-share">Memory holds <b>{number(tokens)}</b> tokens from {escape(names)}. '
            'Ask a question: the chunks used for the answer appear here.</div>')


def quote_card(quote: dict, short: bool = True) -> str:
    """The sentence an answer rests on (``short``) or that is the answer, quoted exactly, with where it is."""
    head = "The answer rests on this sentence" if short else \
        "The answer is this sentence, quoted exactly"
    return (f'<div class="lm-quote"><div class="lm-quote-head">{head}</div>'
            f'<blockquote>{escape(quote["text"])}</blockquote>'
            f'<div class="lm-quote-cite">{escape(quote["citation"])}</div></div>')


def literal(text: str) -> str:
    """``text`` shown as written in Markdown: its markup characters escaped."""
    return re.sub(r"([\\`*_{}\[\]<>()#+!|~-])", r"\\\1", text)


def quote_markdown(quote: dict) -> str:
    """The quote under an answer in the conversation (Markdown)."""
    return f"\n\n> \u201c{literal(quote['text'])}\u201d\n>\n> \u2014 *{literal(quote['citation'])}*"


def sentence_markdown(quote: dict) -> str:
    """A quoted sentence that is itself the answer, in the conversation (Markdown): the quote alone, where it is."""
    return quote_markdown(quote).lstrip()


FOUND_BY = {"hybrid": "found by words (BM25) and the memory's searches together",
            "memory": "found by the memory's own search (keys and SideNet queries)",
            "meaning": "found by the meaning search (the memory's values, trained maps)",
            "bm25": "found by words (BM25)"}


def retrieved(result: dict, untrained: bool = False) -> str:
    """How memory was used for the latest answer, and the chunks it used, each highlighted in its text."""
    if not result.get("memory_tokens"):
        return ('<div class="lm-empty">Memory is empty, so this answer came from the backbone alone. '
                'Read a document on the <b>Memory</b> tab first.</div>')
    mode = result.get("mode", "fusion")
    spec = MODE_SPECS.get(mode)  # what the mode says it did (``longmem_core.answer.Mode``)
    head = f'<div class="lm-share">Answer mode <b>{escape(mode)}</b>: {escape(spec.note if spec else "")}.'
    if spec is not None and spec.fusion:
        share = result.get("memory_share", 0.0) * 100
        note = " (untrained SideNet: its gate is fixed at 0.5 and retrieval is not yet tuned)" if untrained else ""
        head += (f'<br><b>{share:.0f}%</b> of the memory layer\'s output came from memory{escape(note)}.'
                 f'<div class="lm-progress-track"><div class="lm-progress-fill" style="width:{share:.1f}%"></div></div>')
    head += "</div>"
    if result.get("quote"):
        head += quote_card(result["quote"], result.get("short", True))
    if result.get("context"):
        head += ('<details class="lm-readback"><summary>Exactly what was read back into the prompt</summary>'
                 f'<div class="lm-readback-text">{escape(result["context"])}</div></details>')
    cards = []
    for rank, r in enumerate(result.get("retrieved", []), 1):
        before, marked, after = whole_words(r.get("before", ""), r["text"], r.get("after", ""))
        score = (f'{r["score"] * 100:.1f}% of memory attention' if spec is not None and spec.attends
                 else f'search score {r["score"]:.3f}')
        page = f' · page {escape(str(r.get("page_label") or r["page"]))}' if r.get("page") else ""
        found = FOUND_BY.get(r.get("found_by", ""))
        score += f" · {found}" if found else ""
        cards.append(
            '<div class="lm-chunk">'
            f'<div class="lm-chunk-head"><b>#{rank}</b> {escape(r["source"])}{page} · characters '
            f'{number(r["char_start"])}–{number(r["char_end"])} <span class="lm-score">{score}</span></div>'
            f'<div class="lm-context">{"…" if r["char_start"] > len(before) else ""}{escape(flat(before))}<mark>{escape(flat(marked))}'
            f'</mark>{escape(flat(after))}{"…" if after else ""}</div></div>')
    if not cards:
        cards.append('<div class="lm-empty">No chunk was retrieved.</div>')
    return head + "".join(cards)


def whole_words(before: str, text: str, after: str) -> tuple[str, str, str]:
    """A retrieved chunk's text with the context around it, the chunk widened to whole words for display: a chunk is
    a run of tokens, which can start or end inside a word (".7 (body" of "scale=0.7 (body"); the mark then covers
    the words it touches."""
    lead = before.split()[-1] if before.split() and before[-1:].strip() and text[:1].strip() else ""
    trail = after.split()[0] if after.split() and after[:1].strip() and text[-1:].strip() else ""
    return before[:len(before) - len(lead)], lead + text + trail, after[len(trail):]
