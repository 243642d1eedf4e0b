"""Probe (issue 24): when the backbone is unsure which span of the read-back answers, is the quoted sentence a
better answer than the span it picked?

The quote mode answers with the span of a read-back sentence the 135M backbone finds most likely; about half the
time on unseen PDFs that span is a wrong word of a right sentence ("round parentheses" for what the square option
does, from "...enclosed in square bracket rather than round parentheses"). The sentence itself holds the answer
far more often. ``collect`` runs the quote mode's search, sentence choice and span scoring once per question and
writes every candidate span with its score, the quote of the best one and the gold answers; ``fit`` then compares,
offline, answering with the span only when the backbone's confidence in it (the best candidate's share of the
softmax over every candidate's score, or its margin over the second) reaches a threshold, and with the quoted
sentence otherwise. The threshold is chosen on the tuning documents and read on the report documents.

    PYTHONPATH=. .venv/bin/python experiments/probes/quote_when_unsure.py collect hyperref tmp/unsure_hyperref.json
    PYTHONPATH=. .venv/bin/python experiments/probes/quote_when_unsure.py fit tmp/unsure_*.json

``fit-sentence`` (on files collected with ``--every-sentence``) compares ways of choosing the quoted sentence when
the span is not sure: among the best few by BM25 (as shipped: only those tied with the best) or among more, by the
best span's sentence, by the summed probability of a sentence's spans, or by BM25 alone.

    PYTHONPATH=. .venv/bin/python experiments/probes/quote_when_unsure.py collect hyperref tmp/all_hyperref.json \
        --every-sentence
    PYTHONPATH=. .venv/bin/python experiments/probes/quote_when_unsure.py fit-sentence tmp/all_*.json
"""
from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from pathlib import Path

from longmem_core.answer import answer, quote, settings, spans
from longmem_core.documents.data import read_document
from longmem_core.documents.reading_plan import first_part
from longmem_core.evals.eval_qa import contains_any
from longmem_core.model import search

PDFS = "/tmp/pdfs/x/usr/share/doc"
DOCUMENTS = {  # name -> (document, questions, characters read, tuning or report)
    "hyperref": (f"{PDFS}/texlive-doc/latex/hyperref/hyperref-doc.pdf", "data/qa/pdf/hyperref_doc.jsonl", 120_000,
                 "tuning"),
    "debmake": (f"{PDFS}/debmake-doc/debmake-doc.en.pdf", "data/qa/pdf/debmake_doc.jsonl", 120_000, "tuning"),
    "gnuplot": (f"{PDFS}/gnuplot/gnuplot.pdf", "data/qa/pdf/gnuplot_doc.jsonl", 120_000, "tuning"),
    "asymptote": (f"{PDFS}/asymptote/asymptote.pdf", "data/qa/pdf/asymptote_doc.jsonl", 120_000, "report"),
    "bash": (f"{PDFS}/bash/bashref.pdf", "data/qa/pdf/bash_doc.jsonl", 120_000, "report"),
}


def collect(name: str, out: str, every_sentence: bool = False) -> None:
    """``every_sentence``: every read-back sentence's spans are candidates (not only the best-scored one's), so
    ``fit_sentence`` can compare ways of choosing the sentence offline."""
    from app.handlers import load_model
    if every_sentence:
        settings.SPANS = dataclasses.replace(settings.SPANS, sentences=100, sentence_share=0.0)
    model = load_model()
    stop = frozenset(search.stop_words())
    path, questions, chars, split = DOCUMENTS[name]
    doc = first_part(read_document(path), chars)
    bank = model.new_bank()
    t0 = time.time()
    model.memorize(doc.text, bank, source=doc.name, pages=doc.pages, page_labels=doc.page_labels)
    print(name, "memorized in", round(time.time() - t0), "s", flush=True)
    records = []
    for line in open(questions, encoding="utf-8"):
        q = json.loads(line)
        p = answer.prepare(model, bank, q["question"], "quote")
        source = lambda s, p=p: bank.sources[p.passages[s.passage].source_index]  # noqa: E731
        prompt = p.prompt_ids + model.tokenizer(settings.ANSWER.span_opening, add_special_tokens=False)["input_ids"]
        found = spans.score_spans(model, prompt, p.sentences, p.question, stop, lambda s: source(s)["text"])
        best = max(found, key=lambda sp: sp.score, default=None)
        records.append({"doc": name, "split": split, "question": q["question"], "answers": q["answers"],
                        "candidates": [{"text": x.text, "score": x.score, "sentence": p.sentences.index(x.sentence)}
                                       for x in found],
                        "sentences": [{"quote": quote.quote_of(s, source(s)).text, "score": s.score,
                                       "anchored": s.anchored} for s in p.sentences],
                        "span": best.text if best else None,
                        "quote": quote.quote_of(best.sentence, source(best.sentence)).text if best else None})
        print(len(records), q["question"][:60], len(found), flush=True)
    Path(out).write_text(json.dumps(records, indent=1))


