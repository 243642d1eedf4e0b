"""``eval-niah``: RULER-style needles in a haystack of real text, for every answer mode and a BM25 baseline.

Each trial (``needles.make_trial``) is memorized into a fresh bank, then its question is answered in every
mode of ``answer.MODES`` (or those asked for). Per (task, length, mode):

- ``accuracy``: RULER's score, the share of the expected values found in the answer (case-insensitive);
- ``retrieval_recall``: the share of the asked needles that a chunk the mode listed or used overlaps (a chunk
  "has" a needle when its character span shares a character with the needle's span in the document).

The ``bm25`` row ranks the same bank chunks with BM25 (as many as the modes list: ``--search-top``); it answers
nothing, so its accuracy is null.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Callable

from ..options import model_flags
from ..paths import DEFAULT_BOOK
from ..answer import answer as answers
from ..answer import settings as answer_settings
from .bm25 import BM25, chunk_units
from .needles import TASKS, Haystack, Trial, even_depths, make_trial, spans_overlap, string_match_all

SOURCE = "haystack"  # the source name every trial's document is memorized under
BM25_MODE = "bm25"
DEFAULT_TEXT = DEFAULT_BOOK


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--text", default=str(DEFAULT_TEXT), help="real text the haystacks are cut from (a book)")
    parser.add_argument("--lengths", default="4000,16000,64000", help="comma-separated document lengths in tokens")
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated, from {', '.join(TASKS)}")
    parser.add_argument("--trials", type=int, default=4, help="trials per task and length; depths spread evenly 0..100%%")
    parser.add_argument("--modes", default=None,
                        help=f"comma-separated answer modes and/or {BM25_MODE} (default: every mode, and {BM25_MODE})")
    parser.add_argument("--search-top", "--top", type=int, default=answer_settings.ANSWER.search_top,
                        help="chunks each mode lists (and BM25 returns)")
    parser.add_argument("--max-new-tokens", type=int, default=128,
                        help="answer length limit (RULER's niah tasks allow 128 tokens: a list of 4 seven-digit values "
                             "takes ~60 of this backbone's tokens)")
    parser.add_argument("--answer-prefix", action=argparse.BooleanOptionalAction, default=True,
                        help="begin each answer with RULER's answer prefix (\"The special magic number for KEY mentioned "
                             "in the provided text is\"), as RULER's niah templates do for every model (default: on)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows-out", default=None,
                        help="also append every row to this JSON-lines file as soon as it is complete (long runs)")


def parse_modes(spec: str | None) -> list[str]:
    """The modes to evaluate: every answer mode and bm25 by default; unknown names raise ValueError."""
    if not spec:
        return [*answers.MODES, BM25_MODE]
    modes = [m.strip() for m in spec.split(",") if m.strip()]
    unknown = [m for m in modes if m not in (*answers.MODES, BM25_MODE)]
    if unknown or not modes:
        raise ValueError(f"unknown mode(s) {', '.join(unknown) or '(none given)'}; choose from "
                         f"{', '.join((*answers.MODES, BM25_MODE))}")
    return list(dict.fromkeys(modes))


def parse_list(spec: str, kind: Callable = str) -> list:
    return [kind(x.strip()) for x in spec.split(",") if x.strip()]


def needle_recall(trial: Trial, spans: list[tuple[int, int]]) -> float:
    """Share of the asked needles overlapped by at least one of the character ``spans`` (in the document)."""
    asked = trial.asked_needles
    found = sum(any(spans_overlap(n.char_start, n.char_end, s, e) for s, e in spans) for n in asked)
    return found / len(asked)


def chunk_spans(chunks) -> list[tuple[int, int]]:
    """Character spans in the trial document of the chunks a mode listed (``Retrieved`` items)."""
    return [(r.info.char_start, r.info.char_end) for r in chunks if r.info.source == SOURCE]


def run_trial(model, trial: Trial, modes: list[str], search_top: int, max_new_tokens: int,
              answer_prefix: bool = True) -> dict[str, dict]:
    """Memorize the trial's document into a fresh bank; answer its question in every mode (each answer begun
    with the trial's ``answer_prefix`` when asked; the score reads only what was generated). -> {mode: result}."""
    chunk = model.cfg.chunk_size
    capacity = max(model.cfg.capacity, -(-int(trial.length * 1.25 + 64) // chunk) * chunk)
    bank = model.new_bank(capacity=capacity)
    model.memorize(trial.document, bank, source=SOURCE)
    out: dict[str, dict] = {}
    for mode in modes:
        if mode == BM25_MODE:
            found = BM25(chunk_units(bank, SOURCE)).search(trial.question, search_top)
            spans = [(u.char_start, u.char_end) for u in found]
            out[mode] = {"accuracy": None, "retrieval_recall": needle_recall(trial, spans)}
            continue
        ans = answers.answer(model, bank, trial.question, mode=mode, max_new_tokens=max_new_tokens, search_top=search_top,
                             answer_prefix=trial.answer_prefix if answer_prefix else "")
        out[mode] = {"accuracy": string_match_all(ans.text, trial.expected),
                     "retrieval_recall": needle_recall(trial, chunk_spans(ans.chunks)), "output": ans.text}
    return out


def evaluate(model, text: str, lengths: list[int], tasks: list[str], trials: int, modes: list[str], *,
             search_top: int = 6, max_new_tokens: int = 128, seed: int = 0, answer_prefix: bool = True,
             progress: Callable[[str], None] | None = None, on_row: Callable[[dict], None] | None = None) -> list[dict]:
    """One row per (length, task, mode), in that order; every row keeps its trials (depth, scores, output).
    ``on_row`` is called with each row as soon as it is complete."""
    haystack = Haystack(text, model.tokenizer)
    rows = []
    for length in lengths:  # shortest first: a run cut short still has every task at the shorter lengths
        for task in tasks:
            rng = random.Random(f"{seed}-{task}-{length}")  # a task's trials do not depend on the others asked
            per_mode: dict[str, list[dict]] = {m: [] for m in modes}
            for depth in even_depths(trials):
                trial = make_trial(haystack, task, length, depth, rng)
                for mode, r in run_trial(model, trial, modes, search_top, max_new_tokens, answer_prefix).items():
                    per_mode[mode].append({"depth": round(depth, 4), **r})
                if progress:
                    progress(f"{task} {length}")
            for mode, results in per_mode.items():
                rows.append(summarize(task, length, mode, results))
                if on_row:
                    on_row(rows[-1])
    return rows


def summarize(task: str, length: int, mode: str, results: list[dict]) -> dict:
    """A row: the means over trials, and the trials themselves."""
    acc = [r["accuracy"] for r in results]
    return {"task": task, "length": length, "mode": mode,
            "accuracy": None if any(a is None for a in acc) else sum(acc) / len(acc),
            "retrieval_recall": sum(r["retrieval_recall"] for r in results) / len(results),
            "trials": len(results), "per_trial": results}


def command_line(args: argparse.Namespace, modes: list[str]) -> str:
    parts = ["python -m longmem_core eval-niah", f"--text {args.text}", f"--lengths {args.lengths}",
             f"--tasks {args.tasks}", f"--trials {args.trials}", f"--modes {','.join(modes)}", f"--search-top {args.search_top}",
             f"--max-new-tokens {args.max_new_tokens}",
             "--answer-prefix" if getattr(args, "answer_prefix", True) else "--no-answer-prefix", f"--seed {args.seed}"]
    return " ".join(parts + model_flags(args))


def run(args: argparse.Namespace, load_model: Callable[[], object]) -> dict:
    """The ``eval-niah`` command: checks its inputs, then loads the model (``load_model()``) and evaluates.
    Bad input raises ValueError (or the reader's DocumentError) before the model is loaded."""
    from ..documents.data import read_document
    from tqdm import tqdm
    lengths, tasks, modes = parse_list(args.lengths, int), parse_list(args.tasks), parse_modes(args.modes)
    bad = [t for t in tasks if t not in TASKS]
    if bad or not tasks or not lengths or min(lengths) < 1 or args.trials < 1 or args.search_top < 1:
        raise ValueError(f"bad arguments: tasks from {', '.join(TASKS)}; lengths, --trials and --search-top positive")
    text = read_document(args.text).text
    model = load_model()
    t0 = time.perf_counter()
    bar = tqdm(total=len(tasks) * len(lengths) * args.trials, desc="eval-niah", unit="trial", file=sys.stderr)
    rows_out = Path(args.rows_out) if getattr(args, "rows_out", None) else None

    def on_row(row: dict) -> None:
        with rows_out.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    try:
        rows = evaluate(model, text, lengths, tasks, args.trials, modes, search_top=args.search_top,
                        max_new_tokens=args.max_new_tokens, seed=args.seed,
                        answer_prefix=getattr(args, "answer_prefix", True),
                        progress=lambda label: (bar.set_postfix_str(label), bar.update()),
                        on_row=on_row if rows_out else None)
    finally:
        bar.close()
    result = {"evaluation": "niah", "command": command_line(args, modes), "text": Path(args.text).name,
              "backbone": model.cfg.backbone, "checkpoint": model.checkpoint_path, "default_mode": answers.DEFAULT_MODE,
              "modes": modes, "lengths": lengths, "tasks": tasks, "trials": args.trials, "search_top": args.search_top,
              "answer_prefix": getattr(args, "answer_prefix", True), "seed": args.seed,
              "seconds": round(time.perf_counter() - t0, 1), "rows": rows}
    if not getattr(args, "json", False):
        print(format_table(result))
    return result


def format_table(result: dict) -> str:
    lines = [f"{'task':<11}{'length':>8}  {'mode':<14}{'accuracy':>9}{'recall':>8}"]
    for r in result["rows"]:
        acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.2f}"
        lines.append(f"{r['task']:<11}{r['length']:>8}  {r['mode']:<14}{acc:>9}{r['retrieval_recall']:>8.2f}")
    lines.append(f"default mode: {result['default_mode']}  ({result['trials']} trials per row, {result['seconds']} s)")
    return "\n".join(lines)
