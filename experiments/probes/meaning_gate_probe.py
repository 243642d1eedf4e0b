"""Probe (issue 25): when should the meaning search's best sentence be read back and offered as an answer?

A meaning slot (``settings.SEARCH.meaning_slots``) anchors the sentence the meaning search ranks first, so the quote
mode can answer from it when the question shares no word with it. On PDFs whose questions use the document's own
words that anchor can take the answer away from the BM25-best sentence. This records, per question of the tuning
sets (facts asked in other words planted in Frankenstein; the three tuning PDFs), the share of the question's
words held by the best-matching sentence read back (``Sentence.matched``), the meaning search's best cosine and its
margin over the next sentence, and whether the answer was right, with the slot and without it.

    PYTHONPATH=. .venv/bin/python experiments/probes/meaning_gate_probe.py CHECKPOINT OUT.json
"""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from longmem_core import LongMemModel
from longmem_core.answer import answer, sentences
from longmem_core.documents.data import read_document
from longmem_core.documents.reading_plan import first_part
from longmem_core.evals import eval_paraphrase as ep
from longmem_core.evals.eval_qa import contains_any
from longmem_core.evals.needles import Haystack
from longmem_core.model import meaning, search, settings

DOC = "/tmp/pdfs/x/usr/share/doc"
PDFS = {"hyperref": (f"{DOC}/texlive-doc/latex/hyperref/hyperref-doc.pdf", "data/qa/pdf/hyperref_doc.jsonl"),
        "debmake": (f"{DOC}/debmake-doc/debmake-doc.en.pdf", "data/qa/pdf/debmake_doc.jsonl"),
        "gnuplot": (f"{DOC}/gnuplot/gnuplot.pdf", "data/qa/pdf/gnuplot_doc.jsonl")}
SEEN: list = []
_narrow = sentences.narrow


def recording_narrow(found, question, count_tokens, **kw):
    split = sentences.split(found.passages)
    sentences.score(split, question)
    words = set(search.stop_words())
    asked = {w for w in question.lower().replace("?", " ").split() if w not in words}
    SEEN.append(max((len(s.matched) for s in split), default=0) / max(1, len(asked)))
    return _narrow(found, question, count_tokens, **kw)


sentences.narrow = recording_narrow


def ask(model, bank, question: str, answers: list[str]) -> dict:
    out = {}
    for slots in (0, 1):
        settings.SEARCH = dataclasses.replace(settings.SEARCH, meaning_slots=slots)
        SEEN.clear()
        a = answer.answer(model, bank, question, mode="quote", max_new_tokens=48)
        out[f"right_{slots}"] = contains_any(a.text, answers)
        out["coverage"] = SEEN[0] if SEEN else None
    scores = meaning.meaning_scores(model, bank, question)
    which, _, _, _ = meaning.bank_sentences(model, bank)
    import torch
    per = torch.full((int(which.max()) + 1,), -9.0, dtype=torch.float64)
    per[torch.from_numpy(which)] = scores
    top = per.topk(2).values.tolist()
    out.update(cosine=top[0], margin=top[0] - top[1], question=question)
    return out


def main(ckpt: str, out_path: str) -> None:
    model = LongMemModel.load(checkpoint=ckpt)
    records = []
    hay = Haystack(Path("../shared/data/books/frankenstein.txt").read_text(encoding="utf-8"), model.tokenizer)
    for name in ("paraphrase", "literal"):
        pairs = ep.select(ep.read_pairs(ep.pairs_path(f"data/needles/{name}.jsonl")), "tuning", None)
        document, _ = ep.plant_together(hay, pairs, 16000, 0)
        bank = ep.memorized(model, document, 16000)
        for p in pairs:
            records.append({"set": name, **ask(model, bank, p["question"], p["answers"])})
            print(records[-1], flush=True)
    for name, (pdf, qs) in PDFS.items():
        part = first_part(read_document(pdf), 120000)
        bank = model.new_bank(capacity=65536)
        model.memorize(part.text, bank, source=Path(pdf).name, pages=part.pages, page_labels=part.page_labels)
        for line in Path(qs).read_text().splitlines():
            q = json.loads(line)
            records.append({"set": name, **ask(model, bank, q["question"], q["answers"])})
            print(records[-1], flush=True)
    Path(out_path).write_text(json.dumps(records, indent=0))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
