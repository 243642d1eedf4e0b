"""Probe (issue 24): should the quote mode answer with the quoted sentence always, never with a sure short span?

The quote mode answers with a short span of the best read-back sentence when the backbone is sure of it
(``settings.SPANS.sure_margin`` = 3, chosen on the tuning PDFs, where such spans were right 11 of 13), else with the
whole sentence. On the six report PDFs used so far (development data) the sure spans were right 12 of 20 while their
sentences held the answer for 16. This probe judges the change on PDFs nobody has used: it reads each once and
answers every question with the margin as shipped and with it infinite (the sentence always), and writes per
question: right or not, and whether the answer was a short span.

    PYTHONPATH=. .venv/bin/python experiments/probes/quote_sentence_always.py lilypond metapost
"""
from __future__ import annotations

import dataclasses
import json
import sys

from longmem_core.answer import answer, settings
from longmem_core.evals.eval_qa import contains_any
from quote_read_on import memorized  # the sibling probe (this folder is on the path when run as a script)

DOCUMENTS = {  # name -> (document, questions): the fourth fresh pair (scripts/fetch_pdfs.sh /tmp/pdfs4)
    "lilypond": ("/tmp/pdfs4/x/usr/share/doc/lilypond/html/Documentation/usage.pdf",
                 "data/qa/pdf/lilypond_usage_doc.jsonl"),
    "metapost": ("/tmp/pdfs4/x/usr/share/doc/texlive-doc/metapost/base/mpman.pdf", "data/qa/pdf/metapost_doc.jsonl"),
}
VARIANTS = {"shipped": settings.SPANS.sure_margin, "sentence": float("inf")}


def run(name: str, model) -> list[dict]:
    path, questions = DOCUMENTS[name]
    bank = memorized(model, name, path)
    base, out = settings.SPANS, []
    for line in open(questions, encoding="utf-8"):
        q = json.loads(line)
        row = {"doc": name, "question": q["question"], "answers": q["answers"]}
        for key, margin in VARIANTS.items():
            settings.SPANS = dataclasses.replace(base, sure_margin=margin)
            a = answer.answer(model, bank, q["question"], mode="quote")
            row[key] = {"text": a.text, "right": contains_any(a.text, q["answers"]), "short": a.short}
        settings.SPANS = base
        out.append(row)
        print("".join(str(int(row[k]["right"])) for k in VARIANTS), "S" if row["shipped"]["short"] else " ",
              q["question"][:70], "|", row["shipped"]["text"][:60], flush=True)
    return out


if __name__ == "__main__":
    from app.handlers import load_model
    model = load_model()
    rows = [r for name in sys.argv[1:] for r in run(name, model)]
    for key in VARIANTS:
        print(f"{key}: {sum(r[key]['right'] for r in rows)} of {len(rows)} right; short answers "
              f"{sum(r[key]['short'] for r in rows)}, right {sum(r[key]['short'] and r[key]['right'] for r in rows)}")
    json.dump(rows, open(f"tmp/sentence_always_{'_'.join(sys.argv[1:])}.json", "w"), indent=1)
