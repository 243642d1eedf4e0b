"""Probe: would an exact-match copy (``TokenCache.match``) lower perplexity beyond LongMem + the state cache?

Step 1 (``dump``, slow): reads a book as ``eval-ppl --cache`` does and saves, per scored token, the probability of
the true next token under: the backbone alone, LongMem, and each mixed with the state cache at eval-ppl's setting;
plus the token ids. Step 2 (``grid``, fast, offline): mixes in p_match, the distribution over what followed the
longest repeat of the context's suffix in the *previous* segments, with weight lam * min(1, (L - m + 1) / ramp)
for a match of L >= m tokens, and prints perplexity per setting.

    python experiments/probes/ppl_match_probe.py dump BOOK.txt OUT.pt --max-tokens 16384 --checkpoint CKPT
    python experiments/probes/ppl_match_probe.py grid OUT.pt [OUT2.pt ...]
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def dump(book: str, out: str, max_tokens: int, checkpoint: str) -> None:
    from longmem_core.model.segments import segment_logits, segment_tokens
    from longmem_core.model.model import LongMemModel
    from longmem_core.answer.neural_cache import mix
    from longmem_core.evals.ppl_cache import DIM_MIX, LAMBDA_MIX, THETA_MIX, segment_states
    from longmem_core.answer.neural_cache import new_cache

    model = LongMemModel.load(checkpoint=checkpoint)
    text = Path(book).read_text(encoding="utf-8", errors="replace")
    ids = model.tokenizer(text, add_special_tokens=False)["input_ids"][:max_tokens]
    seg = segment_tokens(model)
    cache = new_cache(model, DIM_MIX)
    vocab = model.backbone.lm_head.weight.shape[0]
    bank = model.new_bank()
    rows: dict[str, list[torch.Tensor]] = {k: [] for k in ("local", "longmem", "local_cache", "longmem_cache",
                                                           "p_cache", "confidence")}
    seg_of: list[int] = []
    for n, s in enumerate(range(0, len(ids), seg)):
        piece = ids[s:s + seg]
        if len(piece) < 2:
            break
        with torch.no_grad():  # the backbone alone and LongMem on the segment; the cache's (final-state) keys
            logits = {"local": segment_logits(model, piece, None, backbone_only=True)[0]}
            logits["longmem"], targets, _, _ = segment_logits(model, piece, bank)
            states = segment_states(model, cache, piece)
        targets = targets.cpu()
        for r in range(0, targets.shape[0], 256):
            tgt = targets[r:r + 256]
            p_cache, _ = cache.distribution(states[r:r + tgt.shape[0]], vocab, THETA_MIX)
            weight = LAMBDA_MIX * p_cache.max(dim=-1, keepdim=True).values
            rows["p_cache"].append(p_cache.gather(1, tgt[:, None])[:, 0])
            rows["confidence"].append(weight[:, 0] / LAMBDA_MIX)
            for name in ("local", "longmem"):
                block = logits[name][r:r + tgt.shape[0]].float().cpu()
                rows[name].append(torch.log_softmax(block, -1).gather(1, tgt[:, None])[:, 0])
                rows[name + "_cache"].append(mix(block, p_cache, weight).gather(1, tgt[:, None])[:, 0])
        seg_of += [n] * targets.shape[0]
        model.memorize_ids(piece, bank, token_start=s)
        following = ids[s + 1:s + 1 + len(piece)]
        cache.add(states[:len(following)], piece[:len(following)], following)
        print(f"segment {n}: {s + len(piece)}/{len(ids)}", file=sys.stderr, flush=True)
    torch.save({"ids": ids, "seg": seg, "segment": torch.tensor(seg_of),
                **{k: torch.cat(v) for k, v in rows.items()}}, out)


def match_probs(ids: list[int], seg: int, min_match: int, max_n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """For every scored token (the targets of ``dump``'s order): p_match(true next token) and the match length L,
    the context being everything before the target, the stored text the previous segments (what followed there
    known: a stored place needs its next token inside a previous segment)."""
    from collections import defaultdict
    p_out, l_out = [], []
    for s in range(0, len(ids), seg):
        piece = ids[s:s + seg]
        if len(piece) < 2:
            break
        stored = ids[:s]  # previous segments
        index = defaultdict(list)
        for i in range(len(stored) - 1):  # place i predicts stored[i + 1] (the last stored token's next is ids[s])
            index[stored[i]].append(i)
        if s:
            index[stored[-1]].append(len(stored) - 1)
        for t in range(len(piece) - 1):  # context ids[: s + t + 1], target ids[s + t + 1]
            end = s + t  # last context position
            places = index.get(ids[end], [])
            best, chosen = 0, []
            for i in places:
                L = 1
                while L < max_n and i - L >= 0 and end - L >= 0 and ids[i - L] == ids[end - L]:
                    L += 1
                if L > best:
                    best, chosen = L, [i]
                elif L == best:
                    chosen.append(i)
            target = ids[end + 1]
            if best >= min_match:
                hits = sum(1 for i in chosen if ids[i + 1] == target)
                p_out.append(hits / len(chosen))
            else:
                p_out.append(0.0)
            l_out.append(best)
    return torch.tensor(p_out, dtype=torch.float64), torch.tensor(l_out)


def grid(paths: list[str]) -> None:
    data = [torch.load(p) for p in paths]
    for d in data:
        assert d["longmem"].shape[0] == len(d["ids"]) - (len(d["ids"]) + d["seg"] - 1) // d["seg"], "row count"
    for m in (2, 3, 4, 6):
        matches = [match_probs(d["ids"], d["seg"], m) for d in data]
        for ramp in (1, 2, 4, 8):
            for lam in (0.05, 0.1, 0.2, 0.3, 0.5):
                line = []
                for d, (pm, L) in zip(data, matches):
                    w = lam * torch.clamp((L - m + 1).double() / ramp, 0, 1) * (L >= m)
                    figures = []
                    for base in ("local", "longmem", "longmem_cache"):
                        lp = d[base].double()
                        mixed = torch.log((1 - w) * lp.exp() + w * pm)
                        figures.append(math.exp(-mixed.mean()) / math.exp(-d["local"].double().mean()) - 1)
                    line.append(" ".join(f"{100 * f:+.2f}%" for f in figures))
                print(f"m={m} ramp={ramp} lam={lam}: " + " | ".join(line))
    for d in data:
        print("reference:", {k: f"{100 * (math.exp(-d[k].double().mean()) / math.exp(-d['local'].double().mean()) - 1):+.2f}%"
                             for k in ("longmem", "local_cache", "longmem_cache")})


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("step", choices=("dump", "grid"))
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--max-tokens", type=int, default=16384)
    ap.add_argument("--checkpoint", default=str(ROOT / "assets/sidenet-books.safetensors"))
    a = ap.parse_args()
    if a.step == "dump":
        dump(a.paths[0], a.paths[1], a.max_tokens, a.checkpoint)
    else:
        grid(a.paths)
