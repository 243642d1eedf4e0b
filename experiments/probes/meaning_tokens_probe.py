"""Probe (issue 25): a sentence as its tokens' values (late interaction, MaxSim) instead of their mean.

meaning_fit_probe.py showed that 500 natural questions about the training books do not move the held-out natural
questions (top 1 0.27-0.29 with or without them): the mean-pooled value of a sentence, through a linear map, is the
limit, not the data. Here each question token takes its best-matching token of a sentence (cosine after a trained
linear map per side) and the sentence's score is the mean over the question's tokens (ColBERT-style MaxSim). The
same documents as train-meaning (train-meaning's own builders, with ``document`` swapped for a token-level one),
the same held-out book; the mean-pooled maps trained on the same documents beside it.

    PYTHONPATH=. .venv/bin/python experiments/probes/meaning_tokens_probe.py --val-book middlemarch.txt
"""
from __future__ import annotations

import argparse
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from longmem_core import LongMemModel
from longmem_core.model import meaning
from longmem_core.training import meaning as tm
from longmem_core.training.search_examples import read_pair_file

BOOKS = ["dracula.txt", "moby_dick.txt", "war_and_peace.txt", "middlemarch.txt", "a_tale_of_two_cities.txt"]


@dataclass
class TokenDocument:
    tokens: torch.Tensor  # [T, F] every stored token's value
    token_sentence: torch.Tensor  # [T] its sentence
    questions: list  # N x [Lq, F]
    targets: torch.Tensor  # [N]
    means: torch.Tensor  # [S, F] the mean-pooled sentences (what the library uses)
    question_means: torch.Tensor  # [N, F]

    @property
    def sentences(self) -> torch.Tensor:  # what train-meaning's builders log
        return self.means


