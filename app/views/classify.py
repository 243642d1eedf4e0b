"""The Classify tab's panels: one text's predictions with the demonstrations memory weighted, and accuracy."""
from __future__ import annotations

from html import escape

from .common import number, status


def classification(result: dict) -> str:
    """A text's prediction with memory and in context only, and the demonstrations memory weighted most."""
    same = result["label"] == result["label_in_context_only"]
    head = (f'<div class="lm-cards"><div class="lm-card"><small>With memory ({number(result["demonstrations"])} '
            f'demonstrations) + {result["k"]} in context</small><b>{escape(result["label"])}</b></div>'
            f'<div class="lm-card"><small>In context only ({result["k"]} demonstrations)</small>'
            f'<b>{escape(result["label_in_context_only"])}</b></div></div>'
            + ("" if same else '<div class="lm-status lm-info">ℹ Memory changed the prediction.</div>'))
    rows = "".join(
        f'<div class="lm-chunk"><div class="lm-chunk-head"><b>{escape(d["label"])}</b>'
        f'<span class="lm-score">{d["share"] * 100:.1f}% of memory attention</span></div>'
        f'<div class="lm-context">{escape(d["text"])}</div></div>' for d in result["retrieved"])
    return head + '<h4>Demonstrations retrieved from memory</h4>' + (rows or '<div class="lm-empty">None.</div>')


def accuracy(result: dict) -> str:
    if not result["labelled"]:
        return status("info", f"Classified {result['n']} texts. The file has no label column, so there is no accuracy.")
    note = (f" Labels not among the demonstrations' ({', '.join(result['unknown_labels'])}) always count as wrong."
            if result["unknown_labels"] else "")
    return (f'<div class="lm-cards"><div class="lm-card"><small>Accuracy with memory</small>'
            f'<b>{result["accuracy_memory"] * 100:.1f}%</b></div><div class="lm-card"><small>Accuracy in context only'
            f'</small><b>{result["accuracy_context"] * 100:.1f}%</b></div><div class="lm-card"><small>Test texts</small>'
            f'<b>{result["n"]}</b></div></div><div class="lm-legend">Same {result["k"]} demonstrations in context for '
            f'every text; memory holds all {number(result["demonstrations"])} demonstrations.{escape(note)}</div>')
