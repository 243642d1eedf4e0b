"""Which search puts the answer to a natural question into the read-back context? Tuning books only.

    python experiments/probes/qa_search_probe.py [--out tmp/qa_search_probe.json]

For each tuning book's questions (data/qa/frankenstein.jsonl, great_expectations.jsonl and
assets/qa_time_machine.jsonl), the first ``max_chars`` characters of the book are memorized once; then every
search variant ranks chunks for each question, the read-back context is built from its top chunks exactly as the
answer modes build it (``read_back.read_back``), and the probe records whether an answer string is in that
context (eval-qa's ``retrieval_recall``) and how many tokens the context took. No generation: this measures
finding only.

Variants: the model's search alone; BM25 alone over windows of ``w`` chunks each side; reciprocal-rank fusion
of both with window ``w`` and BM25 weight ``b``; each with listed chunks at least ``g`` chunks apart
(``search.spread_top``). Budgets: the read-back token budget.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from longmem_core.answer import read_back
from longmem_core.model import search  # noqa: E402
from longmem_core.evals.eval_qa import contains_any, read_questions  # noqa: E402
from longmem_core.model.model import LongMemModel, Retrieved  # noqa: E402

BOOKS = Path("/work/shared/data/books")
GAPS = (0, 16, 32)  # chunks apart (spread_top)
WINDOWS = (3, 8)
WEIGHTS = (1.0, 2.0, 4.0)
SETS = {"frankenstein": ROOT / "data/qa/frankenstein.jsonl",
        "great_expectations": ROOT / "data/qa/great_expectations.jsonl",
        "the_time_machine": ROOT / "assets/qa_time_machine.jsonl"}


def bm25_chunks(bank, query: str, top: int, window: int, gap: int) -> list[Retrieved]:
    return [r for r in search.listed(bank, search.lexical_scores(bank, query, window), top, gap) if r.score > 0]


def variants() -> dict:
    out = {}
    for gap in GAPS:
        out[f"model_g{gap}"] = lambda m, b, q, top, gap=gap: search.rank_chunks(m, b, q, top, gap=gap)
        for w in WINDOWS:
            out[f"bm25_w{w}_g{gap}"] = lambda m, b, q, top, w=w, gap=gap: bm25_chunks(b, q, top, w, gap)
            for weight in WEIGHTS:
                out[f"hybrid_w{w}_b{weight:g}_g{gap}"] = (
                    lambda m, b, q, top, w=w, weight=weight, gap=gap:
                    search.hybrid_chunks(m, b, q, top, window=w, lexical_weight=weight, gap=gap))
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=None)
    p.add_argument("--top", type=int, default=8)
    p.add_argument("--budgets", default="1500")
    args = p.parse_args()
    budgets = [int(x) for x in args.budgets.split(",")]
    model = LongMemModel.load()
    tok = model.tokenizer
    count = lambda s: len(tok(s, add_special_tokens=False)["input_ids"])  # noqa: E731
    table: dict[str, dict[str, list]] = {}
    records = []
    for book, path in SETS.items():
        questions = read_questions(str(path))
        max_chars = max(q.get("max_chars", 60_000) for q in questions)
        text = (BOOKS / f"{book}.txt").read_text(encoding="utf-8")[:max_chars]
        bank = model.new_bank(capacity=max(model.cfg.capacity, 4 * len(text) // 3))
        t0 = time.perf_counter()
        model.memorize(text, bank, source=book)
        print(f"{book}: {len(questions)} questions, memorized in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        for q in questions:
            rec = {"book": book, "question": q["question"], "found": {}}
            for name, find in variants().items():
                chunks = find(model, bank, q["question"], args.top)
                for budget in budgets:
                    ctx = read_back.read_back(model, bank, chunks, budget=budget).context
                    key = f"{name}@{budget}"
                    hit = contains_any(ctx, q["answers"])
                    rec["found"][key] = hit
                    table.setdefault(key, {"hits": [], "tokens": []})
                    table[key]["hits"].append(hit)
                    table[key]["tokens"].append(count(ctx))
            records.append(rec)
    rows = [{"variant": k, "recall": sum(v["hits"]) / len(v["hits"]), "n": len(v["hits"]),
             "mean_context_tokens": sum(v["tokens"]) / len(v["tokens"])} for k, v in table.items()]
    rows.sort(key=lambda r: -r["recall"])
    for r in rows:
        print(f"{r['variant']:<24} recall {r['recall']:.2f}  tokens {r['mean_context_tokens']:.0f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"command": "python experiments/probes/qa_search_probe.py " +
                                              " ".join(sys.argv[1:]), "rows": rows, "records": records}, indent=1))


if __name__ == "__main__":
    main()
