"""The Chat tab's panel: the chunks retrieved for the latest answer, each highlighted in its context."""
from __future__ import annotations

from html import escape

from .common import flat, number


def retrieved(result: dict, untrained: bool = False) -> str:
    """The chunks the SideNet attended to while answering, each highlighted in its surrounding text."""
    if not result.get("memory_tokens"):
        return ('<div class="lm-empty">Memory is empty, so this answer came from the backbone alone. '
                'Read a document on the <b>Memory</b> tab first.</div>')
    share = result.get("memory_share", 0.0) * 100
    note = " (untrained SideNet: its gate is fixed at 0.5 and retrieval is not yet tuned)" if untrained else ""
    head = (f'<div class="lm-share"><b>{share:.0f}%</b> of the memory layer\'s output came from memory{escape(note)}.'
            f'<div class="lm-progress-track"><div class="lm-progress-fill" style="width:{share:.1f}%"></div></div></div>')
    cards = []
    for rank, r in enumerate(result.get("retrieved", []), 1):
        before, after = r.get("before", ""), r.get("after", "")
        cards.append(
            '<div class="lm-chunk">'
            f'<div class="lm-chunk-head"><b>#{rank}</b> {escape(r["source"])} · characters {number(r["char_start"])}–'
            f'{number(r["char_end"])} <span class="lm-score">{r["score"] * 100:.1f}% of memory attention</span></div>'
            f'<div class="lm-context">{"…" if r["char_start"] > len(before) else ""}{escape(flat(before))}<mark>{escape(flat(r["text"]))}'
            f'</mark>{escape(flat(after))}{"…" if after else ""}</div></div>')
    if not cards:
        cards.append('<div class="lm-empty">No chunk was retrieved.</div>')
    return head + "".join(cards)
