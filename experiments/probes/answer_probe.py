"""Measure the answer modes, the neural cache and the classification modes on a TUNING book / ICL sets.

    python experiments/probes/answer_probe.py passkey --book frankenstein --lengths 4000,16000 --trials 3
    python experiments/probes/answer_probe.py ppl --book frankenstein --max-tokens 12288
    python experiments/probes/answer_probe.py icl --task sst2 --n-test 100 --seeds 1,2

Pass key: the needle of ``evaluate.passkey_needle`` planted at a random token depth of ``length`` tokens of the
book (as ``evaluate.passkey_trial`` plants it), the whole document read into memory (bank + token cache, with
its text as the source), then "What is the pass key?" asked in every answer mode.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from longmem_core.answer import answer, neural_cache
from longmem_core.classify import icl, icl_modes  # noqa: E402
from longmem_core.evals.evaluate import passkey_needle  # noqa: E402
from longmem_core.model.model import LongMemModel  # noqa: E402

BOOKS = Path("/work/shared/data/books")
ICL = Path("/work/shared/data/icl")
TUNING = {"frankenstein", "great_expectations", "the_time_machine"}


def plant(tok, filler_ids: list[int], length: int, rng: random.Random) -> tuple[int, int, list[int]]:
    """A random pass key planted at a random depth of ``length`` tokens cut from ``filler_ids``: (key, depth, ids)."""
    key = rng.randrange(10_000, 100_000)
    needle = tok(passkey_needle(key), add_special_tokens=False)["input_ids"]
    n = length - len(needle)
    start = rng.randrange(0, len(filler_ids) - n)
    depth = rng.randrange(0, n)
    return key, depth, filler_ids[start:start + depth] + needle + filler_ids[start + depth:start + n]


def passkey(model: LongMemModel, book: str, lengths: list[int], trials: int, seed: int, modes: list[str]) -> dict:
    tok = model.tokenizer
    filler_ids = tok((BOOKS / f"{book}.txt").read_text(encoding="utf-8"), add_special_tokens=False)["input_ids"]
    rng = random.Random(seed)
    out: dict = {}
    for length in lengths:
        rows = []
        for _ in range(trials):
            key, depth, doc = plant(tok, filler_ids, length, rng)
            bank = model.new_bank(capacity=max(model.cfg.capacity, 2 * length))
            cache = neural_cache.new_cache(model)
            t0 = time.perf_counter()
            neural_cache.memorize(model, tok.decode(doc), bank, cache, source=book)
            row = {"key": key, "depth": round(depth / length, 3), "read_s": round(time.perf_counter() - t0, 1)}
            for mode in modes:
                t0 = time.perf_counter()
                a = answer.answer(model, bank, "What is the pass key?", mode=mode, max_new_tokens=24)
                row[mode] = str(key) in a.text.replace(" ", "").replace(",", "")
                row[mode + "_text"] = a.text
                row[mode + "_read_holds_key"] = str(key) in a.context if a.context else None
                row[mode + "_s"] = round(time.perf_counter() - t0, 1)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
        out[str(length)] = {"acc": {m: sum(r[m] for r in rows) / len(rows) for m in modes}, "trials": rows,
                            "cache_bytes_per_token": cache.nbytes() / len(cache),
                            "bank_bytes_per_token": bank.stored_bytes() / len(bank)}
    return out


def passkey_copy(model: LongMemModel, book: str, lengths: list[int], trials: int, seed: int) -> dict:
    """The ``cache`` mode with a tokens-only cache (``neural_cache.cache_from_sources``' default: no forward over
    the document, only the exact copy), and the backbone alone, on the same planted needles as ``passkey``."""
    tok = model.tokenizer
    filler_ids = tok((BOOKS / f"{book}.txt").read_text(encoding="utf-8"), add_special_tokens=False)["input_ids"]
    rng = random.Random(seed)
    out: dict = {}
    for length in lengths:
        rows = []
        for _ in range(trials):
            key, depth, doc = plant(tok, filler_ids, length, rng)
            text = tok.decode(doc)
            ids = tok(text, add_special_tokens=False)["input_ids"]
            cache = neural_cache.new_cache(model, dim=0)
            cache.add(torch.empty(len(ids) - 1, 0), ids[:-1], ids[1:])  # tokens only: no states
            t0 = time.perf_counter()
            gen = neural_cache.generate(model, model.chat_ids("What is the pass key?"), cache, max_new_tokens=24)
            answer_text = "".join(gen)
            row = {"key": key, "depth": round(depth / length, 3), "cache": str(key) in answer_text.replace(" ", ""),
                   "cache_text": answer_text, "cache_s": round(time.perf_counter() - t0, 1)}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
        out[str(length)] = {"acc_cache_tokens_only": sum(r["cache"] for r in rows) / len(rows), "trials": rows}
    return out


def ppl(model: LongMemModel, book: str, max_tokens: int, lams: list[float], thetas: list[float], dim: int) -> dict:
    text = (BOOKS / f"{book}.txt").read_text(encoding="utf-8")
    r = neural_cache.perplexity(model, text, max_tokens=max_tokens, lams=tuple(lams), thetas=tuple(thetas), dim=dim)
    half = len(r["segments"]) // 2
    for name, segs in (("first_half", r["segments"][:half]), ("second_half", r["segments"][half:])):
        n = sum(s["tokens"] for s in segs)
        r[name] = {k: round(float(torch.tensor(sum(s["nll"][k] for s in segs) / n).exp()), 3) for k in segs[0]["nll"]}
    del r["segments"]
    return r


def classification(model: LongMemModel, task: str, n_test: int, seeds: list[int], memory_size: int, modes: list[str],
                   k: int) -> dict:
    from longmem_core.documents.data import read_labelled
    demos = read_labelled(ICL / task / "train.jsonl")
    test_all = read_labelled(ICL / task / "test.jsonl")
    template = icl.template_for(task)
    out = {}
    for seed in seeds:
        test = random.Random(seed).sample(test_all, min(n_test, len(test_all)))
        t0 = time.perf_counter()
        r = icl_modes.evaluate_modes(model, test, demos, modes=modes, k=k, seed=seed, template=template,
                                     memory_size=memory_size)
        out[str(seed)] = {**r.accuracy, "seconds": round(time.perf_counter() - t0, 1)}
        print(task, seed, out[str(seed)], file=sys.stderr, flush=True)
    out["mean"] = {m: sum(out[str(s)][m] for s in seeds) / len(seeds) for m in modes}
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["passkey", "passkey-copy", "ppl", "icl"])
    p.add_argument("--book", default="frankenstein")
    p.add_argument("--lengths", default="4000,16000")
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--modes", default=",".join(answer.MODES))
    p.add_argument("--max-tokens", type=int, default=12288)
    p.add_argument("--lams", default="0.02,0.05,0.1,0.2")
    p.add_argument("--thetas", default="10,20,40,80")
    p.add_argument("--dim", type=int, default=neural_cache.CACHE_DIM)
    p.add_argument("--task", default="sst2")
    p.add_argument("--n-test", type=int, default=100)
    p.add_argument("--seeds", default="1")
    p.add_argument("--memory-size", type=int, default=2000)
    p.add_argument("--k", type=int, default=icl.DEFAULT_K)
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.what in ("passkey", "passkey-copy", "ppl") and args.book not in TUNING:
        sys.exit(f"{args.book} is not a tuning book ({', '.join(sorted(TUNING))})")
    t0 = time.perf_counter()
    model = LongMemModel.load()
    if args.what == "passkey":
        r = passkey(model, args.book, [int(x) for x in args.lengths.split(",")], args.trials, args.seed,
                    args.modes.split(","))
    elif args.what == "passkey-copy":
        r = passkey_copy(model, args.book, [int(x) for x in args.lengths.split(",")], args.trials, args.seed)
    elif args.what == "ppl":
        r = ppl(model, args.book, args.max_tokens, [float(x) for x in args.lams.split(",")],
                [float(x) for x in args.thetas.split(",")], args.dim)
    else:
        modes = args.modes if args.modes != ",".join(answer.MODES) else ",".join(icl_modes.MODES)
        r = classification(model, args.task, args.n_test, [int(s) for s in args.seeds.split(",")], args.memory_size,
                           modes.split(","), args.k)
    r["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(r, indent=1))


if __name__ == "__main__":
    main()
