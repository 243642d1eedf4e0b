"""The Classify tab's panels: one text's predictions by mode with the demonstrations behind them, and accuracy."""
from __future__ import annotations

from html import escape

from longmem_core.classify import settings as classify_settings

from .common import number, status


EXPERT_NAMES = {"context_cal": "calibrated in-context scores", "centroid": "memory's label centroids",
                "knn": "vote of the nearest demonstrations in memory"}


def default_mode_legend(k: int, demonstrations: int, selection: dict | None = None) -> str:
    """The default mode in plain words (beyond the paper): what it learned, or the mix it uses."""
    w = round(classify_settings.MODE.mix_weight * 100)
    mix = (f"each label's average memory key over all {number(demonstrations)} demonstrations is compared with the "
           f"text's key ({w}%), mixed with the {k}-shot in-context label scores calibrated against content-free "
           f"inputs such as \"N/A\" ({100 - w}%)")
    if selection is None:
        return f"Default mode (beyond the paper, training-free): {mix}."
    if not selection.get("weights"):  # nothing could be held out
        return f"Default mode (beyond the paper, training-free): {selection['chosen']}: {mix}."
    how = (f"before the first text, {selection['held_out']} demonstrations held out of memory (none of those in the "
           f"prompt) were classified three ways: by the {k}-shot in-context label scores calibrated against "
           "content-free inputs such as \"N/A\", by each label's average memory key over all "
           f"{number(demonstrations)} demonstrations, and by a vote of the nearest demonstrations in memory. How much "
           "each counts was learned from them")
    return f"Default mode (beyond the paper, training-free model, weights learned from your demonstrations): {how}."


def _weights(selection: dict) -> str:
    """The learned combination's weights as fitted (each multiplies a score of its own scale: a guide only)."""
    weights = selection.get("weights") or {}
    if not weights:
        return ""
    parts = ", ".join(f"{EXPERT_NAMES.get(e, e)} {w:.2f}" for e, w in weights.items())
    return f'<div class="lm-legend">Learned weights: {escape(parts)} (each multiplies a score of its own scale).</div>'


def selection_panel(selection: dict | None, added: str = "") -> str:
    """How the default classifies these demonstrations: the learned combination's weights, its and each single
    mode's accuracy and macro-F1 on the held-out demonstrations, a warning when that rests on few examples,
    and what learning it cost."""
    if selection is None:
        return ""
    def name(mode: str) -> str:
        shown = "learned combination (held out one at a time)" if mode == "combined" else mode
        return f"<b>{escape(shown)} (used)</b>" if mode == selection["chosen"] else escape(shown)
    rows = "".join(f"<tr><td>{name(m)}</td><td>{a * 100:.0f}%</td><td>{selection['macro_f1'][m] * 100:.0f}%</td></tr>"
                   for m, a in sorted(selection["accuracy"].items(), key=lambda kv: -kv[1]))
    table = (f'<table class="lm-table"><tr><th>mode</th><th>held-out accuracy</th><th>macro-F1</th></tr>{rows}'
             '</table>') if rows else ""
    warn = "" if not selection["few"] else status(
        "warn", f"The choice rests on few examples ({selection['demonstrations']} demonstrations, "
                f"{selection['held_out']} held out): it may not hold on your texts.")
    used = "the learned combination" if selection["chosen"] == "combined" else selection["chosen"]
    return (f'<h4>How the default classifies: {escape(used)}</h4>'
            f'<div class="lm-legend">{escape(selection["reason"])}. Learning it took {selection["seconds"]:.1f} s, '
            f'once for this demonstration set{escape(added)}.</div>' + _weights(selection) + warn + table)


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
            + f'</div><div class="lm-legend">{escape(default_mode_legend(k, n, result.get("selection")))}</div>'
            + ("" if result["label"] == result["label_in_context_only"] else
               '<div class="lm-status lm-info">ℹ The default mode changed the in-context prediction.</div>')
            + selection_panel(result.get("selection")))
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
             (f"Vote of the {classify_settings.MODE.neighbours} nearest in memory", result["accuracy_knn"])]
    chosen = result.get("selection")
    added = (f"; classifying the {result['n']} texts took {result['seconds']:.1f} s in every mode shown, so learning "
             f"added {result['added_time'] * 100:.0f}%" if chosen and result.get("added_time") is not None else "")
    return ('<div class="lm-cards">' + "".join(_card(title, f"{value * 100:.1f}%") for title, value in cards)
            + _card("Test texts", str(result["n"])) + '</div>'
            + f'<div class="lm-legend">Same {k} demonstrations in context for every text; memory holds all '
              f'{number(n)} demonstrations. {escape(default_mode_legend(k, n, chosen))}{escape(note)}</div>'
            + selection_panel(chosen, added))
