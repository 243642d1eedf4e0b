"""The Classify tab's panels: one text's predictions by mode with the demonstrations behind them, and accuracy."""
from __future__ import annotations

from html import escape

from longmem_core import icl_modes

from .common import number, status


def default_mode_legend(k: int, demonstrations: int) -> str:
    """The default mode in plain words (beyond the paper), with its mixing weight."""
    w = round(icl_modes.MIX_WEIGHT * 100)
    return (f"Default mode (beyond the paper, training-free): each label's average memory key over all "
            f"{number(demonstrations)} demonstrations is compared with the text's key ({w}%), mixed with the "
            f"{k}-shot in-context label scores calibrated against content-free inputs such as \"N/A\" ({100 - w}%).")


def _card(title: str, label: str) -> str:
    return f'<div class="lm-card"><small>{escape(title)}</small><b>{escape(label)}</b></div>'


def classification(result: dict) -> str:
    """A text's prediction in the default mode, in context only and with the paper's memory layer, the
    demonstrations nearest in memory and those the memory layer weighted most."""
    k, n = result["k"], result["demonstrations"]
    head = ('<div class="lm-cards">'
            + _card(f"Default: {result['mode_name']} (beyond the paper)", result["label"])
            + _card(f"In context only ({k} random demonstrations)", result["label_in_context_only"])
            + _card(f"Paper: memory layer ({number(n)} demonstrations) + {k} in context", result["label_memory"])
            + f'</div><div class="lm-legend">{escape(default_mode_legend(k, n))}</div>'
            + ("" if result["label"] == result["label_in_context_only"] else
               '<div class="lm-status lm-info">ℹ The default mode changed the in-context prediction.</div>'))
    nearest = "".join(
        f'<div class="lm-chunk"><div class="lm-chunk-head"><b>{escape(d["label"])}</b>'
        f'<span class="lm-score">cosine {d["cosine"]:.2f}</span></div>'
        f'<div class="lm-context">{escape(d["text"])}</div></div>' for d in result["nearest"])
    weighted = "".join(
        f'<div class="lm-chunk"><div class="lm-chunk-head"><b>{escape(d["label"])}</b>'
        f'<span class="lm-score">{d["share"] * 100:.1f}% of memory attention</span></div>'
        f'<div class="lm-context">{escape(d["text"])}</div></div>' for d in result["retrieved"])
    empty = '<div class="lm-empty">None.</div>'
    return (head + '<h4>Demonstrations nearest in memory (centred keys; the centroids are their averages)</h4>'
            + (nearest or empty)
            + '<details><summary>Demonstrations retrieved by the paper\'s memory layer</summary>'
            + (weighted or empty) + '</details>')


def accuracy(result: dict) -> str:
    if not result["labelled"]:
        return status("info", f"Classified {result['n']} texts. The file has no label column, so there is no accuracy.")
    note = (f" Labels not among the demonstrations' ({', '.join(result['unknown_labels'])}) always count as wrong."
            if result["unknown_labels"] else "")
    k, n = result["k"], result["demonstrations"]
    cards = [(f"Default: {result['mode_name']} (beyond the paper)", result["accuracy_default"]),
             (f"In context only ({k} random)", result["accuracy_context"]),
             ("Paper: memory layer", result["accuracy_memory"]),
             (f"Vote of the {icl_modes.NEIGHBOURS} nearest in memory", result["accuracy_knn"])]
    return ('<div class="lm-cards">' + "".join(_card(title, f"{value * 100:.1f}%") for title, value in cards)
            + _card("Test texts", str(result["n"])) + '</div>'
            + f'<div class="lm-legend">Same {k} demonstrations in context for every text; memory holds all '
              f'{number(n)} demonstrations. {escape(default_mode_legend(k, n))}{escape(note)}</div>')
