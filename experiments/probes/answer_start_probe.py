"""Probe: does the small reader answer more questions when it cannot open with talk about "the passage"?

On the tuning books, 3 of the 4 held questions the default mode missed (and on the report books 8 of 13) opened
with "The passage provides..." / "The passage is about..." instead of an answer. Variants of the default mode,
each on the same banks and prompts (tuning books only):

- shipped: the default mode as it is;
- ban_first: the tokens of " passage(s)" / "passage(s)" cannot be among the first 4 answer tokens;
- ban_all: they cannot appear anywhere in the answer;
- prefix_*: the answer is made to begin with a fixed text (``answer_prefix``, as RULER's templates do).

    .venv/bin/python experiments/probes/answer_start_probe.py --out tmp/answer_start.json
    .venv/bin/python experiments/probes/answer_start_probe.py --top 6 --variants shipped,prefix_according,prefix_from,\
        prefix_text,prefix_memory --out tmp/answer_start_top6.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tuning_runs import BOOKS, QUESTIONS  # noqa: E402

from longmem_core.answer import answer, neural_cache  # noqa: E402
from longmem_core.evals.eval_qa import contains_any, read_questions  # noqa: E402
from longmem_core.model.generation import Proposal  # noqa: E402
from longmem_core.model.model import LongMemModel  # noqa: E402

PREFIXES = {"prefix_according": "According to what I read,", "prefix_short": "Short answer:",
            "prefix_from": "From what I read,", "prefix_text": "According to the text,",
            "prefix_memory": "According to my memory,"}
BAN_WORDS = ("passage", "passages", " passage", " passages", "Passage", " Passage")


def banned_ids(model) -> list[int]:
    ids = set()
    for w in BAN_WORDS:
        toks = model.tokenizer(w, add_special_tokens=False)["input_ids"]
        if len(toks) == 1:
            ids.add(toks[0])
    return sorted(ids)


class Banning(neural_cache.CopyMix):
    """The copy path with some tokens forbidden among the first ``within`` answer tokens."""

    def __init__(self, model, cache, banned: list[int], within: int) -> None:
        super().__init__(model, cache)
        self.banned, self.within, self.start = banned, within, None

    def __call__(self, step, context):
        if self.start is None:
            self.start = len(context)
        p = super().__call__(step, context)
        if len(context) - self.start < self.within:
            scores = p.scores.clone()
            scores[self.banned] = -float("inf")
            p = Proposal(scores, p.copy_tokens - frozenset(self.banned), p.copy_length)
        return p


def generate(model, prepared, hook) -> str:
    from longmem_core.model import generation
    gen = generation.generate(model, prepared.prompt_ids, None, max_new_tokens=48, backbone_only=True, logits_hook=hook)
    return "".join(gen)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=None)
    p.add_argument("--books", default=",".join(QUESTIONS))
    p.add_argument("--variants", default="shipped,ban_first,ban_all,prefix_according,prefix_short",
                   help="comma-separated: shipped, ban_first, ban_all and names of PREFIXES")
    p.add_argument("--top", type=int, default=answer.SEARCH_TOP, help="chunks asked of the search")
    args = p.parse_args()
    from longmem_core.config import default_checkpoint
    model = LongMemModel.load(checkpoint=default_checkpoint())
    banned = banned_ids(model)
    print("banned ids", banned, [model.tokenizer.decode([i]) for i in banned], flush=True)
    records = []
    for book in args.books.split(","):
        text = (BOOKS / f"{book}.txt").read_text(encoding="utf-8")[:60_000]
        bank = model.new_bank(capacity=max(model.cfg.capacity, 40_000))
        model.memorize(text, bank, source=book)
        for q in read_questions(QUESTIONS[book]):
            prepared = answer.prepare(model, bank, q["question"], answer.DEFAULT_MODE, search_top=args.top)
            outs = {}
            for name in args.variants.split(","):
                if name == "shipped":
                    outs[name] = generate(model, prepared, neural_cache.CopyMix(model, prepared.cache))
                elif name.startswith("ban_"):
                    within = 4 if name == "ban_first" else 10_000
                    outs[name] = generate(model, prepared, Banning(model, prepared.cache, banned, within))
                else:
                    pre = answer.prepare(model, bank, q["question"], answer.DEFAULT_MODE, search_top=args.top,
                                         answer_prefix=PREFIXES[name])
                    outs[name] = PREFIXES[name] + generate(model, pre, neural_cache.CopyMix(model, pre.cache))
            held = contains_any(prepared.context, q["answers"])
            rec = {"book": book, "question": q["question"], "answers": q["answers"], "held": held, "outputs": outs,
                   "correct": {k: contains_any(o, q["answers"]) for k, o in outs.items()}}
            records.append(rec)
            print(json.dumps({"q": q["question"], "held": held, "correct": rec["correct"]}), flush=True)
    names = list(records[0]["correct"])
    summary = {k: {"correct": sum(r["correct"][k] for r in records),
                   "held_correct": sum(r["correct"][k] for r in records if r["held"]),
                   "held": sum(r["held"] for r in records), "n": len(records)} for k in names}
    print(json.dumps(summary, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps({"summary": summary, "records": records}, indent=1))


if __name__ == "__main__":
    main()
