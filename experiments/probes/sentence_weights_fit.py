"""Probe (issue 24): does weighing the read-back sentences' BM25 scores pick a sentence holding the answer more often?

Two weights, offline, on the sentences ``quote_next_sentences.py collect`` recorded (every sentence of the passages
read back, its BM25 score, whether it holds an answer), seven tuning PDFs:
- a sentence that is mostly code or a table (its share of plain words under ``th``) times 0.5;
- for a question asking for a quantity ("how long", "what size"), a sentence holding a digit times 1 + ``beta``.
Counted: the best-weighted sentence holds an answer; the approximate read-back (the 6 best at half the best score or
more) holds one. Chosen: th 0.3, beta 0.5 (``settings.SENTENCES``); the shipped question pattern
(``sentences._QUANTITY``) adds a few more wordings ("how high", "what width"). End to end (``quote_next_sentences.py
collect``, runs ``quote_next_sentences_weighted_*.json``): 112 of 140 right against 108.

    PYTHONPATH=. .venv/bin/python experiments/probes/sentence_weights_fit.py \
        experiments/results/runs/quote_next_sentences_after_*.json
"""
from __future__ import annotations

import json
import re
import sys

PLAIN = re.compile(r"^[(\"'\u2018\u201c]?[A-Za-z][a-z'\u2019-]*[,.;:)\"'\u2019\u201d]*$")
QUANTITY = re.compile(r"\b(how (many|much|long|big|large|wide|tall|often|far)|what (size|percentage|year|version|value|"
                      r"number|step|amount)|which (year|version|number)|default (value|size|width)|when did|"
                      r"in what year)\b", re.I)
DIGIT = re.compile(r"\d")


def prose(text: str) -> float:
    words = text.split()
    return sum(bool(PLAIN.match(w)) for w in words) / max(1, len(words))


def main(paths: list[str]) -> None:
    rows = [r for p in paths for r in json.load(open(p))]
    print(f"{len(rows)} questions, {sum(bool(QUANTITY.search(r['question'])) for r in rows)} asking for a quantity")
    for beta in (0.0, 0.25, 0.5, 1.0):
        for th in (0.0, 0.3):
            best_holds = changed = held = 0
            for r in rows:
                ss = r["sentences"]
                if not ss:
                    continue
                quantity = bool(QUANTITY.search(r["question"]))

                def key(s: dict) -> float:
                    k = s["score"] * (0.5 if prose(s["text"]) < th else 1.0)
                    return k * (1 + beta) if quantity and DIGIT.search(s["text"]) else k
                plain = max(ss, key=lambda s: s["score"])
                ranked = sorted(ss, key=key, reverse=True)
                best_holds += ranked[0]["holds"]
                changed += ranked[0] is not plain
                held += any(s["holds"] for s in ranked[:6] if key(s) >= 0.5 * key(ranked[0]))
            print(f"beta {beta:4} code below {th}: best sentence holds {best_holds}, picks changed {changed}, "
                  f"read-back (approx.) holds {held}")


if __name__ == "__main__":
    main(sys.argv[1:])