def confidence(record: dict, kind: str) -> float:
    """How sure the backbone is of its span: ``share``, the best candidate's softmax share over all candidates;
    ``margin``, its score minus the second best's (log-probabilities)."""
    scores = sorted((c["score"] for c in record["candidates"]), reverse=True)
    if not scores:
        return math.inf
    if kind == "margin":
        return scores[0] - scores[1] if len(scores) > 1 else math.inf
    return 1 / sum(math.exp(s - scores[0]) for s in scores)


def answered(record: dict, threshold: float, kind: str) -> bool:
    """Right with this rule: the span when the confidence reaches ``threshold``, else the quoted sentence."""
    if record["span"] is None:
        return False
    shown = record["span"] if confidence(record, kind) >= threshold else record["quote"]
    return contains_any(shown, record["answers"])


def fit(paths: list[str]) -> None:
    records = [r for p in paths for r in json.loads(Path(p).read_text())]
    for split in ("tuning", "report"):
        part = [r for r in records if r["split"] == split]
        if not part:
            continue
        n = len(part)
        spans_right = sum(r["span"] is not None and contains_any(r["span"], r["answers"]) for r in part)
        quotes_right = sum(r["quote"] is not None and contains_any(r["quote"], r["answers"]) for r in part)
        print(f"{split}: {n} questions ({', '.join(sorted({r['doc'] for r in part}))}); span right {spans_right}, "
              f"quote holds the answer {quotes_right}")
        for kind, grid in (("share", [0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.01]),
                           ("margin", [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, math.inf])):
            cells = []
            for t in grid:
                right = sum(answered(r, t, kind) for r in part)
                as_span = sum(r["span"] is not None and confidence(r, kind) >= t for r in part)
                span_ok = sum(r["span"] is not None and confidence(r, kind) >= t and
                              contains_any(r["span"], r["answers"]) for r in part)
                cells.append(f"{t:g}: {right} (spans {as_span}, right {span_ok})")
            print(f"  {kind}: " + "; ".join(cells))


def _logsumexp(xs: list[float]) -> float:
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))


def sentence_answer(record: dict, keep: int, share: float, choose: str, margin: float, temperature: float = 1.0):
    """The answer under one rule: spans of the ``keep`` best sentences by BM25 within ``share`` of the best (and
    the anchored ones) are candidates; the best span if it leads by ``margin``, else the sentence chosen by
    ``choose``: "best" (the best span's), "sum" (the largest summed span probability at ``temperature``) or
    "bm25"."""
    sentences = record["sentences"]
    order = sorted(range(len(sentences)), key=lambda i: -sentences[i]["score"])[:keep]
    top = sentences[order[0]]["score"] if order else 0.0
    allowed = {i for i in order if sentences[i]["score"] >= share * top}
    allowed |= {i for i, s in enumerate(sentences) if s["anchored"]}
    cands = sorted((c for c in record["candidates"] if c["sentence"] in allowed), key=lambda c: -c["score"])
    if not cands:
        return None
    if len(cands) == 1 or cands[0]["score"] - cands[1]["score"] >= margin:
        return cands[0]["text"]
    by: dict[int, list[float]] = {}
    for c in cands:
        by.setdefault(c["sentence"], []).append(c["score"] / temperature)
    chosen = {"best": lambda: cands[0]["sentence"],
              "sum": lambda: max(by, key=lambda i: _logsumexp(by[i])),
              "bm25": lambda: max(by, key=lambda i: (sentences[i]["score"], _logsumexp(by[i])))}[choose]()
    return sentences[chosen]["quote"]


def fit_sentence(paths: list[str]) -> None:
    records = [r for p in paths for r in json.loads(Path(p).read_text())]
    held = sum(any(contains_any(s["quote"], r["answers"]) for s in r["sentences"]) for r in records)
    print(f"{len(records)} questions ({', '.join(sorted({r['doc'] for r in records}))}); a read-back sentence "
          f"holds the answer for {held}")
    for keep, share in ((4, 1.0), (2, 0.0), (3, 0.0), (4, 0.0), (6, 0.0), (100, 0.0), (4, 0.5), (4, 0.8)):
        for choose, temperature in (("best", 1.0), ("sum", 1.0), ("sum", 3.0), ("bm25", 1.0)):
            cells = [f"margin {m:g}: " + str(sum(contains_any(sentence_answer(r, keep, share, choose, m, temperature)
                                                              or "", r["answers"]) for r in records))
                     for m in (2, 3, 4, math.inf)]
            print(f"  {keep} best sentences within {share:g} of the best, {choose} (T={temperature:g}): "
                  + "; ".join(cells))


if __name__ == "__main__":
    if sys.argv[1] == "collect":
        collect(sys.argv[2], sys.argv[3], "--every-sentence" in sys.argv)
    elif sys.argv[1] == "fit-sentence":
        fit_sentence(sys.argv[2:])
    else:
        fit(sys.argv[2:])
