"""Which sentences should sentence read-back keep? Tuning books only.

    python experiments/probes/sentence_probe.py --book frankenstein --tasks single,multikey,multivalue,multiquery \
        --length 16000 --trials 3 [--qa] --out tmp/sentence_probe.json

Each eval-niah trial (same generator and seeds as ``eval-niah``) is memorized once and answered in mode
``sentences_hybrid`` (RULER's answer prefix, as eval-niah) with every variant of ``VARIANTS``: how many sentences
(``top``), whether the sentence after each is kept too (``neighbours``), and a floor on a sentence's BM25 score
relative to the best one (``min_share``). ``--qa`` adds the book's tuning questions (data/qa/BOOK.jsonl, first
60,000 characters, no prefix), scored as eval-qa.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from longmem_core.answer import answer, sentences  # noqa: E402
from longmem_core.evals.eval_qa import contains_any, read_questions  # noqa: E402
from longmem_core.model.model import LongMemModel  # noqa: E402
from longmem_core.evals.needles import Haystack, even_depths, make_trial, string_match_all  # noqa: E402

BOOKS = Path("/work/shared/data/books")
SHIPPED = sentences.narrow
VARIANTS = {
    "top6": dict(top=6),
    "top6_share0.5": dict(top=6, min_share=0.5),
    "top6_share0.75": dict(top=6, min_share=0.75),
    "top3": dict(top=3),
    "top6_next1": dict(top=6, neighbours=1),
}


def answers(model, bank, question: str, prefix: str, max_new_tokens: int, mode: str) -> dict[str, str]:
    out = {}
    for name, kw in VARIANTS.items():
        sentences.narrow = partial(SHIPPED, **kw)
        try:
            out[name] = answer.answer(model, bank, question, mode=mode, max_new_tokens=max_new_tokens,
                                      answer_prefix=prefix).text
        finally:
            sentences.narrow = SHIPPED
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--book", default="frankenstein")
    p.add_argument("--tasks", default="single,multikey,multivalue,multiquery")
    p.add_argument("--length", type=int, default=16000)
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--mode", default="sentences_hybrid")
    p.add_argument("--qa", action="store_true")
    p.add_argument("--niah", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    from longmem_core.config import default_checkpoint
    model = LongMemModel.load(checkpoint=default_checkpoint())
    text = (BOOKS / f"{args.book}.txt").read_text(encoding="utf-8")
    score: dict[str, list[float]] = {v: [] for v in VARIANTS}
    records = []
    if args.niah:
        haystack = Haystack(text, model.tokenizer)
        for task in args.tasks.split(","):
            rng = random.Random(f"0-{task}-{args.length}")  # eval-niah's seed 0
            for depth in even_depths(args.trials):
                trial = make_trial(haystack, task, args.length, depth, rng)
                bank = model.new_bank(capacity=max(model.cfg.capacity, int(args.length * 1.3)))
                model.memorize(trial.document, bank, source="haystack")
                outs = answers(model, bank, trial.question, trial.answer_prefix, 128, args.mode)
                for v, o in outs.items():
                    score[v].append(string_match_all(o, trial.expected))
                records.append({"task": task, "depth": depth, "expected": trial.expected, "outputs": outs})
                print(task, round(depth, 2), {v: round(s[-1], 2) for v, s in score.items()}, flush=True)
    qa_score: dict[str, list[float]] = {v: [] for v in VARIANTS}
    if args.qa:
        bank = model.new_bank(capacity=max(model.cfg.capacity, 40_000))
        model.memorize(text[:60_000], bank, source=args.book)
        for q in read_questions(str(ROOT / "data" / "qa" / f"{args.book}.jsonl")):
            outs = answers(model, bank, q["question"], "", 48, args.mode)
            for v, o in outs.items():
                qa_score[v].append(float(contains_any(o, q["answers"])))
            records.append({"question": q["question"], "answers": q["answers"], "outputs": outs})
            print(q["question"][:50], {v: s[-1] for v, s in qa_score.items()}, flush=True)
    summary = {v: {"niah": sum(s) / len(s) if s else None,
                   "qa": sum(qa_score[v]) / len(qa_score[v]) if qa_score[v] else None} for v, s in score.items()}
    print(json.dumps(summary, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "summary": summary, "records": records}, indent=1))


if __name__ == "__main__":
    main()
