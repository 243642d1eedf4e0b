"""Why the memory layer finds a fact but does not recall it: two measurements behind docs/RESULTS.md.

1. Where the memory attention goes: for held-out facts (evaluation wordings, *Frankenstein* as the book), the share
   of each head's memory-attention mass that lands on the fact's memory segment, at the positions that predict the
   value's tokens, and what the model predicts there.
2. What the memory layer's stored keys and values say about digits: a ridge-regression linear probe (trained on
   half the digit tokens, tested on the other half) for the digit itself (from the values and from the keys) and
   for the digit before it (from the keys and from the values) — an induction-style copy needs the latter in the
   keys.

Run from the repo root: PYTHONPATH=. .venv/bin/python experiments/probes/recall_probe.py [--checkpoint FILE]
"""
import argparse
import random

import torch

from longmem_core import LongMemModel
from longmem_core.config import RecallTrainConfig
from longmem_core.training.objectives import recall as rc

BOOK = "../shared/data/books/frankenstein.txt"


def attention_on_facts(model, n=6):
    tok, cs = model.tokenizer, model.cfg.chunk_size
    ex = rc.read_excerpts(model, [BOOK], 2, seed=5, log=lambda m: None)[0]
    rng = random.Random(7)
    shares, correct, total = [], 0, 0
    for _ in range(n):
        e = rc.make_example(model, ex, rng, RecallTrainConfig(data=[]), evaluation=True)
        start = 0
        for k, _ in e.bank_parts:
            if not any(k is kk for kk in ex.keys):
                fact_start, fact_len = start, k.shape[0]
            start += k.shape[0]
        bank = rc.build_bank(model, e.bank_parts)
        with torch.no_grad():
            out = model(torch.tensor([e.input_ids]), bank, trace=True)
        for p in e.answer:
            cids, w = out.trace.chunk_ids[0, p - 1], out.trace.chunk_weights[0, p - 1]  # [H, R]
            on_fact = (cids * cs >= fact_start) & (cids * cs < fact_start + fact_len)
            shares.append((w * on_fact).sum(-1))  # [H]
            correct += int(out.logits[0, p - 1].argmax()) == e.input_ids[p]
            total += 1
        print(f"{e.fact.text!r}: predicted {tok.decode(out.logits[0, [p - 1 for p in e.answer]].argmax(-1))!r}")
    s = torch.stack(shares)  # [tokens, H]
    print(f"memory-attention mass on the fact's segment at the {total} value-predicting positions: "
          f"mean {float(s.mean()):.2f}, per head min {float(s.min()):.2f} max {float(s.max()):.2f}; "
          f"value tokens predicted right: {correct}/{total}")


def probe(X, y):
    n = len(y) // 2
    Xa = torch.cat([X, torch.ones(len(X), 1)], 1)
    Y = torch.nn.functional.one_hot(y, 10).float()
    W = torch.linalg.solve(Xa[:n].T @ Xa[:n] + torch.eye(Xa.shape[1]), Xa[:n].T @ Y[:n])
    return float(((Xa[n:] @ W).argmax(1) == y[n:]).float().mean())


def digit_probes(model, n_texts=40):
    tok = model.tokenizer
    rng = random.Random(0)
    book = open(BOOK, encoding="utf-8").read()
    rows = {"digit from values": ([], []), "digit from keys": ([], []), "previous digit from keys": ([], []), "previous digit from values": ([], [])}
    for _ in range(n_texts):
        s = rng.randrange(0, len(book) - 3000)
        text = (book[s:s + 1500] + f" The code is {rng.randrange(10**5, 10**6)}. " + book[s + 1500:s + 2000]
                + f" Number {rng.randrange(10**5, 10**6)} was noted.")
        ids = tok(text, add_special_tokens=False)["input_ids"][:1000]
        x = torch.tensor([model.with_sink(ids)])
        with torch.no_grad():
            out = model.backbone(x, memory_layer=model.memory_layer, stop_after=model.memory_layer, last_kv_only=True)
        keys, values = out.memory_keys[0, 1:], out.memory_values[0, 1:]  # [n, G, D], as a bank stores them
        pieces = tok.convert_ids_to_tokens(ids)
        for i, p in enumerate(pieces):
            if not (len(p) == 1 and p.isdigit()):
                continue
            for name, t in (("digit from values", values), ("digit from keys", keys)):
                rows[name][0].append(t[i].flatten())
                rows[name][1].append(int(p))
            prev = pieces[i - 1] if i else ""
            if len(prev) == 1 and prev.isdigit():
                for name, t in (("previous digit from keys", keys), ("previous digit from values", values)):
                    rows[name][0].append(t[i].flatten())
                    rows[name][1].append(int(prev))
    for name, (X, y) in rows.items():
        print(f"linear probe, {name}: {probe(torch.stack(X).float(), torch.tensor(y)):.2f} held-out accuracy "
              f"({len(y)} digit tokens, chance 0.10)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default="assets/sidenet.safetensors")
    args = ap.parse_args()
    torch.manual_seed(0)
    m = LongMemModel.load(checkpoint=args.checkpoint)
    attention_on_facts(m)
    digit_probes(m)
