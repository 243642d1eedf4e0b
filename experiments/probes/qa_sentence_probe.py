"""Where does sentence read-back lose a factual answer? Tuning books only.

    python experiments/probes/qa_sentence_probe.py --books frankenstein,great_expectations,the_time_machine \
        --out tmp/qa_sentence_probe.json

For each tuning question (first 60,000 characters in memory, as eval-qa): does the hybrid search's read-back hold
the answer; which BM25 rank and score share (of the best sentence) the first sentence holding it gets among the
passages' sentences; does the narrowed context hold it; and what the default mode answers. No generation with
``--no-generate``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from longmem_core.answer import answer, read_back, sentences
from longmem_core.model import search  # noqa: E402
from longmem_core.evals.eval_qa import contains_any, read_questions  # noqa: E402
from longmem_core.model.model import LongMemModel  # noqa: E402
from tuning_runs import BOOKS, QUESTIONS  # noqa: E402

VARIANTS = {  # sentences.narrow settings whose narrowed context is checked for the answer (no generation)
    "shipped": {},
    "next1": dict(neighbours=1),
    "before1": dict(before=1),
    "share0.3": dict(min_share=0.3),
    "top8": dict(top=8),
    "top8_budget480": dict(top=8, budget=480),
    "keep_dominated": dict(drop_dominated=False),
}


SHIPPED_PROMPT = read_back.read_back_prompt
PROMPTS = {  # read-back prompt layouts tried with --prompts (the default mode answers with each)
    "shipped": SHIPPED_PROMPT,
    "few_words": lambda c, q: (f"Read these passages from memory:\n\n{c}\n\nAnswer in a few words, from the "
                               f"passages. {q}") if c else q,
    "question_twice": lambda c, q: (f"{q}\n\nFrom memory:\n{c}\n\nAnswer in a few words. {q}") if c else q,
    "example_inline": lambda c, q: (
        f"Read these passages from memory:\n\n{c}\n\nAnswer in a few words taken from the passages. (For example, "
        f"after the passage \"Anna lived in a small house at Dover.\", the question \"Where did Anna live?\" is "
        f"answered \"At Dover.\")\n\n{q}") if c else q,
    "lines": lambda c, q: (f"Lines from a book:\n{c}\n\nQuestion: {q}\nAnswer briefly, using the lines.")
    if c else q,
}


DEMO = [  # one made-up exchange put before the question (``example_turn``): how a short answer from the lines looks
    {"role": "user", "content": SHIPPED_PROMPT("[notes] Anna lived in a small house at Dover. She kept two dogs.",
                                               "Where did Anna live?")},
    {"role": "assistant", "content": "At Dover."},
]


def answers_by_prompt(model, bank, question: str, names: list[str]) -> dict[str, str]:
    out = {}
    for name in names:
        read_back.read_back_prompt = PROMPTS.get(name, SHIPPED_PROMPT)
        history = DEMO if name == "example_turn" else None
        try:
            out[name] = answer.answer(model, bank, question, mode=answer.DEFAULT_MODE, max_new_tokens=48,
                                      history=history).text
        finally:
            read_back.read_back_prompt = SHIPPED_PROMPT
    return out


def diagnose(model, bank, q: dict) -> dict:
    found = read_back.read_back(model, bank, search.hybrid_chunks(model, bank, q["question"], answer.SEARCH_TOP))
    sents = sentences.split(found.passages)
    sentences.score(sents, q["question"])
    order = sorted(range(len(sents)), key=lambda i: -sents[i].score)
    best = max((s.score for s in sents), default=0.0) or 1.0
    holding = [r for r, i in enumerate(order) if contains_any(sents[i].text, q["answers"])]
    count = read_back.token_counter(model)
    narrowed = sentences.narrow(found, q["question"], count)
    variants = {v: contains_any(sentences.narrow(found, q["question"], count, **kw).context, q["answers"])
                for v, kw in VARIANTS.items()}
    return {"passages": contains_any(found.context, q["answers"]), "sentences": len(sents),
            "rank": holding[0] if holding else None,
            "share": round(sents[order[holding[0]]].score / best, 2) if holding else None,
            "answer_sentence": sents[order[holding[0]]].text[:200] if holding else None,
            "narrowed": contains_any(narrowed.context, q["answers"]), "variants": variants,
            "narrowed_tokens": count(narrowed.context),
            "top_sentences": [(round(sents[i].score / best, 2), sents[i].text[:120]) for i in order[:4]]}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--books", default="frankenstein,great_expectations,the_time_machine")
    p.add_argument("--generate", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--prompts", default="shipped", help="comma-separated names of PROMPTS to answer with")
    p.add_argument("--lexical-stop", choices=["en", "question"], default="question",
                   help="stop words of the hybrid search's BM25: bm25s's English list (shipped before 2026-12-02 "
                        "night) or that list and the question words (search.stop_words, shipped since)")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    from longmem_core.config import default_checkpoint
    model = LongMemModel.load(checkpoint=default_checkpoint())
    if args.lexical_stop == "en":
        search.settings.SEARCH = dataclasses.replace(search.settings.SEARCH, lexical_stop_words="en")
    records = []
    for book in args.books.split(","):
        text = (BOOKS / f"{book}.txt").read_text(encoding="utf-8")[:60_000]
        bank = model.new_bank(capacity=max(model.cfg.capacity, 40_000))
        model.memorize(text, bank, source=book)
        for q in read_questions(QUESTIONS[book]):
            rec = {"book": book, "question": q["question"], "answers": q["answers"], **diagnose(model, bank, q)}
            if args.generate:
                outs = answers_by_prompt(model, bank, q["question"], args.prompts.split(","))
                rec.update(outputs=outs, correct={k: contains_any(o, q["answers"]) for k, o in outs.items()})
            records.append(rec)
            print(json.dumps({k: rec[k] for k in ("question", "passages", "rank", "share", "narrowed")
                              + (("correct",) if args.generate else ())}), flush=True)
    n = len(records)
    summary = {"n": n, "passages": sum(r["passages"] for r in records) / n,
               "narrowed": sum(r["narrowed"] for r in records) / n,
               "ranks_of_held": sorted(r["rank"] for r in records if r["rank"] is not None),
               "variants": {v: sum(r["variants"][v] for r in records) / n for v in VARIANTS},
               "mean_tokens": sum(r["narrowed_tokens"] for r in records) / n}
    if args.generate:
        summary["correct"] = {k: sum(r["correct"][k] for r in records) / n for k in args.prompts.split(",")}
        summary["correct_when_narrowed_held"] = {
            k: f'{sum(r["correct"][k] for r in records if r["narrowed"])}/{sum(r["narrowed"] for r in records)}'
            for k in args.prompts.split(",")}
    print(json.dumps(summary))
    if args.out:
        Path(args.out).write_text(json.dumps({"summary": summary, "records": records}, indent=1))


if __name__ == "__main__":
    main()
