"""Probe: key the perplexity cache on LongMem's own final states instead of the backbone's?

eval-ppl --cache mixes LongMem's distribution with a neural cache keyed on the *backbone's* final normed states
(experiments/notes/2026-12-02-ppl-cache.md: "keying the LongMem mix on LongMem's own final states was not tried").
Here both caches are built side by side over the same segments: "bb" keyed on the backbone's state, "lm" on the
state LongMem's LM head reads (captured with a forward hook), and each is mixed into LongMem's distribution over a
small grid (gated lam x theta). Tuning books only for choosing; a report book only to confirm.

    OMP_NUM_THREADS=2 .venv/bin/python experiments/probes/ppl_longmem_keys.py BOOK [BOOK...] --max-tokens 8192
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from longmem_core.model.segments import segment_tokens  # noqa: E402
from longmem_core.model.model import LongMemModel  # noqa: E402
from longmem_core.answer.neural_cache import final_states, mix, new_cache  # noqa: E402

LAMS = (0.1, 0.2, 0.3)
THETAS = (20.0, 40.0, 80.0)


@torch.no_grad()
def run_book(model: LongMemModel, text: str, max_tokens: int) -> dict:
    ids = model.tokenizer(text, add_special_tokens=False)["input_ids"][:max_tokens]
    seg = segment_tokens(model)
    bank = model.new_bank()
    caches = {"bb": new_cache(model, 1 << 16), "lm": new_cache(model, 1 << 16)}
    vocab = model.backbone.lm_head.weight.shape[0]
    captured: list[torch.Tensor] = []
    hook = model.backbone.lm_head.register_forward_hook(lambda mod, inp, out: captured.append(inp[0].detach()))
    nll: dict[str, float] = {"local": 0.0, "longmem": 0.0}
    scored = 0
    try:
        for s in range(0, len(ids), seg):
            piece = ids[s:s + seg]
            if len(piece) < 2:
                break
            x = torch.tensor([model.with_sink(piece)], device=model.device)  # [1, S + T]
            start = x.shape[1] - len(piece)
            hs = model.backbone(x).hidden_states
            local = model.backbone.logits(hs[-1])[0, start:-1].float()  # [T - 1, V]
            captured.clear()
            longmem = model(x, bank).logits[0, start:-1].float()  # [T - 1, V]
            states = {"bb": final_states(model, hs[-1])[0, start:].float(),  # [T, C]
                      "lm": captured[-1][0, start:].float()}  # [T, C] what LongMem's LM head read
            tgt = x[0, start + 1:]
            nll["local"] -= float(torch.log_softmax(local, -1).gather(1, tgt[:, None]).sum())
            nll["longmem"] -= float(torch.log_softmax(longmem, -1).gather(1, tgt[:, None]).sum())
            for name, cache in caches.items():
                for theta in THETAS:
                    p_cache, _ = cache.distribution(states[name][:-1], vocab, theta)  # [T - 1, V]
                    conf = p_cache.max(-1, keepdim=True).values
                    for lam in LAMS:
                        for base, logits in (("longmem", longmem), ("local", local)):
                            if name == "lm" and base == "local":
                                continue
                            key = f"{base}+{name},theta={theta:g},lam={lam:g}"
                            logp = mix(logits, p_cache, lam * conf)
                            nll[key] = nll.get(key, 0.0) - float(logp.gather(1, tgt[:, None]).sum())
            scored += len(piece) - 1
            model.memorize_ids(piece, bank, token_start=s)
            following = ids[s + 1:s + 1 + len(piece)]
            for name, cache in caches.items():
                cache.add(states[name][:len(following)], piece[:len(following)], following)
            print(f"  segment at {s}: scored {scored}", file=sys.stderr, flush=True)
    finally:
        hook.remove()
    ppl = {k: math.exp(v / scored) for k, v in nll.items()}
    return {"tokens": scored, "ppl": ppl, "vs_local": {k: 100 * (v / ppl["local"] - 1) for k, v in ppl.items()}}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("books", nargs="+")
    p.add_argument("--max-tokens", type=int, default=8192)
    p.add_argument("--checkpoint", default=str(ROOT / "assets/sidenet-books.safetensors"))
    p.add_argument("--out", default=None)
    args = p.parse_args()
    model = LongMemModel.load(checkpoint=args.checkpoint)
    out = {}
    for b in args.books:
        out[Path(b).name] = run_book(model, Path(b).read_text(encoding="utf-8"), args.max_tokens)
        print(Path(b).name, json.dumps({k: round(v, 2) for k, v in sorted(out[Path(b).name]["vs_local"].items(), key=lambda kv: kv[1])[:8]}), flush=True)
    keys = list(next(iter(out.values()))["vs_local"])
    mean = {k: sum(r["vs_local"][k] for r in out.values()) / len(out) for k in keys}
    out["mean_vs_local"] = dict(sorted(mean.items(), key=lambda kv: kv[1]))
    print(json.dumps(out["mean_vs_local"], indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
