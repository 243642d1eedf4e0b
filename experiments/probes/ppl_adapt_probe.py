"""Probe: what moves eval-ppl on the tuning books, beside the neural cache? (a report book only once settings are fixed)

Per book, the first --tokens tokens in 1,024-token segments, memory of the previous segments only (as eval-ppl).
The backbone's work on each segment is computed once (cached features); every variant then runs the SideNet's
memory layer only. Variants of LongMem (books checkpoint), parts joined by "+":
  base           as trained
  alpha=A        every head's memory share scaled by A
  chunks=R       R chunks retrieved per query and head (trained with 16)
  adapt=LRxS     test-time training (dynamic evaluation, Krause et al. 2018): after a segment is scored and
                 before it enters memory, S AdamW steps of lr LR on that segment (reading the bank as it was
                 when it was scored), trainable = memory layer + gates; the change carries to later segments
Each variant (and the backbone alone, "local") alone and mixed with each neural cache of --caches
(KEY_LAYER:LAM[:THETA], lam times the cache's confidence), and with --match also an exact copy on top of each
(what followed the longest earlier repeat of the context's last tokens, weighted by lam times the copy's own
confidence where the repeat is long enough; never by anything that reads the target).

PYTHONPATH=. .venv/bin/python experiments/probes/ppl_adapt_probe.py --tokens 8192 --variants base,alpha=0.75+adapt=1e-3x1 \
    --caches 27:0.2,final:0.2
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import torch

from longmem_core.model.model import LongMemModel
from longmem_core.answer.neural_cache import TokenCache, key_states
from longmem_core.evals.ppl_cache import DIM_MIX, THETA_MIX
from longmem_core.training.features import cached_segment_logits, segment_features
from longmem_core.training.params import make_optimizer

N_MINS = (3, 5, 8)
BOOKS = Path("/work/shared/data/books")


def parse_variant(v: str) -> dict:
    """"base", or parts joined by "+": alpha=A, chunks=R, adapt=LRxS (e.g. alpha=0.75+adapt=1e-3x1)."""
    out = {"name": v, "alpha": 1.0, "chunks": None, "adapt": None}
    if v == "base":
        return out
    for part in v.split("+"):
        key, val = part.split("=")
        if key == "alpha":
            out["alpha"] = float(val)
        elif key == "chunks":
            out["chunks"] = int(val)
        elif key == "adapt":
            lr, steps = val.split("x")
            out["adapt"] = (float(lr), int(steps))
        else:
            raise ValueError(part)
    return out


def run_book(path: Path, base: LongMemModel, variants: list[dict], tokens: int, cache_specs: list,
             match_lams: tuple = ()) -> dict:
    ids = base.tokenizer(path.read_text(encoding="utf-8"), add_special_tokens=False)["input_ids"][:tokens]
    seg = base.segment_length - len(base.with_sink([]))
    pieces = [ids[s:s + seg] for s in range(0, len(ids), seg)]
    feats = [segment_features(base, p, torch.float32) for p in pieces]
    start = len(base.with_sink([]))
    nll: dict[str, float] = {}
    n_tok = 0
    # local only and the caches: computed once; a mix needs only p_cache(target) and the weight per position
    caches = {c: TokenCache(base.backbone.d_model, DIM_MIX, layer=c[0]) for c in cache_specs}
    pc_tgt: dict = {c: [] for c in cache_specs}  # per segment [T-1]
    wts: dict = {c: [] for c in cache_specs}
    locals_ = []
    match_p: list = []
    match_n: list = []
    match_max: list = []  # the match's own confidence (its largest probability): known before the target is
    for s, f in enumerate(feats):
        tgt = torch.tensor(f.ids[start + 1:])
        with torch.no_grad():
            x = torch.tensor([f.ids])
            hs = base.backbone(x).hidden_states
            loc = base.backbone.logits(hs[-1])[0, start:-1]
            lp = torch.log_softmax(loc.float(), -1).gather(1, tgt[:, None])[:, 0]
        locals_.append(lp)
        following = ids[s * seg + 1:s * seg + 1 + len(pieces[s])]
        first = caches[cache_specs[0]]
        pm, nm, mx = [], [], []  # exact copy: p_match(target) and the match length per scored position
        for t in range(len(tgt)):
            g = s * seg + t  # global index of the token whose successor is predicted
            p_match, n = first.match(ids[max(0, g - 15):g + 1], loc.shape[-1])
            pm.append(float(p_match[tgt[t]]))
            nm.append(n)
            mx.append(float(p_match.max()))
        match_p.append(torch.tensor(pm))
        match_n.append(torch.tensor(nm))
        match_max.append(torch.tensor(mx))
        for c, cache in caches.items():
            states = key_states(base, cache, hs)[0, start:]
            p_cache, _ = cache.distribution(states[:-1], loc.shape[-1], c[2])
            pc_tgt[c].append(p_cache.gather(1, tgt[:, None])[:, 0])
            wts[c].append(c[1] * p_cache.max(dim=-1).values)
            cache.add(states[:len(following)], pieces[s][:len(following)], following)
        n_tok += len(tgt)

    def add(name: str, s: int, lp: torch.Tensor) -> None:
        nll[name] = nll.get(name, 0.0) - float(lp.sum())
        for c in cache_specs:
            w = wts[c][s]
            mixed = torch.logaddexp(lp + torch.log1p(-w), torch.log((w * pc_tgt[c][s]).clamp(min=1e-30)))
            key = f"{name}+cache" + ("" if c == cache_specs[0] else f"[{c[0]},{c[1]:g},{c[2]:g}]")
            nll[key] = nll.get(key, 0.0) - float(mixed.sum())
            for lam_m in match_lams:
                for n_min in N_MINS:
                    # honest weights only: from the match length and its confidence, never from the target
                    wm = lam_m * (match_n[s] >= n_min).float() * match_max[s]
                    both = torch.logaddexp(mixed + torch.log1p(-wm), torch.log((wm * match_p[s]).clamp(min=1e-30)))
                    k2 = f"{key}+match[{lam_m:g},n>={n_min}]"
                    nll[k2] = nll.get(k2, 0.0) - float(both.sum())

    for s, lp in enumerate(locals_):
        add("local", s, lp)
    saved = copy.deepcopy(base.side.state_dict())
    for v in variants:
        t0 = time.time()
        model = base
        model.side.load_state_dict(saved)
        if v["alpha"] != 1.0:
            with torch.no_grad():
                share = torch.sigmoid(model.side.gate) * v["alpha"]
                model.side.gate.copy_(torch.log(share / (1 - share)))
        top_k = v["chunks"] * model.cfg.chunk_size if v["chunks"] else None
        opt = None
        if v["adapt"]:
            lr, steps = v["adapt"]
            _, opt = make_optimizer(model, "memory", lr, 1.0, 0.0)
        bank = model.new_bank()
        for s, f in enumerate(feats):
            tgt = torch.tensor(f.ids[start + 1:])
            with torch.no_grad():
                lg, _ = cached_segment_logits(model, f, bank, top_k)
            add(v["name"], s, torch.log_softmax(lg.float(), -1).gather(1, tgt[:, None])[:, 0])
            if opt is not None and s < len(feats) - 1 and len(bank):
                model.train()
                for _ in range(steps):
                    lg, _ = cached_segment_logits(model, f, bank, top_k)
                    loss = torch.nn.functional.cross_entropy(lg.float(), tgt)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                model.eval()
            bank.add(f.keys.float(), f.values.float(), token_start=s * seg)
        model.side.load_state_dict(saved)
        model.side.requires_grad_(False)
        print(f"  {path.stem} {v['name']}: {math.exp(nll[v['name']] / n_tok):.3f} / +cache "
              f"{math.exp(nll[v['name'] + '+cache'] / n_tok):.3f}"
              f" ({time.time() - t0:.0f} s)", flush=True)
    return {"tokens": n_tok, "nll": nll}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--books", default="frankenstein,the_time_machine")
    ap.add_argument("--tokens", type=int, default=8192)
    ap.add_argument("--checkpoint", default="assets/sidenet-books.safetensors")
    ap.add_argument("--variants", default="base,alpha=0.75,adapt=1e-3x1")
    ap.add_argument("--caches", default="final:0.2", help="key layer (final or an index into the hidden states)"
                    ":lam (gated)[:theta], comma-separated; the first is the reported +cache")
    ap.add_argument("--match", default="", help="exact-copy weights to try on top of the first cache")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    torch.manual_seed(0)
    base = LongMemModel.load(checkpoint=args.checkpoint)
    base.eval()
    base.side.requires_grad_(False)  # cached features need the idle side layers frozen (features.check_cacheable)
    names = args.variants.split(",")
    variants = [parse_variant(v) for v in names]
    specs = []
    for c in args.caches.split(","):
        layer, lam, *theta = c.split(":")
        specs.append((None if layer == "final" else int(layer), float(lam), float(theta[0]) if theta else THETA_MIX))
    per_book = {b: run_book(BOOKS / f"{b}.txt", base, variants, args.tokens, specs,
                                 tuple(float(x) for x in args.match.split(",") if x)) for b in args.books.split(",")}
    total = sum(r["tokens"] for r in per_book.values())
    keys = per_book[next(iter(per_book))]["nll"].keys()
    ppl = {k: math.exp(sum(r["nll"][k] for r in per_book.values()) / total) for k in keys}
    print(f"tokens {total}")
    for k, v in ppl.items():
        print(f"{k:28s} {v:8.3f}  {100 * (v / ppl['local'] - 1):+.2f}%")
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "tokens": total, "ppl": ppl}, indent=1))


if __name__ == "__main__":
    main()
