"""Training speed with and without cached frozen features (train --cache-features), the same data and settings.

Runs STEPS language-modelling steps on the first SEGMENTS segments of a book, once recomputing the backbone every
step and once with its work cached; prints per-step tokens/s (median of each epoch) as JSON.
Run from the repo root: OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python experiments/probes/train_speed.py BOOK [--steps 8]
"""
import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

from longmem_core import LongMemModel
from longmem_core.model.segments import segment_tokens
from longmem_core.training import TrainConfig, run
from longmem_core.training.objectives.language import LanguageModelling


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("book")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--segments", type=int, default=6, help="book segments used (the epoch's data)")
    ap.add_argument("--excerpt-segments", type=int, default=3)
    ap.add_argument("--backbone", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = LongMemModel.load(backbone=args.backbone)
    seg = segment_tokens(model)
    ids = model.tokenizer(Path(args.book).read_text(encoding="utf-8"), add_special_tokens=False)["input_ids"]
    result = {"backbone": model.cfg.backbone, "segment_tokens": seg, "steps": args.steps, "threads": 1}
    with tempfile.TemporaryDirectory() as tmp:
        text = Path(tmp) / "book.txt"
        text.write_text(model.tokenizer.decode(ids[:args.segments * seg]), encoding="utf-8")
        start = {n: p.detach().clone() for n, p in model.side.named_parameters()}
        for cached in (False, True):
            with torch.no_grad():
                for n, p in model.side.named_parameters():
                    p.copy_(start[n])
            cfg = TrainConfig(data=[str(text)], out=f"{tmp}/{cached}", steps=args.steps, warmup=1,
                              excerpt_segments=args.excerpt_segments, checkpoint_every=10 ** 6, cache_features=cached)
            objective = LanguageModelling(model, cfg)
            records = run(objective, model, cfg, log=lambda m: None, progress=False).records
            times = [b["seconds"] - a["seconds"] for a, b in zip([{"seconds": 0.0}] + records, records)]
            rates = [r["tokens"] / t for r, t in zip(records, times)]
            per_epoch = len(objective.plan) and (args.segments // args.excerpt_segments) * (args.excerpt_segments - 1)
            key = "cached" if cached else "recomputed"
            result[key] = {"tokens_per_s_each_step": [round(r, 1) for r in rates],
                           "median_first_epoch": round(statistics.median(rates[:per_epoch]), 1),
                           "median_later_epochs": round(statistics.median(rates[per_epoch:]), 1) if rates[per_epoch:] else None,
                           "final_loss": records[-1]["loss"]}
            if cached:
                result[key]["features_mb"] = round(objective.features.nbytes() / 2 ** 20, 1)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
