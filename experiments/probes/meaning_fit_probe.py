"""Probe (issue 25): how the meaning search's two maps should be fitted. train-meaning's documents are built once
(the backbone's work, ~2 s a document) and cached; then each fitting variant (steps, weight decay, width,
temperature, a hidden layer) trains in seconds and is scored on held-out questions about a book it never saw
(rank of the asked sentence among every sentence of a 16,000-character stretch: top 1, top 5).

    PYTHONPATH=. .venv/bin/python experiments/probes/meaning_fit_probe.py --val-book middlemarch.txt \
        --questions data/train/book_questions.jsonl data/train/book_questions_natural.jsonl
"""
from __future__ import annotations

import argparse
import itertools
import json
import random
from pathlib import Path

import torch

from longmem_core import LongMemModel
from longmem_core.model import meaning
from longmem_core.training import meaning as tm
from longmem_core.training.search_examples import read_pair_file

BOOKS = ["dracula.txt", "moby_dick.txt", "war_and_peace.txt", "middlemarch.txt", "a_tale_of_two_cities.txt"]


def cached(path: Path, build):
    if path.exists():
        return torch.load(path, weights_only=False)
    docs = build()
    torch.save(docs, path)
    return docs


class Hidden(torch.nn.Module):
    """A variant of MeaningProjection with one hidden layer per side (not in the library)."""

    def __init__(self, features: int, width: int, hidden: int) -> None:
        super().__init__()
        mlp = lambda: torch.nn.Sequential(torch.nn.Linear(features, hidden), torch.nn.GELU(),  # noqa: E731
                                          torch.nn.Linear(hidden, width))
        self.question, self.sentence = mlp(), mlp()

    def forward(self, q, s):
        unit = torch.nn.functional.normalize
        return unit(self.question(q), dim=-1), unit(self.sentence(s), dim=-1)


def score(proj, docs) -> tuple[float, float]:
    rs = [r for d in docs for r in tm.ranks(proj, d)]
    return sum(r <= 1 for r in rs) / len(rs), sum(r <= 5 for r in rs) / len(rs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--val-book", default="middlemarch.txt")
    ap.add_argument("--questions", nargs="+", default=["data/train/book_questions.jsonl"])
    ap.add_argument("--cache", default="tmp/meaning_docs")
    ap.add_argument("--grid", default="default")
    args = ap.parse_args()
    root = Path("../shared/data/books")
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    model = LongMemModel.load(meaning_dim=256)
    torch.set_num_threads(2)
    train_books = [str(root / b) for b in BOOKS if b != args.val_book]
    log = lambda m: None  # noqa: E731
    train = {"pairs": cached(cache / f"pairs-no-{args.val_book}.pt", lambda: tm.pair_documents(
        model, train_books, read_pair_file("data/train/paraphrase_train.jsonl"), 16, 16_000, 0, log))}
    val = {}
    for q in args.questions:
        rows = tm.read_book_questions(q)
        name = Path(q).stem
        train[name] = cached(cache / f"{name}-{len(rows)}-no-{args.val_book}.pt", lambda: tm.book_question_documents(
            model, train_books, rows, 16_000, log))
        val[name] = cached(cache / f"{name}-{len(rows)}-{args.val_book}.pt", lambda: tm.book_question_documents(
            model, [str(root / args.val_book)], rows, 16_000, log))
    F = train["pairs"][0].sentences.shape[1]
    print({k: len(v) for k, v in train.items()}, {k: sum(len(d.targets) for d in v) for k, v in val.items()})
    grids = {
        "default": dict(steps=[300, 1000, 3000], wd=[0.01, 0.3], dim=[256], temp=[0.05, 0.1], hidden=[0],
                        parts=["all"]),
        "parts": dict(steps=[1000, 3000], wd=[0.01], dim=[256], temp=[0.05], hidden=[0],
                      parts=["all", "no-natural", "natural-only"]),
        "hidden": dict(steps=[1000, 3000], wd=[0.01, 0.3], dim=[256], temp=[0.05], hidden=[512], parts=["all"]),
    }
    g = grids[args.grid]
    for steps, wd, dim, temp, hidden, parts in itertools.product(*g.values()):
        if parts == "all":
            docs = [d for v in train.values() for d in v]
        elif parts == "no-pairs":
            docs = [d for k, v in train.items() if k != "pairs" for d in v]
        elif parts == "no-natural":
            docs = [d for k, v in train.items() if "natural" not in k for d in v]
        else:
            docs = [d for k, v in train.items() if "natural" in k for d in v]
        if not docs:
            continue
        torch.manual_seed(0)
        proj = Hidden(F, dim, hidden) if hidden else meaning.MeaningProjection(F, dim)
        tm.fit(proj, docs, steps=steps, lr=1e-3, weight_decay=wd, temperature=temp, seed=0, log=log)
        row = {"steps": steps, "wd": wd, "dim": dim, "temp": temp, "hidden": hidden, "parts": parts}
        for k, v in val.items():
            t1, t5 = score(proj, v)
            row[k] = f"{t1:.2f}/{t5:.2f}"
        print(json.dumps(row), flush=True)
    random.seed(0)


if __name__ == "__main__":
    main()
