"""The Memory tab's panels: reading progress, what was read, and the bank's summary cards."""
from __future__ import annotations

from html import escape

from .common import SOURCE_COLORS, duration, number, progress_bar, status


def memorize_progress(p) -> str:
    """A MemorizeProgress as a bar: tokens read and time left."""
    doc = f" (document {p.index + 1} of {p.count})" if p.count > 1 else ""
    return progress_bar(p.done / max(p.total, 1), f"Reading {p.name}{doc}",
                        f"{number(p.done)} / {number(p.total)} tokens · {duration(p.eta)}")


def memorize_done(report, stats: dict) -> str:
    parts = [f"{d['name']}: {number(d['tokens'])} tokens in {d['seconds']:.1f} s" for d in report.documents]
    full = (f" Memory is full ({number(stats['capacity'])} tokens): the oldest chunks were dropped."
            if stats.get("capacity") and stats["used"] >= 1 else "")
    if report.stopped:
        return status("warn", "Stopped. " + ("Read before stopping: " + "; ".join(parts) + "." if parts else
                                             "What was read of the current document stays in memory.") + full)
    return status("ok", "Read into memory: " + "; ".join(parts) + "." + full + " Ask about it on the Chat tab.")


def download_link(link: str, name: str) -> str:
    """The one-time link to a saved bank (``app/downloads.py``)."""
    return (f'<div class="lm-status lm-ok"><a href="{escape(link)}" download="{escape(name)}">Download {escape(name)}'
            '</a> <small>(the link works once; it holds the documents you read, whole)</small></div>')


def bank_summary(stats: dict) -> str:
    """Cards: tokens, chunks, capacity used, and the sources with their chunk counts."""
    if not stats["tokens"]:
        return ('<div class="lm-empty">Memory is empty. Upload a document or pick a bundled example, '
                'then press <b>Read into memory</b>.</div>')
    used = stats["used"] * 100
    sources = "".join(
        f'<li><span class="lm-dot" style="background:{SOURCE_COLORS[i % len(SOURCE_COLORS)]}"></span>'
        f'{escape(s["name"])} <small>{number(s["chunks"])} chunks</small></li>'
        for i, s in enumerate(stats["sources"]))
    return (
        '<div class="lm-cards">'
        f'<div class="lm-card"><small>Tokens in memory</small><b>{number(stats["tokens"])}</b></div>'
        f'<div class="lm-card"><small>Chunks ({stats["chunk_size"]} tokens each)</small><b>{number(stats["chunks"])}</b></div>'
        f'<div class="lm-card"><small>Capacity used</small><b>{used:.1f}%</b>'
        f'<div class="lm-progress-track"><div class="lm-progress-fill" style="width:{min(used, 100):.1f}%"></div></div>'
        f'<small>of {number(stats["capacity"])} tokens; oldest chunks are dropped beyond it</small></div>'
        f'<div class="lm-card lm-wide"><small>Sources</small><ul class="lm-sources">{sources}</ul></div>'
        '</div>')
