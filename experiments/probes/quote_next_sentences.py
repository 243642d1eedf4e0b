"""Probe (issue 24): when the quoted sentence misses, is the answer in the sentence after it, or elsewhere?

On the fifth fresh pair (siunitx, listings) most answers held by BM25's passages but missed by the quote mode were
in the sentence right after the quoted one ("...turning off the parser will represent a significant saving." /
"Second, it allows the use of arbitrary TeX code in numbers."), which the shipped read-on rule skipped because it
shares too few of the question's words. ``collect`` runs the shipped quote path once per question and records the
quoted sentence (before reading on), the next two sentences after it (``sentences.following``), whether each holds
an answer, each one's BM25 share against the quoted sentence, and every sentence of the passages read back with its
score. ``fit`` compares read-on rules offline: the shipped one, reading on where the next sentence opens with a word
that points back (a pronoun, "Second,", "For example"), where the quote ends with a colon, where it scores a share
of the quoted sentence's BM25 score, and always. Chosen: points back or a share of 0.25 (``settings.SPANS.follow_share``).
Files: ``experiments/results/runs/quote_next_sentences_{before,after}_<name>.json`` (collected before and after the
change) and ``quote_next_sentences_fit.txt``.

Tuning: hyperref, debmake, gnuplot and the two pairs already judged (lilypond, metapost, siunitx, listings). The
sixth pair (gutenprint, fontspec) is not run here.

    PYTHONPATH=. .venv/bin/python experiments/probes/quote_next_sentences.py collect hyperref tmp/next_hyperref.json
    PYTHONPATH=. .venv/bin/python experiments/probes/quote_next_sentences.py fit tmp/next_*.json
"""
from __future__ import annotations

import json
import re
import sys
import time

from longmem_core.answer import answer, sentences
from longmem_core.documents.data import read_document
from longmem_core.documents.reading_plan import first_part
from longmem_core.evals.eval_qa import contains_any

DOC = "/tmp/pdfs/x/usr/share/doc"
TEX = f"{DOC}/texlive-doc/latex"
DOCUMENTS = {  # name -> (document, questions): tuning PDFs only (scripts/fetch_pdfs.sh)
    "hyperref": (f"{TEX}/hyperref/hyperref-doc.pdf", "data/qa/pdf/hyperref_doc.jsonl"),
    "debmake": (f"{DOC}/debmake-doc/debmake-doc.en.pdf", "data/qa/pdf/debmake_doc.jsonl"),
    "gnuplot": (f"{DOC}/gnuplot/gnuplot.pdf", "data/qa/pdf/gnuplot_doc.jsonl"),
    "lilypond": (f"{DOC}/lilypond/html/Documentation/usage.pdf", "data/qa/pdf/lilypond_usage_doc.jsonl"),
    "metapost": (f"{DOC}/texlive-doc/metapost/base/mpman.pdf", "data/qa/pdf/metapost_doc.jsonl"),
    "siunitx": (f"{TEX}/siunitx/siunitx.pdf", "data/qa/pdf/siunitx_doc.jsonl"),
    "listings": (f"{TEX}/listings/listings.pdf", "data/qa/pdf/listings_doc.jsonl"),
}


def collect(name: str, out: str) -> None:
    from app.handlers import load_model
    model = load_model()
    path, questions = DOCUMENTS[name]
    doc = first_part(read_document(path), 120_000)
    bank = model.new_bank(capacity=max(model.cfg.capacity, 65_536))
    t0 = time.time()
    model.memorize(doc.text, bank, source=doc.name, pages=doc.pages, page_labels=doc.page_labels)
    print(name, "memorized in", round(time.time() - t0), "s", flush=True)
    seen: dict = {}
    shipped_read_on = answer.Answering.read_on

    def spy(self, quoted):
        seen["quoted"], seen["self"] = quoted, self
        return shipped_read_on(self, quoted)

    answer.Answering.read_on = spy
    rows = []
    for line in open(questions, encoding="utf-8"):
        q = json.loads(line)
        seen.clear()
        a = answer.answer(model, bank, q["question"], mode="quote")
        row = {"doc": name, "question": q["question"], "answers": q["answers"], "text": a.text,
               "right": contains_any(a.text, q["answers"]), "next": [], "sentences": []}
        if "quoted" in seen:
            row |= _around(seen["self"], seen["quoted"], q)
        rows.append(row)
        print(int(row["right"]), int(row.get("quoted_holds", False)),
              "".join(str(int(n["holds"])) for n in row["next"]), q["question"][:70], flush=True)
    json.dump(rows, open(out, "w"), indent=1)


