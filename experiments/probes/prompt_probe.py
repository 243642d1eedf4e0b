"""Does the read-back prompt's layout change what the backbone answers? Tuning books only.

    python experiments/probes/prompt_probe.py --book frankenstein --tasks multivalue,multiquery --length 4000 \
        --trials 3 --modes read_back_hybrid,read_back_hybrid_cache [--qa]

Layouts (``LAYOUTS``): ``after`` (the passages, then the question: the shipped layout) and ``both`` (the question
before the passages and again after them; "query-aware contextualization", Liu et al. 2023, Lost in the
Middle). Each eval-niah trial (the same generator and seeds as ``eval-niah``) is memorized once and answered in
every mode with every layout; ``--qa`` adds the book's tuning questions (data/qa/BOOK.jsonl).
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from longmem_core.answer import answer, read_back  # noqa: E402
from longmem_core.evals.eval_qa import contains_any, read_questions  # noqa: E402
from longmem_core.model.model import LongMemModel  # noqa: E402
from longmem_core.evals.needles import Haystack, even_depths, make_trial, string_match_all  # noqa: E402

BOOKS = Path("/work/shared/data/books")
SHIPPED = read_back.read_back_prompt


def both(context: str, question: str) -> str:
    if not context:
        return question
    return f"Question: {question}\n\nPassages from memory:\n\n{context}\n\nAnswer from the passages. {question}"


LAYOUTS = {"after": SHIPPED, "both": both}


def answer_all(model, bank, question: str, modes: list[str], max_new_tokens: int) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for layout, fn in LAYOUTS.items():
        read_back.read_back_prompt = fn
        answer.read_back.read_back_prompt = fn
        try:
            out[layout] = {m: answer.answer(model, bank, question, mode=m, max_new_tokens=max_new_tokens).text
                           for m in modes}
        finally:
            read_back.read_back_prompt = SHIPPED
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--book", default="frankenstein")
    p.add_argument("--tasks", default="multivalue,multiquery")
    p.add_argument("--length", type=int, default=4000)
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--modes", default="read_back_hybrid,read_back_hybrid_cache")
    p.add_argument("--qa", action="store_true")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    modes = args.modes.split(",")
    model = LongMemModel.load()
    text = (BOOKS / f"{args.book}.txt").read_text(encoding="utf-8")
    scores: dict[str, list[float]] = {}
    records = []
    haystack = Haystack(text, model.tokenizer)
    for task in args.tasks.split(","):
        rng = random.Random(f"0-{task}-{args.length}")  # eval-niah's seeds: the same trials
        for depth in even_depths(args.trials):
            trial = make_trial(haystack, task, args.length, depth, rng)
            bank = model.new_bank(capacity=max(model.cfg.capacity, 2 * args.length))
            model.memorize(trial.document, bank, source="haystack")
            for layout, texts in answer_all(model, bank, trial.question, modes, 128).items():
                for m, t in texts.items():
                    s = string_match_all(t, trial.expected)
                    scores.setdefault(f"niah {layout} {m}", []).append(s)
                    records.append({"task": task, "depth": depth, "layout": layout, "mode": m, "score": s, "text": t})
            print(task, depth, {k: round(sum(v) / len(v), 2) for k, v in scores.items()}, file=sys.stderr)
    if args.qa:
        qs = read_questions(str(ROOT / "data" / "qa" / f"{args.book}.jsonl"))
        doc = text[:max(q.get("max_chars", 60_000) for q in qs)]
        bank = model.new_bank(capacity=max(model.cfg.capacity, len(doc) // 2))
        model.memorize(doc, bank, source=args.book)
        for q in qs:
            for layout, texts in answer_all(model, bank, q["question"], modes, 48).items():
                for m, t in texts.items():
                    s = float(contains_any(t, q["answers"]))
                    scores.setdefault(f"qa {layout} {m}", []).append(s)
                    records.append({"question": q["question"], "layout": layout, "mode": m, "score": s, "text": t})
    summary = {k: sum(v) / len(v) for k, v in scores.items()}
    for k, v in sorted(summary.items()):
        print(f"{k:<45} {v:.3f} ({len(scores[k])})")
    if args.out:
        Path(args.out).write_text(json.dumps({"command": " ".join(["python experiments/probes/prompt_probe.py"] + sys.argv[1:]),
                                              "summary": summary, "records": records}, indent=1))


if __name__ == "__main__":
    main()
