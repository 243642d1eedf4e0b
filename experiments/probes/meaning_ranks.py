"""Probe (issue 25): the meaning search's rank of each planted fact's sentence, all tuning pairs planted together in
one 16k-token stretch of a tuning book, per checkpoint (what ``eval-paraphrase --together --split tuning`` plants).

    PYTHONPATH=. .venv/bin/python experiments/probes/meaning_ranks.py CHECKPOINT... [--book frankenstein.txt]
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from longmem_core import LongMemModel
from longmem_core.evals import eval_paraphrase as ep
from longmem_core.evals.needles import Haystack
from longmem_core.model import meaning


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--book", default="frankenstein.txt")
    ap.add_argument("--length", type=int, default=16000)
    ap.add_argument("--split", default="tuning")
    args = ap.parse_args()
    text = (Path("../shared/data/books") / args.book).read_text(encoding="utf-8")
    sets = {name: ep.select(ep.read_pairs(ep.pairs_path(f"data/needles/{name}.jsonl")), args.split, None)
            for name in ("paraphrase", "literal")}
    for ckpt in args.checkpoints:
        model = LongMemModel.load(checkpoint=ckpt)
        hay = Haystack(text, model.tokenizer)
        for name, pairs in sets.items():
            document, facts = ep.plant_together(hay, pairs, args.length, 0)
            bank = ep.memorized(model, document, args.length)
            which, _, sent, _ = meaning.bank_sentences(model, bank)
            chars = bank.chunk_chars
            ranks = []
            for p, f in zip(pairs, facts):
                scores = meaning.meaning_scores(model, bank, p["question"])  # [Nc]
                per_sentence = torch.full((int(which.max()) + 1,), -9.0, dtype=torch.float64)
                per_sentence[torch.from_numpy(which)] = scores
                inside = [i for i in range(len(chars)) if chars[i, 0] < f.char_end and f.char_start < chars[i, 1]]
                best = max(per_sentence[which[i]] for i in inside)
                ranks.append(1 + int((per_sentence > best).sum()))
            print(ckpt, name, f"sentences {len(per_sentence)} median {statistics.median(ranks)} "
                  f"top5 {sum(r <= 5 for r in ranks) / len(ranks):.2f} top20 {sum(r <= 20 for r in ranks) / len(ranks):.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
