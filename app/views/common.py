"""What every panel shares: numbers, a progress bar, a one-line status, flattened text, the source colours.

Pure functions of plain values; every piece of user or document text is escaped.
"""
from __future__ import annotations

import re
from html import escape

SOURCE_COLORS = ["#2563eb", "#16a34a", "#d97706", "#9333ea", "#dc2626", "#0891b2", "#db2777", "#65a30d"]


def number(n: float) -> str:
    return f"{n:,.0f}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "estimating time left…"
    seconds = max(0, round(seconds))
    return f"~{seconds // 60} min {seconds % 60:02d} s left" if seconds >= 60 else f"~{seconds} s left"


def progress_bar(fraction: float, title: str, detail: str = "") -> str:
    pct = max(0.0, min(1.0, fraction)) * 100
    return (f'<div class="lm-progress"><div class="lm-progress-head"><b>{escape(title)}</b>'
            f'<span>{escape(detail)}</span></div><div class="lm-progress-track">'
            f'<div class="lm-progress-fill" style="width:{pct:.1f}%"></div></div></div>')


def status(kind: str, message: str) -> str:
    """A one-line notice; kind is ok, info, warn or error."""
    icon = {"ok": "✓", "info": "ℹ", "warn": "■", "error": "✕"}.get(kind, "")
    return f'<div class="lm-status lm-{kind}"><span>{icon}</span> {escape(message)}</div>'


def flat(text: str) -> str:
    """Runs of whitespace (newlines too) as one space, so the text reads as a paragraph."""
    return re.sub(r"\s+", " ", text)
