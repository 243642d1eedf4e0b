"""Do answers loop? The app's example questions in the answer modes on the real default backbone.

    PYTHONPATH=. .venv/bin/python experiments/probes/fluency_probe.py --doc the_time_machine_ch1.txt --modes cache \
        [--guard 4] [--no-ends] [--tokens 128] --out tmp/fluency.jsonl

The document (one of the app's bundled examples in assets/) is memorized as the app memorizes it; the questions are
the Chat tab's placeholder, the browser test's, the README's and assets/qa_time_machine.jsonl's. Every answer is
printed as a JSON line with ``loop``: what ``generation.find_loop`` finds (a run of 4 words said 3+ times, or a
sentence of 3+ words said twice), or null. ``--guard 0`` turns the repetition guard off (the loop as it was
before it); ``--no-ends`` keeps the guard but not its end-of-answer rule.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from longmem_core import LongMemModel
from longmem_core.answer import answer
from longmem_core.model import generation
from longmem_core.config import default_checkpoint

ROOT = Path(__file__).resolve().parents[2]
APP_QUESTIONS = ["What did the Time Traveller explain?", "What did the Time Traveller explain to his guests?",
                 "Who is the Time Traveller?", "Who is Filby?"]


def questions() -> list[str]:
    lines = (ROOT / "assets" / "qa_time_machine.jsonl").read_text(encoding="utf-8").splitlines()
    return APP_QUESTIONS + [json.loads(line)["question"] for line in lines if line.strip()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--doc", default="the_time_machine_ch1.txt", help="a file in assets/")
    p.add_argument("--modes", default=",".join(answer.MODES))
    p.add_argument("--guard", type=int, default=generation.settings.GENERATION.guard_ngram, help="the guard's n (0: off)")
    p.add_argument("--no-ends", action="store_true", help="the guard without its end-of-answer rule")
    p.add_argument("--tokens", type=int, default=128, help="longest answer (the app's default: 128)")
    p.add_argument("--out", default=None, help="also write the JSON lines here")
    args = p.parse_args()
    generation.settings.GENERATION = dataclasses.replace(generation.settings.GENERATION, guard_ngram=args.guard,
                                                         guard_ends=not args.no_ends)
    model = LongMemModel.load(checkpoint=default_checkpoint())
    bank = model.new_bank()
    model.memorize((ROOT / "assets" / args.doc).read_text(encoding="utf-8"), bank, source=args.doc)
    rows = []
    for mode in args.modes.split(","):
        for q in questions():
            t0 = time.perf_counter()
            a = answer.answer(model, bank, q, mode=mode, max_new_tokens=args.tokens)
            rows.append({"doc": args.doc, "mode": mode, "guard": args.guard, "ends": not args.no_ends, "question": q,
                         "answer": a.text, "loop": generation.find_loop(a.text),
                         "seconds": round(time.perf_counter() - t0, 1)})
            print(json.dumps(rows[-1]), flush=True)
    if args.out:
        Path(args.out).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    for mode in args.modes.split(","):
        mine = [r for r in rows if r["mode"] == mode]
        print(f"{mode}: {sum(r['loop'] is not None for r in mine)}/{len(mine)} answers loop", flush=True)


if __name__ == "__main__":
    main()
