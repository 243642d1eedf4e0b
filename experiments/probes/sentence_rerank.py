"""Probe (issue 24): does the backbone's likelihood of the question given a read-back sentence (query likelihood,
as in UPR, Sachan et al. 2022) choose the quoted sentence better than BM25 does?

When the quote mode is not sure of a short span, its answer is the best read-back sentence by BM25. On the report
PDFs a third of the misses quoted another read-back sentence than the one holding the answer. Here every read-back
sentence of the records that ``quote_when_unsure.py collect --every-sentence`` (or plain ``collect``) wrote is scored
by log P(question | "Passage: <sentence>" prompt) with the frozen backbone (no memory), and the sentence each rule
picks is checked for the answer, offline. Run on tuning documents only.

    PYTHONPATH=. .venv/bin/python experiments/probes/sentence_rerank.py \
        experiments/results/runs/quote_sentences_{hyperref,debmake,gnuplot}.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from longmem_core.evals.eval_qa import contains_any

PROMPT = "Passage: {sentence}\nA question this passage answers:"


def question_likelihoods(model, records: list[dict]) -> None:
    """Each sentence's ``upr``: log P(" " + question | PROMPT) summed over the question's tokens."""
    for r in records:
        q_ids = model.tokenizer(" " + r["question"], add_special_tokens=False)["input_ids"]
        for s in r["sentences"]:
            prompt = model.encode(PROMPT.format(sentence=s["quote"]))
            with torch.no_grad():
                scores, _ = model.score_continuations(prompt, [q_ids])
            s["upr"] = float(scores[0])


def sure_span(r: dict, margin: float = 3.0) -> str | None:
    """The shipped rule's short answer where its span is sure (candidates of the best BM25 sentences only)."""
    ss = r["sentences"]
    top = max((s["score"] for s in ss), default=0.0)
    allowed = {i for i, s in enumerate(ss) if s["score"] >= top or s["anchored"]}
    cands = sorted((c for c in r["candidates"] if c.get("sentence", 0) in allowed), key=lambda c: -c["score"])
    if cands and (len(cands) == 1 or cands[0]["score"] - cands[1]["score"] >= margin):
        return cands[0]["text"]
    return None


def pick(r: dict, rule: str, keep: int, weight: float = 1.0) -> int | None:
    ss = r["sentences"]
    if not ss:
        return None
    order = sorted(range(len(ss)), key=lambda i: -ss[i]["score"])[:keep]
    if rule == "bm25":
        return order[0]
    if rule == "upr":
        return max(order, key=lambda i: ss[i]["upr"])
    # both: BM25 share of the best plus the question likelihood per token, weighted
    top = ss[order[0]]["score"] or 1.0
    n = max(1, len(r["question"].split()))
    return max(order, key=lambda i: ss[i]["score"] / top + weight * ss[i]["upr"] / n)


def main(paths: list[str]) -> None:
    from app.handlers import load_model
    torch.set_num_threads(1)
    model = load_model()
    records = [r for p in paths for r in json.loads(Path(p).read_text())]
    question_likelihoods(model, records)
    held = sum(any(contains_any(s["quote"], r["answers"]) for s in r["sentences"]) for r in records)
    print(f"{len(records)} questions; a read-back sentence holds the answer for {held}")
    for rule, keep, weight in [("bm25", 1, 0), ("upr", 2, 0), ("upr", 3, 0), ("upr", 6, 0), ("both", 3, 0.5),
                               ("both", 3, 1.0), ("both", 6, 0.5), ("both", 6, 1.0), ("both", 6, 2.0)]:
        right = sentence_right = 0
        for r in records:
            i = pick(r, rule, keep, weight)
            quote = r["sentences"][i]["quote"] if i is not None else ""
            sentence_right += contains_any(quote, r["answers"])
            right += contains_any(sure_span(r) or quote, r["answers"])
        print(f"  {rule} among the {keep} best by BM25 (weight {weight:g}): the sentence holds the answer "
              f"{sentence_right}; answers right with sure spans kept {right}")
    Path("tmp/sentence_rerank_scored.json").write_text(json.dumps(records))


if __name__ == "__main__":
    main(sys.argv[1:])
