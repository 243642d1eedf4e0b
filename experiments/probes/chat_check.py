"""Does a checkpoint still chat? Greedy answers with a book excerpt in memory, for several checkpoints side by side.

    PYTHONPATH=. .venv/bin/python experiments/probes/chat_check.py CKPT [CKPT ...] [--chars 3000] [--tokens 40]

``none`` as a checkpoint means the untrained SideNet. Each answer is printed with a loop flag: True when some
n-gram (n <= 8) repeats four times back to back (the failure LM-trained checkpoints show in chat).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from longmem_core.model.model import LongMemModel

ROOT = Path(__file__).resolve().parents[2]
QUESTIONS = ["What did the Time Traveller explain to his guests?",
             "Who was at the dinner, and what did they think of the Time Traveller's idea?",
             "Summarise the passage in two sentences."]


def loops(ids: list[int], max_n: int = 8, times: int = 4) -> bool:
    """True when some n-gram (n <= max_n) repeats ``times`` times back to back ("bespoke, bespoke, ...")."""
    for n in range(1, max_n + 1):
        for i in range(len(ids) - n * times + 1):
            if all(ids[i + k * n:i + (k + 1) * n] == ids[i:i + n] for k in range(1, times)):
                return True
    return False


def chat_answers(model: LongMemModel, bank, tokens: int, label: str = "") -> list[dict]:
    """Greedy answers to QUESTIONS with ``bank`` in memory, each with its loop flag (printed as they come)."""
    answers = []
    for q in QUESTIONS:
        gen = model.generate(model.chat_ids(q), bank, max_new_tokens=tokens)
        for _ in gen:
            pass
        answers.append({"question": q, "answer": gen.text, "loops": loops(gen.token_ids),
                        "memory_share": round(gen.memory_share, 3)})
        print(f"[{label}] {q}\n  -> {gen.text!r} loops={answers[-1]['loops']}", file=sys.stderr, flush=True)
    return answers


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--text", default=str(ROOT / "assets" / "the_time_machine_ch1.txt"))
    ap.add_argument("--chars", type=int, default=3000)
    ap.add_argument("--tokens", type=int, default=40)
    args = ap.parse_args(argv)
    text = Path(args.text).read_text(encoding="utf-8")[:args.chars]
    out = {}
    for ckpt in args.checkpoints:
        model = LongMemModel.load(checkpoint=None if ckpt == "none" else ckpt)
        bank = model.new_bank()
        model.memorize(text, bank, source=Path(args.text).name)
        out[ckpt] = chat_answers(model, bank, args.tokens, label=Path(ckpt).name)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
