"""Trade-off probe: scale a checkpoint's memory share (every head's sigmoid gate times ALPHA) and measure held-out
perplexity and chat with the same book excerpt as chat_check.py.

    PYTHONPATH=. .venv/bin/python experiments/probes/gate_scale.py CKPT --alphas 1,0.5 [--book FILE] [--tokens 16384]

sigmoid(g') = alpha * sigmoid(g) is done by replacing the gate logits, so nothing in the library changes.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chat_check import ROOT, chat_answers  # noqa: E402

from longmem_core.evals.evaluate import perplexity  # noqa: E402
from longmem_core.model.model import LongMemModel  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("--alphas", default="1,0.5")
    ap.add_argument("--book", default=str(ROOT.parent / "shared" / "data" / "books" / "adventures_of_sherlock_holmes.txt"))
    ap.add_argument("--tokens", type=int, default=16_384)
    ap.add_argument("--chat-text", default=str(ROOT / "assets" / "the_time_machine_ch1.txt"))
    args = ap.parse_args(argv)
    model = LongMemModel.load(checkpoint=args.checkpoint)
    base = torch.sigmoid(model.side.gate.detach().clone())
    book = Path(args.book).read_text(encoding="utf-8")
    excerpt = Path(args.chat_text).read_text(encoding="utf-8")[:3000]
    out = {}
    for alpha in (float(a) for a in args.alphas.split(",")):
        with torch.no_grad():
            model.side.gate.copy_(torch.logit((alpha * base).clamp(1e-6, 1 - 1e-6)))
        r = perplexity(book, model, None, args.tokens)
        bank = model.new_bank()
        model.memorize(excerpt, bank)
        chats = chat_answers(model, bank, 40, label=f"alpha {alpha}")
        out[str(alpha)] = {"ppl": r, "chat": chats}
        print(f"alpha {alpha}: ppl local {r['ppl_local']:.3f} longmem {r['ppl_longmem']:.3f}; loops "
              f"{sum(c['loops'] for c in chats)}/{len(chats)}", file=sys.stderr, flush=True)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
