"""Probe: which features of a candidate span, beside the backbone's likelihood, pick the answer? Tuning documents
only (the hyperref manual; debmake-doc and gnuplot-doc, tuning since their failures were studied on 2026-12-07;
frankenstein and great_expectations).

``collect`` runs the quote mode's search and sentence choice once per question and writes every candidate span of
the ``SENTENCES_SEEN`` best read-back sentences with the backbone's two scores (``spans.Span.likely``, ``closes``);
``fit`` then compares rankers over those candidates offline (leave one document out).

    .venv/bin/python experiments/probes/span_rank_probe.py collect hyperref tmp/rank_hyperref.json
    .venv/bin/python experiments/probes/span_rank_probe.py fit tmp/rank_*.json

Run on this project's CPU at c888ef6 (73 tuning questions; the answer is in the best sentence for 55, in another
read-back sentence for 9, in none for 9): the shipped rule (best sentence, log P(span) + log P(end)) answers 35.
Beside it, over the same candidates (``span_rank_fit.py calibration``): minus 0.75 x the score after a question
that asks nothing (PMI with the question) 37, at alpha 1 only 27; the same over the 2 best sentences 37, over 6
35 (32 without it); a penalty for words between the span and the question's words 35-37 (a throwaway count, not
kept); a linear ranker over 15 features (the two log-probabilities, PMI, length, sentence rank and share, question
words in and around the span, answer type: digits for "which version", a capital for "who", code-like) fitted
leave one document out (``fit``) 35-38 depending on the features kept. None is clear of the noise of 73
questions; none was shipped.
"""
from __future__ import annotations

import json
import sys
import time

from longmem_core.answer import answer, read_back, spans
from longmem_core.model import search
from longmem_core.documents.data import read_document
from longmem_core.documents.reading_plan import first_part

PDFS = "/tmp/pdfs/x/usr/share/doc"
TUNING = {  # name -> (document, questions, characters read)
    "hyperref": (f"{PDFS}/texlive-doc/latex/hyperref/hyperref-doc.pdf", "data/qa/pdf/hyperref_doc.jsonl", 120_000),
    "debmake": (f"{PDFS}/debmake-doc/debmake-doc.en.pdf", "data/qa/pdf/debmake_doc.jsonl", 120_000),
    "gnuplot": (f"{PDFS}/gnuplot/gnuplot.pdf", "data/qa/pdf/gnuplot_doc.jsonl", 120_000),
    "frankenstein": ("../shared/data/books/frankenstein.txt", "data/qa/frankenstein.jsonl", 60_000),
    "great_expectations": ("../shared/data/books/great_expectations.txt", "data/qa/great_expectations.jsonl",
                           60_000),
}
SENTENCES_SEEN = 6
GENERIC = "What does it say?"  # a question that asks nothing
ALONE = False  # also score each sentence's spans after that sentence alone (on the hyperref manual: 12 against 11)


def collect(name: str, out: str) -> None:
    from app.handlers import load_model
    model = load_model()
    stop = frozenset(search.stop_words())
    path, questions, chars = TUNING[name]
    doc = first_part(read_document(path), chars)
    bank = model.new_bank()
    t0 = time.time()
    model.memorize(doc.text, bank, source=doc.name, pages=doc.pages, page_labels=doc.page_labels)
    print(name, "memorized in", round(time.time() - t0), "s", flush=True)
    tok = model.tokenizer
    records = []
    for line in open(questions, encoding="utf-8"):
        q = json.loads(line)
        p = answer.prepare(model, bank, q["question"], "quote")
        source_of = lambda s, p=p: bank.sources[p.passages[s.passage].source_index]["text"]  # noqa: E731
        prompt = p.prompt_ids + tok(answer.SPAN_OPENING, add_special_tokens=False)["input_ids"]
        ranked = sorted(p.sentences, key=lambda s: -s.score)
        seen, spans.SENTENCES = spans.SENTENCES, SENTENCES_SEEN
        share, spans.SENTENCE_SHARE = spans.SENTENCE_SHARE, 0.0
        found = spans.score_spans(model, prompt, p.sentences, q["question"], stop, source_of)
        # the same candidates after the same read-back with a question that asks nothing ("generic": how salient a
        # span is in what was read, whatever the question), and after the candidate's sentence alone ("alone")
        generic_prompt = model.chat_ids(read_back.read_back_prompt(p.context, GENERIC)) + tok(
            answer.ANSWER_OPENING + answer.SPAN_OPENING, add_special_tokens=False)["input_ids"]
        generic = {(id(x.sentence), x.char_start, x.char_end): x for x in
                   spans.score_spans(model, generic_prompt, p.sentences, q["question"], stop, source_of)}
        alone = {}
        for s in ranked[:SENTENCES_SEEN] if ALONE else []:
            own = model.chat_ids(read_back.read_back_prompt(s.text, q["question"])) + tok(
                answer.ANSWER_OPENING + answer.SPAN_OPENING, add_special_tokens=False)["input_ids"]
            alone.update({(id(x.sentence), x.char_start, x.char_end): x for x in
                          spans.score_spans(model, own, [s], q["question"], stop, source_of)})
        spans.SENTENCES, spans.SENTENCE_SHARE = seen, share
        sents = [{"text": s.text, "score": s.score, "matched": sorted(s.matched),
                  "start": s.char_start + max(0, source_of(s)[s.char_start:s.char_end].find(s.text))}
                 for s in ranked]
        index = {id(s): i for i, s in enumerate(ranked)}
        records.append({"doc": name, "q": q, "sentences": sents,
                        "spans": [{"s": index[id(x.sentence)], "text": x.text,
                                   "a": x.char_start - sents[index[id(x.sentence)]]["start"],
                                   "b": x.char_end - sents[index[id(x.sentence)]]["start"],
                                   "likely": x.likely, "closes": x.closes,
                                   "generic": generic[k].score if (k := (id(x.sentence), x.char_start, x.char_end))
                                   in generic else None,
                                   "alone": alone[k].score if k in alone else None} for x in found]})
        print(len(records), q["question"][:60], len(found), flush=True)
    json.dump(records, open(out, "w"))


if __name__ == "__main__":
    if sys.argv[1] == "collect":
        collect(sys.argv[2], sys.argv[3])
    else:
        from span_rank_fit import fit  # the offline part, beside this file
        fit(sys.argv[2:])
