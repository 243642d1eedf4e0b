"""Probe (issue 25): how far down the memory's own search ranks a fact asked in other words, per checkpoint.

The tuning half of data/needles/paraphrase.jsonl (and of literal.jsonl, the control) planted once each in the
first 20 segments (~20k tokens, ~5,000 chunks) of the tuning books, as train-retrieval's validation does; per
checkpoint, the rank (1 = first) of the best chunk of the planted sentence for the question's last token, over
the whole bank, per head and for the best head (``evaluate_ranks``). Cheap: the backbone's features are cached
once in ``--cache``; a checkpoint costs one pass of the memory-query delta.

    PYTHONPATH=. python experiments/probes/paraphrase_ranks.py --books frankenstein.txt the_time_machine.txt \
        --checkpoints assets/sidenet.safetensors runs/retrieval_pairs/sidenet.safetensors

Measured 2026-12-07 (tuning books and pairs; median rank of the fact; share in the top 6), one fact per bank:
shipped 104, 12%; --pairs 3, 81%. --crowded: shipped 247, 6%; --pairs 21, 19%; --pairs --fact-distractors 16 21, 12%;
with --book-questions too 21, 16%; --pairs with --window 1 / 3: 23, 22% / 50, 3%. The gap between one fact per bank
and crowded is the shortcut (experiments/notes/2026-12-07-meaning-search.md).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from longmem_core import LongMemModel
from longmem_core.training.features import BankCache
from longmem_core.training.objectives.retrieval import chunk_logits, example_batch, memory_queries
from longmem_core.training.search_examples import cached_store, make_examples, read_pair_file

BOOKS = Path("../shared/data/books")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--books", nargs="+", default=["frankenstein.txt", "the_time_machine.txt", "great_expectations.txt"])
    ap.add_argument("--checkpoints", nargs="+", default=["assets/sidenet.safetensors"])
    ap.add_argument("--segments", type=int, default=20)
    ap.add_argument("--cache", default="tmp/paraphrase_ranks_features.pt")
    ap.add_argument("--out", default="tmp/paraphrase_ranks.json")
    ap.add_argument("--window", type=int, default=0, help="score each chunk by the mean key of the chunks within "
                    "this many of it (segment ends ignored), instead of its own mean key")
    ap.add_argument("--crowded", action="store_true", help="every other planted fact in each fact's bank too "
                    "(as in one document holding them all): found by meaning, not for looking planted")
    args = ap.parse_args()
    pairs = (read_pair_file("data/needles/paraphrase.jsonl", split="tuning")
             + [dict(p, kind="literal") for p in read_pair_file("data/needles/literal.jsonl", split="tuning")])
    results = {}
    store = groups = None
    for ckpt in args.checkpoints:
        model = LongMemModel.load(checkpoint=ckpt)
        if store is None:
            store, groups = cached_store(model, [str(BOOKS / b) for b in args.books], Path(args.cache), args.segments,
                                         0, True, 1, pairs=pairs)
            for g in groups:  # the control's kind kept apart from the paraphrases'
                for f in g["facts"]:
                    if any(p["kind"] == "literal" and " " + " ".join(p["fact"].split()) == f["fact"]["text"] for p in pairs):
                        f["kind"] = "literal"
        examples = [e for e in make_examples(store, groups, model.cfg.chunk_size, seed=1, distractor_books=0,
                                             induction_per_book=0, fact_distractors=10 ** 6 if args.crowded else 0)
                    if e.kind != "induction"]
        for e in examples:  # the last token only: what the search scores with
            last = len(store[e.query].ids) - 1
            e.targets = {last: e.targets[last]}
        cache = BankCache(store, model.cfg.chunk_size)
        by_kind: dict[str, list[int]] = {}
        with torch.no_grad():
            for e in examples:  # the search's score: the last token's softmax over the bank, summed over heads
                xn, pos, means = example_batch(e, store, cache, max_queries=1)
                if args.window:  # [G, Nc, D] averaged over 2 * window + 1 neighbouring chunks
                    w = args.window
                    padded = torch.nn.functional.pad(means.transpose(1, 2), (w, w), mode="replicate")
                    means = torch.nn.functional.avg_pool1d(padded, 2 * w + 1, stride=1).transpose(1, 2)
                score = torch.softmax(chunk_logits(model, memory_queries(model, xn), means), -1).sum(1)[0]  # [Nc]
                best = float(score[pos[0]].max())
                by_kind.setdefault(e.kind, []).append(1 + int((score > best).sum()))
        ranks = {k: {"n": len(v), "median_rank": float(torch.tensor(v).float().median()),
                     "top6": sum(r <= 6 for r in v) / len(v), "top30": sum(r <= 30 for r in v) / len(v), "ranks": v}
                 for k, v in by_kind.items()}
        results[ckpt] = ranks
        print(ckpt, {k: {m: x for m, x in v.items() if m != "ranks"} for k, v in ranks.items()}, flush=True)
    Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
