"""``icl_select.select`` reading the held-out texts in batches against one at a time (issue 26's time), on the real
default backbone: the same choice and predictions, and how much less time.

    PYTHONPATH=. .venv/bin/python experiments/probes/icl_select_batched.py --threads 1 > tmp/i26/select_batched.json

SST-2 as ``eval-icl`` builds it (seeded sample of ``--memory-size`` demonstrations read into a bank, ``--k`` of them
in context, ``ModeClassifier`` with ``auto``); then ``select`` is timed ``--rounds`` times each way, interleaved
(batched, one at a time, batched, ...), in one process. "One at a time" is the loop before batching: each held-out
text's key by ``key_scores.text_key`` and its label scores by ``icl.classify`` after the cached prompt, put in
place of the batched ``key_scores.text_keys`` and ``icl_select.label_scores`` for the run (nothing else of
``select`` differs). The key read and the label scoring are timed inside ``select`` too, per held-out text.
On a shared CPU single times move a lot: compare the ratio within a round.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from app.handlers import load_model  # noqa: E402
from longmem_core.classify import icl, icl_modes, icl_select, key_scores  # noqa: E402
from longmem_core.classify.settings import MODE  # noqa: E402
from longmem_core.documents.data import read_labelled  # noqa: E402

BATCHED = {"keys": key_scores.text_keys, "scores": icl_select.label_scores}


def keys_one_at_a_time(model, texts, template):
    return torch.stack([key_scores.text_key(model, t, template) for t in texts])  # [N, G*D]


def scores_one_at_a_time(model, texts, labels, *, context, template, cache):
    return torch.tensor([[icl.classify(model, t, labels, context=context, template=template, top=0,
                                       cache=cache).scores[label] for label in labels] for t in texts])  # [N, L]


@contextmanager
def reading(way: str, spent: dict[str, float]):
    """``select`` reads the held-out texts ``way`` ("batched" or "alone"); the time of each part adds to ``spent``."""
    keys, scores = (BATCHED["keys"], BATCHED["scores"]) if way == "batched" else \
        (keys_one_at_a_time, scores_one_at_a_time)

    def timed(name, fn):
        def run(*a, **k):
            start = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[name] += time.perf_counter() - start
        return run
    key_scores.text_keys, icl_select.label_scores = timed("keys", keys), timed("scores", scores)
    try:
        yield
    finally:
        key_scores.text_keys, icl_select.label_scores = BATCHED["keys"], BATCHED["scores"]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--train", default="/work/shared/data/icl/sst2/train.jsonl")
    p.add_argument("--task", default="sst2")
    p.add_argument("--memory-size", type=int, default=300)
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model()
    demos = read_labelled(args.train, min_classes=2)
    template, labels = icl.template_for(args.task), icl.label_set(demos)
    chosen = icl.sample_context(demos, args.memory_size, args.seed)  # as evaluate_modes
    context = icl.context_text(template, icl.sample_context(chosen, args.k, args.seed))
    bank = model.new_bank(capacity=max(model.cfg.capacity, 2 * len(icl.context_text(template, chosen))
                                       + model.cfg.chunk_size))
    memory = icl.memorize_demonstrations(model, chosen, bank, template=template)
    classifier = icl_modes.ModeClassifier(model, labels, template, context, bank, memory, ("auto",), args.k,
                                          MODE.neighbours)
    for way in ("batched", "alone"):  # warm-up: first calls pay one-time costs
        with reading(way, {"keys": 0.0, "scores": 0.0}):
            icl_select.select(classifier, max_held_out=4, seed=args.seed)
    runs, selections = [], {}
    for r in range(args.rounds):
        for way in ("batched", "alone"):
            spent = {"keys": 0.0, "scores": 0.0}
            with reading(way, spent):
                start = time.perf_counter()
                s = icl_select.select(classifier, seed=args.seed)
                total = time.perf_counter() - start
            selections[way] = s
            runs.append({"round": r, "way": way, "seconds": total, "held_out": s.held_out,
                         "key_per_text": spent["keys"] / s.held_out, "scores_per_text": spent["scores"] / s.held_out})
            print(json.dumps(runs[-1]), file=sys.stderr)
    a, b = selections["batched"], selections["alone"]
    ratios = []
    for r in range(args.rounds):
        batched, alone = (next(x for x in runs if x["round"] == r and x["way"] == w) for w in ("batched", "alone"))
        ratios.append({k: batched[k] / alone[k] for k in ("seconds", "key_per_text", "scores_per_text")})
    out = {"task": args.task, "memory_size": args.memory_size, "k": args.k, "seed": args.seed,
           "threads": torch.get_num_threads(), "labels": labels,
           "label_tokens": [len(model.tokenizer(" " + x, add_special_tokens=False)["input_ids"]) for x in labels],
           "context_tokens": len(model.encode(context)), "runs": runs, "ratio_batched_over_alone": ratios,
           "same_choice": a.chosen == b.chosen, "same_predictions": a.predictions == b.predictions,
           "chosen": a.chosen, "accuracy": a.accuracy}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
