"""Probe (issue 25): search and answer for facts asked in other words, several checkpoints and memory-slot settings
on ONE memorized document (cheap: eval-paraphrase memorizes a fresh document per pair, ~50 s each on one core).

Every pair of the chosen split (data/needles/paraphrase.jsonl and literal.jsonl, the control) is planted once in a
single stretch of ``--length`` tokens of the book, at evenly spread depths (shuffled); the document is memorized
once (a bank holds the frozen backbone's keys, so it serves every checkpoint); then for each config
``checkpoint:slots`` every question is asked in the quote mode, with ``search.settings.SEARCH.memory_slots`` set to ``slots``.
The other facts are distractors here, unlike eval-paraphrase: compare configs with each other, not with its rows.

    PYTHONPATH=. python experiments/probes/paraphrase_e2e_probe.py --text ../shared/data/books/frankenstein.txt \
        --configs assets/sidenet.safetensors:0 runs/retrieval_pairs/sidenet.safetensors:2

Measured 2026-12-07 on Frankenstein, 16k tokens, the 40 tuning pairs (paraphrase found / memory / read back /
answered of 32; control answered of 8): shipped, slots 0: 2 / 4 / 0 / 0, 7; shipped, slots 2: 2 / 4 / 1 / 0, 6;
--pairs checkpoint, slots 0, 1, 2: 1 / 2 / 0 / 0, 7, 6, 6. Memory slots stay off (search.settings.SEARCH.memory_slots = 0).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import random
import time
from pathlib import Path

from longmem_core import LongMemModel
from longmem_core.model import search
from longmem_core.documents.data import read_document
from longmem_core.evals.eval_paraphrase import Fact, ask_pair, memorized, read_pairs, select
from longmem_core.evals.needles import Haystack, insert_needles


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--text", required=True)
    ap.add_argument("--configs", nargs="+", required=True, help="checkpoint:slots")
    ap.add_argument("--split", default="tuning")
    ap.add_argument("--length", type=int, default=16000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="tmp/paraphrase_e2e.json")
    args = ap.parse_args()
    pairs = (select(read_pairs("data/needles/paraphrase.jsonl"), args.split, None)
             + select(read_pairs("data/needles/literal.jsonl"), args.split, None))
    rng = random.Random(args.seed)
    depths = [(i + 0.5) / len(pairs) for i in range(len(pairs))]
    rng.shuffle(depths)
    facts = [Fact(p["fact"], d) for p, d in zip(pairs, depths)]
    model = LongMemModel.load(checkpoint=args.configs[0].rsplit(":", 1)[0])
    hay = Haystack(read_document(args.text).text, model.tokenizer)
    filler = hay.stretch(args.length - sum(hay.count(" " + f.text) for f in facts), rng)
    document = insert_needles(filler, facts)
    t0 = time.perf_counter()
    bank = memorized(model, document, args.length)
    print(f"memorized {bank.n_chunks} chunks in {time.perf_counter() - t0:.0f} s", flush=True)
    results = {}
    for config in args.configs:
        ckpt, slots = config.rsplit(":", 1)
        model = LongMemModel.load(checkpoint=ckpt)
        search.settings.SEARCH = dataclasses.replace(search.settings.SEARCH, memory_slots=int(slots))
        rows = [ask_pair(model, bank, document, pair, fact, mode="quote", top=6, max_new_tokens=48)
                for pair, fact in zip(pairs, facts)]
        summary = {}
        for group in ("paraphrase", "literal"):
            rs = [r for r in rows if (r["kind"] == "literal") == (group == "literal")]
            summary[group] = {k: sum(r[k] for r in rs) for k in ("found", "found_memory", "found_bm25", "read_back",
                                                                  "answered")} | {"n": len(rs)}
        results[config] = {"summary": summary, "rows": rows}
        print(config, json.dumps(summary), flush=True)
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
