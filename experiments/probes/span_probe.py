"""Probe: which read-back sentences should the quote mode's answer spans come from, and should longer spans get a
bonus or the spans a calibration against the question alone? Tuning documents only.

For every question, scores every candidate span (``spans.score_spans``) of the read-back sentences after the
read-back prompt and after the question alone, and writes them; then counts the questions a rule answers.

    .venv/bin/python experiments/probes/span_probe.py collect hyperref tmp/spans_hyperref.json
    .venv/bin/python experiments/probes/span_probe.py collect frankenstein tmp/spans_frankenstein.json
    .venv/bin/python experiments/probes/span_probe.py count tmp/spans_hyperref.json tmp/spans_frankenstein.json

Run on this project's CPU (hyperref manual 20 questions, frankenstein 6): candidates from the best sentence only
(share 1.0) answered 11 and 3, from the sentences at 0.8 of the best 11 and 3, from the 4 best 8 and 3; a bonus of
0.5 to 2 a word changed nothing; calibration (minus alpha x the score after the question alone) at alpha 0.5-1
gave 6 of 20 on the hyperref manual (4 best sentences), at 0.1-0.2 with the best sentence only 11, as without it.
"""
from __future__ import annotations

import json
import sys

from longmem_core.answer import answer, spans
from longmem_core.model import search
from longmem_core.documents.data import read_document
from longmem_core.evals.eval_qa import contains_any as right  # eval-qa's test of an answer
from longmem_core.documents.reading_plan import first_part

TUNING = {  # name -> (document, questions, characters read)
    "hyperref": ("/tmp/pdfs/x/usr/share/doc/texlive-doc/latex/hyperref/hyperref-doc.pdf",
                 "data/qa/pdf/hyperref_doc.jsonl", 120_000),
    "frankenstein": ("../shared/data/books/frankenstein.txt", "data/qa/frankenstein.jsonl", 60_000),
}


def collect(name: str, out: str) -> None:
    from app.handlers import load_model
    model = load_model()
    stop = frozenset(search.stop_words())
    path, questions, chars = TUNING[name]
    doc = first_part(read_document(path), chars)
    bank = model.new_bank()
    model.memorize(doc.text, bank, source=doc.name, pages=doc.pages, page_labels=doc.page_labels)
    tok = model.tokenizer
    records = []
    for line in open(questions, encoding="utf-8"):
        q = json.loads(line)
        p = answer.prepare(model, bank, q["question"], "quote")
        source_of = lambda s, p=p: bank.sources[p.passages[s.passage].source_index]["text"]  # noqa: E731
        with_text = p.prompt_ids + tok(answer.SPAN_OPENING, add_special_tokens=False)["input_ids"]
        alone = model.chat_ids(q["question"]) + tok(answer.ANSWER_OPENING + answer.SPAN_OPENING,
                                                    add_special_tokens=False)["input_ids"]
        share, spans.SENTENCE_SHARE = spans.SENTENCE_SHARE, 0.0  # every candidate of the 4 best sentences
        a = spans.score_spans(model, with_text, p.sentences, q["question"], stop, source_of)
        b = spans.score_spans(model, alone, p.sentences, q["question"], stop, source_of)
        spans.SENTENCE_SHARE = share
        records.append({"q": q, "spans": [(x.text, x.score, y.score, x.sentence.score) for x, y in zip(a, b)]})
    json.dump(records, open(out, "w"))


def count(files: list[str]) -> None:
    for f in files:
        records = json.load(open(f))
        for share in (0.0, 0.8, 1.0):
            for bonus in (0.0, 0.5, 1.0):
                for calibration in (0.0, 0.25, 1.0):
                    n = 0
                    for r in records:
                        if not r["spans"]:
                            continue
                        top = max(x[3] for x in r["spans"])
                        pool = [x for x in r["spans"] if x[3] >= share * top]
                        best = max(pool, key=lambda x: x[1] - calibration * x[2] + bonus * len(x[0].split()))
                        n += right(best[0], r["q"]["answers"])
                    print(f, f"share {share} bonus {bonus} calibration {calibration}: {n} of {len(records)}")


if __name__ == "__main__":
    if sys.argv[1] == "collect":
        collect(sys.argv[2], sys.argv[3])
    else:
        count(sys.argv[2:])
