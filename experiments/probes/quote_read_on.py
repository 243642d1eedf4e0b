"""Probe (issue 24): should a quoted sentence answer read on into the next sentence?

On the PDFs' misses the sentence sharing the question's words often only introduces what the next one states
("Previous commands ... can be reexecuted by number." / "For example, history !5 will reexecute ..."). The quote
mode now reads on into the next sentence when that one holds a word of the question (``settings.SPANS.follow_on``,
``answer.Answering.read_on``). This probe reads each document once and answers every question in the quote mode
with ``follow_on`` off and on, and writes per question: right or not, the answer's length, and what was read on.
Chosen on the tuning PDFs; the report PDFs are only read after the choice is written down.

    PYTHONPATH=. .venv/bin/python experiments/probes/quote_read_on.py hyperref debmake gnuplot > tmp/read_on.txt
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time

import bm25s

from longmem_core.answer import answer, sentences, settings
from longmem_core.model.search import stop_words
from longmem_core.documents.data import read_document
from longmem_core.documents.reading_plan import first_part
from longmem_core.evals.eval_qa import contains_any

PDFS = "/tmp/pdfs/x/usr/share/doc"
DOCUMENTS = {  # name -> (document, questions)
    "hyperref": (f"{PDFS}/texlive-doc/latex/hyperref/hyperref-doc.pdf", "data/qa/pdf/hyperref_doc.jsonl"),
    "debmake": (f"{PDFS}/debmake-doc/debmake-doc.en.pdf", "data/qa/pdf/debmake_doc.jsonl"),
    "gnuplot": (f"{PDFS}/gnuplot/gnuplot.pdf", "data/qa/pdf/gnuplot_doc.jsonl"),
    # the third fresh report pair (scripts/fetch_pdfs.sh /tmp/pdfs3): read only after the rule was committed
    "octave": ("/tmp/pdfs3/x/usr/share/doc/octave/octave.pdf", "data/qa/pdf/octave_doc.jsonl"),
    "beamer": ("/tmp/pdfs3/x/usr/share/doc/texlive-doc/latex/beamer/beameruserguide.pdf",
               "data/qa/pdf/beamer_doc.jsonl"),
}


def shares_a_word(quoted, nxt, passages, question, skip=None) -> bool:
    """The looser rule: the next sentence holds a word of the question (stop words aside)."""
    asked, held = bm25s.tokenize([question, nxt.text], stopwords=stop_words(), show_progress=False, return_ids=False)
    return bool(set(asked) & set(held))


# name -> (follow_on, the rule, read_before); ``--before`` compares the shipped rule with it reading backwards too
VARIANTS = {"off": (False, sentences.reads_on, False), "shared": (True, shares_a_word, False),
            "strict": (True, sentences.reads_on, False)}
if "--before" in sys.argv:
    sys.argv.remove("--before")
    VARIANTS = {"off": (False, sentences.reads_on, False), "strict": (True, sentences.reads_on, False),
                "before": (True, sentences.reads_on, True)}


def memorized(model, name: str, path: str):
    """A new bank holding the first 120,000 characters of the PDF at ``path``, as eval-qa reads them."""
    doc = first_part(read_document(path), 120_000)
    bank = model.new_bank(capacity=max(model.cfg.capacity, 65_536))
    t0 = time.time()
    model.memorize(doc.text, bank, source=doc.name, pages=doc.pages, page_labels=doc.page_labels)
    print(name, "memorized in", round(time.time() - t0), "s", flush=True)
    return bank


def run(name: str, model) -> list[dict]:
    path, questions = DOCUMENTS[name]
    bank = memorized(model, name, path)
    out = []
    base = settings.SPANS
    for line in open(questions, encoding="utf-8"):
        q = json.loads(line)
        row = {"doc": name, "question": q["question"], "answers": q["answers"]}
        for key, (on, rule, before) in VARIANTS.items():
            settings.SPANS = dataclasses.replace(base, follow_on=on, read_before=before)
            sentences.reads_on = rule
            a = answer.answer(model, bank, q["question"], mode="quote")
            row[key] = {"text": a.text, "right": contains_any(a.text, q["answers"]), "short": a.short,
                        "complete": a.complete}
        settings.SPANS, sentences.reads_on = base, VARIANTS["strict"][1]
        out.append(row)
        print("".join(str(int(row[k]["right"])) for k in VARIANTS), q["question"][:70], flush=True)
        for key in list(VARIANTS)[1:]:
            if row[key]["text"] != row["off"]["text"]:
                print(f"     {key}: {row[key]['text'][:300]}", flush=True)
    return out


if __name__ == "__main__":
    from app.handlers import load_model
    model = load_model()
    rows = [r for name in sys.argv[1:] for r in run(name, model)]
    for key in VARIANTS:
        right = sum(r[key]["right"] for r in rows)
        sentence = [len(r[key]["text"]) for r in rows if not r[key]["short"]]
        print(f"{key}: {right} of {len(rows)} right; quoted-sentence answers {len(sentence)}, mean "
              f"{sum(sentence) / max(1, len(sentence)):.0f} chars; read on in "
              f"{sum(r[key]['text'] != r['off']['text'] for r in rows)}")
    json.dump(rows, open(f"tmp/read_on_{'_'.join(sys.argv[1:])}.json", "w"), indent=1)
