"""The Memory tab's panels: reading progress, what was read, and the bank's summary cards."""
from __future__ import annotations

from html import escape

from .common import SOURCE_COLORS, duration, number, progress_bar, status


def memorize_progress(p) -> str:
    """A MemorizeProgress as a bar: tokens (and pages) read and time left; then the search index being built."""
    if p.stage == "indexing":
        return progress_bar(1.0, "Preparing the search", f"word index over {number(p.total)} tokens · "
                                                         "ask as soon as this line goes")
    doc = f" (document {p.index + 1} of {p.count})" if p.count > 1 else ""
    pages = f"page {number(p.pages)} of {number(p.page_count)} · " if p.page_count else ""
    return progress_bar(p.done / max(p.total, 1), f"Reading {p.name}{doc}",
                        f"{pages}{number(p.done)} / {number(p.total)} tokens · {duration(p.eta)}")


def drops(items: list[dict]) -> str:
    """What was dropped from memory or left unread, by document and page ("all of a.pdf (pages 1–37)")."""
    out = []
    for d in items:
        if d.get("whole"):
            what = f"all of {d['name']}"
        else:
            part = "first" if d.get("first", True) else "last"
            what = f"the {part} {number(d['tokens'])} tokens of {d['name']}" if d.get("tokens") else f"part of {d['name']}"
        out.append(what + (f" (pages {d['pages']})" if d.get("pages") else ""))
    return "; ".join(out)


def memorize_done(report, stats: dict) -> str:
    parts = [f"{d['name']}: {number(d['tokens'])} tokens in {d['seconds']:.1f} s" for d in report.documents]
    lost = ""
    if report.dropped:
        lost += f" To make room, first in, first out, memory dropped {drops(report.dropped)}."
    if report.not_read:
        lost += f" Memory was full: not read: {drops(report.not_read)}."
    if report.stopped:
        return status("warn", "Stopped. " + ("Read before stopping: " + "; ".join(parts) + "." if parts else
                                             "What was read of the current document stays in memory.") + lost)
    if not parts:
        return status("warn", "Nothing was read." + lost)
    kind = "warn" if lost else "ok"
    ready = f" Search prepared in {report.index_seconds:.1f} s." if report.index_seconds >= 1 else ""
    return status(kind, "Read into memory: " + "; ".join(parts) + "." + lost + ready + " Ask about it on the Chat tab.")


def download_link(link: str, name: str) -> str:
    """The one-time link to a saved bank (``app/downloads.py``)."""
    return (f'<div class="lm-status lm-ok"><a href="{escape(link)}" download="{escape(name)}">Download {escape(name)}'
            '</a> <small>(the link works once; it holds the documents you read, whole)</small></div>')


SEARCH_NAMES = {"flat": "exact", "ivf": "approximate (IVF)"}  # a bank's index kind, as the cards name it


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB" if n < 1e9 else f"{n / 1e9:,.2f} GB"


def bank_summary(stats: dict) -> str:
    """Cards: tokens, pages, RAM, chunks, capacity used, and the sources with their chunk counts and what of each
    was dropped."""
    if not stats["tokens"]:
        return ('<div class="lm-empty">Memory is empty. Upload a document or pick a bundled example, '
                'then press <b>Read into memory</b>.</div>')
    used = stats["used"] * 100
    items = []
    for i, s in enumerate(stats["sources"]):
        pages = (f" · {number(s['pages_in_memory'])} of {number(s['pages'])} pages" if s.get("pages") else "")
        dropped = s.get("dropped")
        lost = ""
        if dropped:
            lost = (' <small class="lm-dropped">dropped whole</small>' if dropped["whole"] else
                    f' <small class="lm-dropped">first {number(dropped["tokens"])} tokens dropped'
                    + (f' (pages {escape(dropped["pages"])})' if dropped.get("pages") else "") + "</small>")
        items.append(f'<li><span class="lm-dot" style="background:{SOURCE_COLORS[i % len(SOURCE_COLORS)]}"></span>'
                     f'{escape(s["name"])} <small>{number(s["chunks"])} chunks{pages}</small>{lost}</li>')
    ram = stats.get("ram_bytes") or stats.get("bytes") or 0
    pages_card = (f'<div class="lm-card"><small>Pages in memory</small><b>{number(stats["pages"])}</b></div>'
                  if stats.get("pages") else "")
    return (
        '<div class="lm-cards">'
        f'<div class="lm-card"><small>Tokens in memory</small><b>{number(stats["tokens"])}</b></div>'
        + pages_card +
        f'<div class="lm-card"><small>RAM used by memory</small><b>{_mb(ram)}</b>'
        f'<small>{number(ram / max(stats["tokens"], 1))} bytes a token · '
        f'{SEARCH_NAMES.get(stats.get("index"), "exact")} search</small></div>'
        f'<div class="lm-card"><small>Chunks ({stats["chunk_size"]} tokens each)</small><b>{number(stats["chunks"])}</b></div>'
        f'<div class="lm-card"><small>Capacity used</small><b>{used:.1f}%</b>'
        f'<div class="lm-progress-track"><div class="lm-progress-fill" style="width:{min(used, 100):.1f}%"></div></div>'
        f'<small>of {number(stats["capacity"])} tokens; memory grows as it reads, and nothing is dropped beyond it '
        'without asking you</small></div>'
        f'<div class="lm-card lm-wide"><small>Sources</small><ul class="lm-sources">{"".join(items)}</ul></div>'
        '</div>')
