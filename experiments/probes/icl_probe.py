"""Collect the raw signals of every classification mode on TUNING data, to choose modes and settings offline.

    python experiments/probes/icl_probe.py --task cr --n-test 100 --memory-size 1000 --seeds 1 --out tmp/icl_cr.pt
    python experiments/probes/icl_probe.py --task trec --dev --n-test 100 --memory-size 1000 --seeds 1 --lm none \
        --out tmp/icl_trec_dev.pt

Tuning data only: ``--dev`` draws the test texts from the task's TRAIN file (seeded) and leaves them out of the
demonstrations; without it the task's test file is used, which is allowed only for tasks nobody reports (cr).
Stored per seed: the demonstrations' memory keys [M, G*D] and labels, the test texts' keys [N, G*D] and labels,
and (``--lm``) each LM-scored mode's label log-probabilities [N, L] with its content-free scores (contextual
calibration, Zhao et al. 2021). ``experiments/probes/icl_choose.py`` reads the file.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from longmem_core.classify import icl, icl_modes  # noqa: E402
from longmem_core.documents.data import read_labelled  # noqa: E402
from longmem_core.model.model import LongMemModel  # noqa: E402

ICL = Path("/work/shared/data/icl")
REPORTED = {"sst2", "sst5", "mr", "subj", "mpqa", "trec"}  # their test sets are report sets


def scores_of(model, text, labels, context, template, bank=None, cache=None) -> list[float]:
    pred = icl.classify(model, text, labels, context=context, bank=bank, template=template, top=0, cache=cache)
    return [pred.scores[label] for label in labels]


def content_free(model, labels, context, template, bank=None, cache=None) -> list[list[float]]:
    return [scores_of(model, cf, labels, context, template, bank, cache) for cf in icl_modes.CONTENT_FREE]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--task", required=True)
    p.add_argument("--dev", action="store_true", help="test texts drawn from the train file (left out of memory)")
    p.add_argument("--n-test", type=int, default=100)
    p.add_argument("--memory-size", type=int, default=1000)
    p.add_argument("--seeds", default="1")
    p.add_argument("--k", type=int, default=icl.DEFAULT_K)
    p.add_argument("--kate-k", type=int, default=icl.DEFAULT_K)
    p.add_argument("--lm", default="context,memory,kate", help="LM-scored modes to collect, or 'none'")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    if not args.dev and args.task in REPORTED:
        sys.exit(f"{args.task}'s test set is a report set: use --dev")
    torch.set_num_threads(1)
    lm = [] if args.lm == "none" else args.lm.split(",")
    model = LongMemModel.load()
    template = icl.template_for(args.task)
    train = read_labelled(ICL / args.task / "train.jsonl")
    out: dict = {"task": args.task, "dev": args.dev, "args": vars(args), "seeds": {}}
    for seed in [int(s) for s in args.seeds.split(",")]:
        t0 = time.perf_counter()
        if args.dev:
            order = list(range(len(train)))
            random.Random(1000 + seed).shuffle(order)
            test = [train[i] for i in order[:args.n_test]]
            pool = [train[i] for i in order[args.n_test:]]
        else:
            test = random.Random(seed).sample(read_labelled(ICL / args.task / "test.jsonl"), args.n_test)
            pool = train
        labels = icl.label_set(pool)
        chosen = icl.sample_context(pool, args.memory_size, seed)
        context = icl.context_text(template, icl.sample_context(chosen, args.k, seed))
        bank = model.new_bank(capacity=max(model.cfg.capacity, 2 * len(icl.context_text(template, chosen))
                                           + model.cfg.chunk_size))
        memory = icl.memorize_demonstrations(model, chosen, bank, template=template)
        keys = icl_modes.demonstration_keys(bank, memory, template)
        read_s = time.perf_counter() - t0
        queries = torch.stack([icl_modes.text_key(model, t, template) for t, _ in test])  # [N, G*D]
        rec = {"labels": labels, "demo_labels": [label for _, label in chosen], "demo_keys": keys.keys,
               "test_labels": [label for _, label in test], "test_keys": queries, "read_s": read_s,
               "memory_tokens": len(bank)}
        if "context" in lm:
            cache = model.cache_prompt(context)
            rec["context"] = torch.tensor([scores_of(model, t, labels, context, template, cache=cache) for t, _ in test])
            rec["context_cf"] = torch.tensor(content_free(model, labels, context, template, cache=cache))
        if "memory" in lm:
            cache = model.cache_prompt(context, bank)
            rec["memory"] = torch.tensor([scores_of(model, t, labels, context, template, bank, cache) for t, _ in test])
            rec["memory_cf"] = torch.tensor(content_free(model, labels, context, template, bank, cache))
        if "kate" in lm:
            kate, kate_cf = [], []
            for i, (t, _) in enumerate(test):
                near = icl_modes.kate_context(keys, queries[i], template, args.kate_k)
                cache = model.cache_prompt(near)
                kate.append(scores_of(model, t, labels, near, template, cache=cache))
                kate_cf.append(content_free(model, labels, near, template, cache=cache))
            rec["kate"], rec["kate_cf"] = torch.tensor(kate), torch.tensor(kate_cf)  # [N, L], [N, C, L]
        rec["seconds"] = time.perf_counter() - t0
        out["seeds"][seed] = rec
        print(f"{args.task} seed {seed}: read {read_s:.0f} s, all {rec['seconds']:.0f} s, "
              f"{len(bank)} memory tokens", file=sys.stderr, flush=True)
        torch.save(out, args.out)


if __name__ == "__main__":
    main()
