"""The Chat tab's panel: the chunks retrieved for the latest answer, each highlighted in its context."""
from __future__ import annotations

import re
from html import escape

from .common import flat, number


MODE_NOTES = {  # what each answer mode did with memory, said to the reader
    "backbone": "the backbone alone answered; memory was not used",
    "fusion": "the paper's memory layer read memory while answering",
    "read_back": "the passages below were read back into the prompt before the question (beyond the paper)",
    "read_back_hybrid": "the passages around the chunks below, found by the model's search fused with word "
                        "matching (BM25), were read back into the prompt before the question (beyond the paper)",
    "read_back_fusion": "the passages below were read back into the prompt, and the memory layer read memory too "
                        "(beyond the paper)",
    "cache": "where the answer repeats text in memory word for word, it copies what followed there (a copy path, "
             "beyond the paper); the chunks below are what the search found for the question",
    "read_back_cache": "the passages below were read back into the prompt, and the answer may copy what followed "
                       "text in them (beyond the paper)",
    "read_back_hybrid_cache": "the passages around the chunks below, found by the model's search fused with word "
                              "matching (BM25), were read back into the prompt, and the answer may copy what followed "
                              "text in them (beyond the paper)",
    "sentences_hybrid": "the sentences shown, the ones that share the most words with the question among the "
                        "passages found by the model's search fused with word matching (BM25), were read back into "
                        "the prompt before the question (beyond the paper)",
    "sentences_hybrid_cache": "the sentences shown, the ones that share the most words with the question among the "
                              "passages found by the model's search fused with word matching (BM25), were read back "
                              "into the prompt, and the answer may copy what followed text in them (beyond the paper)",
    "quote": "the answer is copied word for word from the sentence quoted below: the best of the sentences read "
             "back, which share the most words with the question among the passages found by the model's search "
             "fused with word matching (BM25) (beyond the paper)",
}


APP_MODES = {  # the answer modes the app offers (every mode stays on the CLI and the library): name -> (label, line)
    "quote": ("Quote from memory", "answers with words copied exactly from a sentence it read, and quotes that "
                                   "sentence with its page (beyond the paper)"),
    "fusion": ("Paper's memory layer (fusion)", "the SideNet's memory-augmented attention reads memory while "
                                                "answering (the paper's method)"),
    "backbone": ("Backbone alone", "the frozen language model without memory, to compare"),
}


def memory_status(tokens: int, documents: list[str]) -> str:
    """What the Chat tab says before an answer: what memory holds now."""
    if not tokens:
        return ('<div class="lm-empty">Memory is empty: answers come from the backbone alone. '
                'Read a document on the <b>Memory</b> tab first.</div>')
    names = ", ".join(documents[:3]) + (f" and {len(documents) - 3} more" if len(documents) > 3 else "")
    return (f'<div class="lm-share">Memory holds <b>{number(tokens)}</b> tokens from {escape(names)}. '
            'Ask a question: the chunks used for the answer appear here.</div>')


def quote_card(quote: dict) -> str:
    """The sentence an answer rests on, quoted exactly, with where it is."""
    return ('<div class="lm-quote"><div class="lm-quote-head">The answer rests on this sentence</div>'
            f'<blockquote>{escape(quote["text"])}</blockquote>'
            f'<div class="lm-quote-cite">{escape(quote["citation"])}</div></div>')


def literal(text: str) -> str:
    """``text`` shown as written in Markdown: its markup characters escaped."""
    return re.sub(r"([\\`*_{}\[\]<>()#+!|~-])", r"\\\1", text)


def quote_markdown(quote: dict) -> str:
    """The quote under an answer in the conversation (Markdown)."""
    return f"\n\n> \u201c{literal(quote['text'])}\u201d\n>\n> \u2014 *{literal(quote['citation'])}*"


def retrieved(result: dict, untrained: bool = False) -> str:
    """How memory was used for the latest answer, and the chunks it used, each highlighted in its text."""
    if not result.get("memory_tokens"):
        return ('<div class="lm-empty">Memory is empty, so this answer came from the backbone alone. '
                'Read a document on the <b>Memory</b> tab first.</div>')
    mode = result.get("mode", "fusion")
    head = f'<div class="lm-share">Answer mode <b>{escape(mode)}</b>: {escape(MODE_NOTES.get(mode, ""))}.'
    if mode in ("fusion", "read_back_fusion"):
        share = result.get("memory_share", 0.0) * 100
        note = " (untrained SideNet: its gate is fixed at 0.5 and retrieval is not yet tuned)" if untrained else ""
        head += (f'<br><b>{share:.0f}%</b> of the memory layer\'s output came from memory{escape(note)}.'
                 f'<div class="lm-progress-track"><div class="lm-progress-fill" style="width:{share:.1f}%"></div></div>')
    head += "</div>"
    if result.get("quote"):
        head += quote_card(result["quote"])
    if result.get("context"):
        head += ('<details class="lm-readback"><summary>Exactly what was read back into the prompt</summary>'
                 f'<div class="lm-readback-text">{escape(result["context"])}</div></details>')
    cards = []
    for rank, r in enumerate(result.get("retrieved", []), 1):
        before, after = r.get("before", ""), r.get("after", "")
        score = (f'{r["score"] * 100:.1f}% of memory attention' if mode == "fusion"
                 else f'search score {r["score"]:.3f}')
        page = f' · page {escape(str(r.get("page_label") or r["page"]))}' if r.get("page") else ""
        cards.append(
            '<div class="lm-chunk">'
            f'<div class="lm-chunk-head"><b>#{rank}</b> {escape(r["source"])}{page} · characters '
            f'{number(r["char_start"])}–{number(r["char_end"])} <span class="lm-score">{score}</span></div>'
            f'<div class="lm-context">{"…" if r["char_start"] > len(before) else ""}{escape(flat(before))}<mark>{escape(flat(r["text"]))}'
            f'</mark>{escape(flat(after))}{"…" if after else ""}</div></div>')
    if not cards:
        cards.append('<div class="lm-empty">No chunk was retrieved.</div>')
    return head + "".join(cards)