def token_document(model, text, questions, targets, name):
    n_tokens = len(model.tokenizer(text, add_special_tokens=False)["input_ids"])
    chunk = model.cfg.chunk_size
    bank = model.new_bank(capacity=max(chunk, -(-int(n_tokens * 1.25 + 64) // chunk) * chunk))
    model.memorize(text, bank, source=name)
    which = meaning.chunk_sentences(bank)  # [Nc]
    middle = bank.chunk_chars.sum(1) // 2
    found = []
    for start, end in targets:
        inside = which[(middle >= start) & (middle < end)]
        found.append(int(np.bincount(inside).argmax()) if len(inside) else int(which[np.abs(middle - start).argmin()]))
    values = bank.values.float()  # [G, Nc, c, D]
    G, Nc, c, D = values.shape
    per_token = values.permute(1, 2, 0, 3).reshape(Nc * c, G * D)  # [Nc*c, F]
    mask = bank.token_mask.reshape(-1).bool().cpu()
    sent = torch.from_numpy(which)[:, None].expand(Nc, c).reshape(-1)
    qs = []
    for q in questions:
        ids = model.encode(q)
        x = torch.tensor([model.with_sink(ids)])
        with torch.no_grad():
            _, v = model.memory_kv(x)  # [1, T, G, D]
        qs.append(v[0, x.shape[1] - len(ids):].flatten(1).float())
    return TokenDocument(per_token[mask].clone(), sent[mask].clone(), qs, torch.tensor(found),
                         meaning.sentence_values(bank, which), torch.stack([q.mean(0) for q in qs]))


class TokenMaps(torch.nn.Module):
    def __init__(self, features: int, width: int) -> None:
        super().__init__()
        self.question = torch.nn.Linear(features, width)
        self.sentence = torch.nn.Linear(features, width)

    mix = 0.0  # share of the means' cosine in the score (0: MaxSim alone)

    def scores(self, doc: TokenDocument, centre: torch.Tensor) -> torch.Tensor:
        """[N, S] MaxSim of each question with each sentence (plus ``mix`` of the means' cosine)."""
        unit = torch.nn.functional.normalize
        t = unit(self.sentence(doc.tokens - centre), dim=-1)  # [T, R]
        S = int(doc.token_sentence.max()) + 1
        out = []
        if self.mix:
            mc = doc.means.mean(0)
            ms = unit(self.sentence(doc.means - mc), dim=-1)  # [S, R]
        for q in doc.questions:
            sim = unit(self.question(q - centre), dim=-1) @ t.T  # [Lq, T]
            best = torch.full((len(q), S), -2.0).scatter_reduce(1, doc.token_sentence.expand(len(q), -1), sim,
                                                                  "amax", include_self=True)  # [Lq, S]
            score = best.mean(0)
            if self.mix:
                score = (1 - self.mix) * score + self.mix * (ms @ unit(self.question(q.mean(0) - mc), dim=-1))
            out.append(score)
        return torch.stack(out)


def ranks_tokens(maps, doc) -> list[int]:
    with torch.no_grad():
        sim = maps.scores(doc, doc.tokens.mean(0))
    return [1 + int((sim[i] > sim[i, t]).sum()) for i, t in enumerate(doc.targets.tolist())]


def fit_tokens(maps, docs, steps, lr, temperature, seed):
    rng = random.Random(seed)
    opt = torch.optim.AdamW(maps.parameters(), lr=lr, weight_decay=0.01)
    order = []
    for step in range(steps):
        if not order:
            order = list(range(len(docs)))
            rng.shuffle(order)
        d = docs[order.pop()]
        sim = maps.scores(d, d.tokens.mean(0))
        loss = torch.nn.functional.cross_entropy(sim / temperature, d.targets)
        opt.zero_grad()
        loss.backward()
        opt.step()


def as_mean(d: TokenDocument) -> tm.MeaningDocument:
    return tm.MeaningDocument(d.means, d.question_means, d.targets, "")


def top(rs):
    return f"{sum(r <= 1 for r in rs) / len(rs):.2f}/{sum(r <= 5 for r in rs) / len(rs):.2f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--val-book", default="middlemarch.txt")
    ap.add_argument("--cache", default="tmp/meaning_tokens")
    ap.add_argument("--steps", type=int, nargs="+", default=[500, 1500])
    ap.add_argument("--mix", type=float, nargs="+", default=[0.0])
    args = ap.parse_args()
    root = Path("../shared/data/books")
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    model = LongMemModel.load(meaning_dim=256)
    torch.set_num_threads(int(os.environ.get("PROBE_THREADS", "2")))
    tm.document = token_document
    train_books = [str(root / b) for b in BOOKS if b != args.val_book]
    log = lambda m: None  # noqa: E731

    def cached(name, build):
        path = cache / f"{name}.pt"
        if path.exists():
            return torch.load(path, weights_only=False)
        docs = build()
        torch.save(docs, path)
        return docs

    train = {"pairs": cached(f"pairs-no-{args.val_book}", lambda: tm.pair_documents(
        model, train_books, read_pair_file("data/train/paraphrase_train.jsonl"), 16, 16_000, 0, log))}
    val = {}
    for q in ("data/train/book_questions.jsonl", "data/train/book_questions_natural.jsonl"):
        rows = tm.read_book_questions(q)
        name = Path(q).stem
        train[name] = cached(f"{name}-no-{args.val_book}", lambda: tm.book_question_documents(
            model, train_books, rows, 16_000, log))
        val[name] = cached(f"{name}-{args.val_book}", lambda: tm.book_question_documents(
            model, [str(root / args.val_book)], rows, 16_000, log))
    val["pairs (5 documents held out)"] = train["pairs"][-5:]
    train["pairs"] = train["pairs"][:-5]
    docs = [d for v in train.values() for d in v]
    F = docs[0].tokens.shape[1]
    # untrained MaxSim on the raw values (identity maps), and the library's mean-pooled maps, same documents
    ident = TokenMaps(F, F)
    with torch.no_grad():
        for lin in (ident.question, ident.sentence):
            lin.weight.copy_(torch.eye(F))
            lin.bias.zero_()
    print(json.dumps({"variant": "maxsim raw values", **{k: top([r for d in v for r in ranks_tokens(ident, d)])
                                                          for k, v in val.items()}}), flush=True)
    torch.manual_seed(0)
    proj = meaning.MeaningProjection(F, 256)
    tm.fit(proj, [as_mean(d) for d in docs], steps=1000, lr=1e-3, weight_decay=0.01, temperature=0.05, seed=0,
           log=log)
    print(json.dumps({"variant": "mean-pooled, linear (library)", **{
        k: top([r for d in v for r in tm.ranks(proj, as_mean(d))]) for k, v in val.items()}}), flush=True)
    for steps in args.steps:
        for mix in args.mix:
            temp = 0.05
            torch.manual_seed(0)
            maps = TokenMaps(F, 128)
            maps.mix = mix
            fit_tokens(maps, docs, steps, 1e-3, temp, 0)
            print(json.dumps({"variant": f"maxsim trained {steps} steps, means' share {mix}", **{
                k: top([r for d in v for r in ranks_tokens(maps, d)]) for k, v in val.items()}}), flush=True)


if __name__ == "__main__":
    main()