def _around(answering, quoted, q) -> dict:
    """The quoted sentence, the two after it and every read-back passage sentence, each with whether it holds an
    answer and its BM25 score for the question."""
    p = answering.prepared
    text = answering.source_of(quoted)
    skips = sentences.furniture_of(p.memory.sources, p.passages)
    skip = skips[p.passages[quoted.passage].source_index]
    nexts, cur = [], quoted
    for _ in range(2):
        nxt = sentences.following(cur, text, skip, 900)
        if nxt is None:
            break
        share = _share(quoted, nxt, p)
        nexts.append({"text": nxt.text, "holds": contains_any(nxt.text, q["answers"]), "share": share,
                      "reads_on": sentences.reads_on(quoted, nxt, p.passages, p.question, skips)})
        cur = nxt
    every = sentences.split(p.passages, skips)
    sentences.score(every, p.question)
    return {"quoted": quoted.text, "quoted_holds": contains_any(quoted.text, q["answers"]),
            "quoted_colon": quoted.text.rstrip().endswith(":"), "next": nexts,
            "read_back_holds": any(contains_any(s.text, q["answers"]) for s in p.sentences),
            "sentences": [{"text": s.text, "score": s.score, "holds": contains_any(s.text, q["answers"]),
                           "passage": s.passage, "quoted": s.char_start < quoted.char_end
                           and quoted.char_start < s.char_end} for s in every]}


def _share(quoted, other, p) -> float:
    """``other``'s BM25 score over the quoted sentence's, as ``sentences.reads_on`` computes them."""
    from dataclasses import replace
    mine = lambda s: s.passage == quoted.passage  # noqa: E731
    coll = [s for s in sentences.split(p.passages) if not (mine(s) and s.char_start < other.char_end
                                                            and other.char_start < s.char_end)]
    other = replace(other, passage=quoted.passage)
    coll.append(other)
    sentences.score(coll, p.question)
    q = max((s.score for s in coll if mine(s) and s is not other and s.char_start < quoted.char_end
             and quoted.char_start < s.char_end), default=0.0)
    return other.score / q if q > 0 else 0.0


# a sentence opening with one of these points back at the one before it: it goes on with the same matter
POINTS_BACK = re.compile(r"^(it|its|this|these|that|those|they|their|such|there|here|then|thus|so|hence|also|"
                         r"however|otherwise|instead|therefore|second|secondly|third|finally|for example|for "
                         r"instance|e\.g\.|in this case|in that case|in the latter case|in addition|in particular|"
                         r"the latter|the former|note|example)\b", re.IGNORECASE)


def rules(row: dict) -> dict[str, str]:
    """What each read-on rule quotes: 'q' the quoted sentence, 'q1' with the next, 'q12' with the next two."""
    n = row["next"]
    shipped = "q1" if n and n[0]["reads_on"] else "q"
    back = bool(n) and bool(POINTS_BACK.match(n[0]["text"]))
    out = {"shipped": shipped,
           "points_back": "q1" if (shipped == "q1" or back) else "q",
           "colon_or_back": "q1" if (shipped == "q1" or back or row.get("quoted_colon")) else "q",
           "always": "q1" if n else "q",
           "share_0.25": "q1" if n and (n[0]["reads_on"] or n[0]["share"] >= 0.25) else "q",
           "back_or_0.25": "q1" if n and (n[0]["reads_on"] or n[0]["share"] >= 0.25 or back) else "q",
           "back_or_0.35": "q1" if n and (n[0]["reads_on"] or n[0]["share"] >= 0.35 or back) else "q",
           "back_or_0.15": "q1" if n and (n[0]["reads_on"] or n[0]["share"] >= 0.15 or back) else "q",
           "share>0": "q1" if n and (n[0]["reads_on"] or n[0]["share"] > 0) else "q",
           "always_two": "q12" if len(n) > 1 else ("q1" if n else "q")}
    return out


def fit(paths: list[str]) -> None:
    rows = [r for p in paths for r in json.load(open(p))]
    print(f"{len(rows)} questions; shipped right {sum(r['right'] for r in rows)}; read-back held "
          f"{sum(r.get('read_back_holds', False) for r in rows)}; quoted sentence holds "
          f"{sum(r.get('quoted_holds', False) for r in rows)}")
    names = list(rules(rows[0]))
    for name in names:
        right = extra = 0
        for r in rows:
            pick = rules(r)[name]
            holds = r.get("quoted_holds", False) or (pick != "q" and r["next"] and r["next"][0]["holds"]) or \
                (pick == "q12" and len(r["next"]) > 1 and r["next"][1]["holds"])
            right += bool(holds)
            extra += pick != "q"
        print(f"{name:14s} right {right:3d} of {len(rows)} (quote alone or with what it reads on); read on {extra}")
    by_doc: dict[str, list[int]] = {}
    for r in rows:
        d = by_doc.setdefault(r["doc"], [0, 0, 0])
        d[0] += r.get("quoted_holds", False)
        d[1] += bool(r["next"]) and r["next"][0]["holds"] and not r.get("quoted_holds", False)
        d[2] += 1
    print("per document: quoted holds / only the next holds / questions:", by_doc)


if __name__ == "__main__":
    if sys.argv[1] == "collect":
        collect(sys.argv[2], sys.argv[3])
    else:
        fit(sys.argv[2:])
