"""``eval-paraphrase``: facts asked in other words (NoLiMa-style), and which search finds them.

A pair is a fact sentence and a question about it that shares almost no word with it (``data/needles/``, written by
hand for this project): "Which chemist parted with his store to a newcomer?" asks about "The apothecary Simeon
Vosper sold his shop to a stranger from Leeds." Each pair's fact is planted once, at a sentence start, in a stretch
of a book of ``--length`` tokens (the stretch and the depth drawn from the pair's id and the seed, so a pair's
document does not depend on the other pairs asked); the document is memorized into a fresh bank and the question
asked. Per pair, all in the same bank:

- ``found``: the answer mode's search (the default mode's is ``search.hybrid_chunks``: the model's search fused
  with BM25) finds the fact: one of its ``--search-top`` chunks lies so near the fact that the passage read back around
  it (``read_back.expand``, ``settings.READ_BACK.passage_chars``) holds the whole fact;
- ``found_memory``: the same for the model's own memory search alone (``search.rank_chunks``);
- ``found_meaning``: the same for the meaning search alone (``search.meaning_chunks``; beyond the paper; false where the
  checkpoint did not train it);
- ``found_bm25``: the same for the hybrid's BM25 side alone (``search.lexical_scores``: BM25 over the words around
  each chunk), chunks sharing no word with the question left out;
- ``read_back``: the whole fact is in the text the answer mode read into its prompt (``Answer.context``);
- ``answered``: the mode's answer names one of the pair's answers (case-insensitive, as whole words);
- ``shared_words``: the content words the question shares with the fact (stop words dropped);
- ``rank_memory`` / ``rank_bm25``: the rank of the best chunk holding the fact among every chunk of the bank in
  that score (1: first; null for BM25 when it shares no word with the question), to see how near a miss was.

Rows: every pair of a file, then each kind of paraphrase of that file. ``answer_elsewhere`` marks pairs whose answer
also occurs in the book's stretch (then an answer can be right without the fact). A chunk "holds" the fact when its
character span shares a character with the fact's span (as ``eval-niah`` counts needles); a search "finds" it
through any chunk whose read-back passage holds it, as BM25 scores a chunk by the words of its neighbours too.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import torch

from ..answer import answer as answers
from ..answer import read_back, settings as answer_settings
from ..model import search
from .needles import Haystack, insert_needles, spans_overlap
from .eval_qa import normalize
from ..documents.records import has_answers, has_strings, read_records
from ..options import model_flags
from ..paths import DEFAULT_BOOK

SOURCE = "haystack"  # the source name every document is memorized under
ROOT = Path(__file__).resolve().parents[2]
PAIRS_DIR = ROOT / "data" / "needles"
DEFAULT_PAIRS = (PAIRS_DIR / "paraphrase.jsonl", PAIRS_DIR / "literal.jsonl")  # in other words; the control
DEFAULT_TEXT = DEFAULT_BOOK
SPLITS = ("tuning", "report", "all")
FIELDS = ("id", "kind", "split", "fact", "question", "answers")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--text", default=str(DEFAULT_TEXT), help="the book the facts are planted in")
    parser.add_argument("--pairs", default=",".join(str(p.relative_to(ROOT)) for p in DEFAULT_PAIRS),
                        help="comma-separated JSON-lines files of pairs (default: the pairs asked in other words, and "
                             "the control asked in the fact's own words)")
    parser.add_argument("--split", default="report", choices=SPLITS,
                        help="which half of each file: tune on 'tuning', report on 'report' (default)")
    parser.add_argument("--length", type=int, default=16_000, help="document length in tokens, the fact included")
    parser.add_argument("--mode", default=answers.DEFAULT_MODE, help="the answer mode asked (default: the default)")
    parser.add_argument("--search-top", "--top", type=int, default=answer_settings.ANSWER.search_top,
                        help="chunks each search returns")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--limit", type=int, default=None, help="only the first N pairs of each file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--together", action="store_true",
                        help="plant every pair of a file in one document (memorized once) instead of one document per "
                             "pair: each fact is then one planted sentence among many, and must be found for what it "
                             "says, not for looking planted")
    parser.add_argument("--records-out", default=None,
                        help="also append every pair's record to this JSON-lines file as soon as it is complete")


@dataclass
class Fact:
    """A fact planted in a document (``needles.insert_needles`` sets its span)."""

    text: str
    depth: float  # asked-for place, 0..1 of the document
    char_start: int = 0  # span in the finished document, [start, end)
    char_end: int = 0


def read_pairs(path: str | Path) -> list[dict]:
    """The pairs of a JSON-lines file; a malformed line raises ValueError naming its line number."""
    out = read_records(path, lambda row: has_strings(row, FIELDS[:5]) and row["split"] in SPLITS[:2]
                       and has_answers(row),
                       '{"id", "kind", "split": "tuning" or "report", "fact", "question", "answers": ["...", ...]}',
                       "pairs")
    ids = [r["id"] for r in out]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: pair ids repeat")
    return out


def pairs_path(name: str) -> Path:
    """A pairs file as given, or, when no such file is here, under the repository (the default's relative paths)."""
    path = Path(name)
    return path if path.exists() or path.is_absolute() else ROOT / path


def mentions(text: str, wanted: list[str]) -> bool:
    """Does ``text`` name one of ``wanted`` as whole words (case-insensitive, runs of whitespace one space)? A name
    such as "Aske" is not found in "asked"."""
    low = normalize(text)
    return any(re.search(r"(?<!\w)" + re.escape(normalize(w)) + r"(?!\w)", low) for w in wanted)


def content_words(text: str) -> set[str]:
    """The words of ``text`` that are not stop words (``search.stop_words``), lower case, a possessive "'s" dropped."""
    stop = set(search.stop_words())
    words = re.findall(r"[a-z0-9]+", re.sub(r"['\u2019]s\b", "", text.lower()))
    return {w for w in words if w not in stop}


def fact_positions(bank, fact: Fact) -> list[int]:
    """Positions (oldest first, as the search's score vectors) of the bank's chunks that overlap the fact."""
    out = []
    for pos, cid in enumerate(bank.chunk_ids):
        info = bank.chunk_info(int(cid))
        if info.source == SOURCE and spans_overlap(info.char_start, info.char_end, fact.char_start, fact.char_end):
            out.append(pos)
    return out


def finds_fact(chunks, document: str, bounds: list[int], fact: Fact) -> bool:
    """Does the passage read back around one of the listed chunks (``Retrieved``) hold the whole fact? ``bounds``:
    the document's sentence starts (``read_back.sentence_bounds``)."""
    for r in chunks:
        if r.info.source == SOURCE:
            lo, hi = read_back.expand(document, r.info.char_start, r.info.char_end, bounds=bounds)
            if lo <= fact.char_start and fact.char_end <= hi:
                return True
    return False


def rank_of(scores: torch.Tensor, positions: list[int]) -> int:
    """1 + the chunks scored above the best of ``positions`` (ties counted for the fact)."""
    best = max(float(scores[p]) for p in positions)
    return 1 + int((scores > best).sum())


def plant(haystack: Haystack, pair: dict, length: int, seed: int) -> tuple[str, Fact]:
    """The pair's document: a stretch of the book of about ``length`` tokens with the fact put in at a sentence start,
    drawn from the pair's id and ``seed``."""
    rng = random.Random(f"{seed}-{pair['id']}-{length}")
    fact = Fact(pair["fact"], rng.random())
    filler = haystack.stretch(length - haystack.count(" " + fact.text), rng)
    return insert_needles(filler, [fact]), fact


def plant_together(haystack: Haystack, pairs: list[dict], length: int, seed: int) -> tuple[str, list[Fact]]:
    """One document for every pair: a stretch of the book of about ``length`` tokens with each pair's fact put in at
    a sentence start, at depths spread evenly over it in an order drawn from ``seed``. Each fact is then one of
    many planted sentences, so a search cannot find it for looking planted."""
    rng = random.Random(f"{seed}-together-{length}")
    depths = [(i + 0.5) / len(pairs) for i in range(len(pairs))]
    rng.shuffle(depths)
    facts = [Fact(p["fact"], d) for p, d in zip(pairs, depths)]
    filler = haystack.stretch(length - sum(haystack.count(" " + f.text) for f in facts), rng)
    return insert_needles(filler, facts), facts


def memorized(model, document: str, length: int):
    """A fresh bank holding ``document`` (under ``SOURCE``), sized for a document of ``length`` tokens."""
    chunk = model.cfg.chunk_size
    bank = model.new_bank(capacity=max(model.cfg.capacity, -(-int(length * 1.25 + 64) // chunk) * chunk))
    model.memorize(document, bank, source=SOURCE)
    return bank


def ask_pair(model, bank, document: str, pair: dict, fact: Fact, *, mode: str, search_top: int,
             max_new_tokens: int) -> dict:
    """Ask one pair's question of a bank holding ``document`` (where ``fact`` was planted); its record."""
    q = pair["question"]
    positions = fact_positions(bank, fact)
    bounds = read_back.sentence_bounds(document)
    memory, lexical = search.chunk_scores(model, bank, q), search.lexical_scores(bank, q)
    ans = answers.answer(model, bank, q, mode=mode, max_new_tokens=max_new_tokens, search_top=search_top)
    mode_search = search.SEARCHES[answers.MODE_SPECS[mode].read_back or "model"]
    rest = document[:fact.char_start] + document[fact.char_end:]
    record = {"id": pair["id"], "kind": pair["kind"], "split": pair["split"], "question": q, "answers": pair["answers"],
              "depth": round(fact.depth, 4),
              "found": finds_fact(mode_search(model, bank, q, search_top), document, bounds, fact),
              "found_memory": finds_fact(search.rank_chunks(model, bank, q, search_top), document, bounds, fact),
              "found_bm25": finds_fact(search.lexical_chunks(model, bank, q, search_top), document, bounds, fact),
              "found_meaning": finds_fact(search.meaning_chunks(model, bank, q, search_top), document, bounds, fact),
              "read_back": " ".join(fact.text.split()) in " ".join(ans.context.split()),
              "answered": mentions(ans.text, pair["answers"]), "output": ans.text,
              "rank_memory": rank_of(memory, positions) if positions else None,
              "rank_bm25": rank_of(lexical, positions) if positions and float(lexical[positions].max()) > 0 else None,
              "answer_elsewhere": mentions(rest, pair["answers"]),
              "shared_words": sorted(content_words(q) & content_words(fact.text))}
    if ans.quote is not None:
        record["quote"] = ans.quote.text
    return record


def run_pair(model, haystack: Haystack, pair: dict, *, length: int, mode: str, search_top: int, max_new_tokens: int,
             seed: int) -> dict:
    """Plant, memorize and ask one pair; its record."""
    document, fact = plant(haystack, pair, length, seed)
    return ask_pair(model, memorized(model, document, length), document, pair, fact, mode=mode, search_top=search_top,
                    max_new_tokens=max_new_tokens)


SHARES = ("found", "found_memory", "found_bm25", "found_meaning", "read_back", "answered")


def summary(pairs_name: str, kind: str, records: list[dict]) -> dict:
    """A row: the share of the records each search found, read back and answered."""
    n = len(records)
    return {"pairs": pairs_name, "kind": kind, "n": n, **{k: round(sum(r[k] for r in records) / n, 4) for k in SHARES}}


def rows_for(pairs_name: str, records: list[dict]) -> list[dict]:
    """Every pair of a file, then each of its kinds (when it has more than one)."""
    kinds = list(dict.fromkeys(r["kind"] for r in records))
    rows = [summary(pairs_name, "all", records)]
    if len(kinds) > 1:
        rows += [summary(pairs_name, k, [r for r in records if r["kind"] == k]) for k in kinds]
    return rows


def select(pairs: list[dict], split: str, limit: int | None) -> list[dict]:
    return [p for p in pairs if split == "all" or p["split"] == split][:limit]


def evaluate(model, text: str, pair_sets: dict[str, list[dict]], *, length: int = 16_000,
             mode: str = answers.DEFAULT_MODE, search_top: int | None = None, max_new_tokens: int = 48, seed: int = 0,
             progress: Callable[[], None] | None = None,
             on_record: Callable[[dict], None] | None = None, together: bool = False) -> tuple[list[dict], list[dict]]:
    """``pair_sets``: {name: pairs} (already split). -> (rows, one record per pair, each named by its set).
    ``together``: each set's pairs are planted in one document (``plant_together``), memorized once. ``search_top``: chunks
    each search returns (default ``settings.ANSWER.search_top`` of the answer package)."""
    answers.check_mode(mode)
    search_top = answer_settings.ANSWER.search_top if search_top is None else search_top
    haystack = Haystack(text, model.tokenizer)
    rows, records = [], []
    for name, pairs in pair_sets.items():
        done = []
        if together:
            document, facts = plant_together(haystack, pairs, length, seed)
            bank = memorized(model, document, length)
            asks = [partial(ask_pair, model, bank, document, pair, fact, mode=mode, search_top=search_top,
                            max_new_tokens=max_new_tokens) for pair, fact in zip(pairs, facts)]
        else:
            asks = [partial(run_pair, model, haystack, pair, length=length, mode=mode, search_top=search_top,
                            max_new_tokens=max_new_tokens, seed=seed) for pair in pairs]
        for ask in asks:
            record = {"pairs": name, **ask()}
            done.append(record)
            if on_record:
                on_record(record)
            if progress:
                progress()
        rows += rows_for(name, done)
        records += done
    return rows, records


def command_line(args: argparse.Namespace) -> str:
    parts = ["python -m longmem_core eval-paraphrase", f"--text {args.text}", f"--pairs {args.pairs}",
             f"--split {args.split}", f"--length {args.length}", f"--mode {args.mode}", f"--search-top {args.search_top}",
             f"--max-new-tokens {args.max_new_tokens}"]
    if args.limit:
        parts.append(f"--limit {args.limit}")
    parts.append(f"--seed {args.seed}")
    if getattr(args, "together", False):
        parts.append("--together")
    return " ".join(parts + model_flags(args))


def run(args: argparse.Namespace, load_model: Callable[[], object]) -> dict:
    """The ``eval-paraphrase`` command: checks its inputs, then loads the model (``load_model()``) and evaluates.
    Bad input raises ValueError (or the reader's DocumentError) before the model is loaded."""
    from tqdm import tqdm

    from ..documents.data import read_document
    answers.check_mode(args.mode)
    if args.length < 64 or args.search_top < 1 or (args.limit is not None and args.limit < 1):
        raise ValueError("--length must be at least 64, --search-top and --limit positive")
    files = [f.strip() for f in args.pairs.split(",") if f.strip()]
    if not files:
        raise ValueError("--pairs names no file")
    pair_sets = {Path(f).stem: select(read_pairs(pairs_path(f)), args.split, args.limit) for f in files}
    if len(pair_sets) != len(files):
        raise ValueError("--pairs: two files of the same name")
    text = read_document(args.text).text
    model = load_model()
    t0 = time.perf_counter()
    bar = tqdm(total=sum(map(len, pair_sets.values())), desc="eval-paraphrase", unit="pair", file=sys.stderr)
    records_out = Path(args.records_out) if getattr(args, "records_out", None) else None

    def on_record(record: dict) -> None:
        with records_out.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    try:
        rows, records = evaluate(model, text, pair_sets, length=args.length, mode=args.mode, search_top=args.search_top,
                                 max_new_tokens=args.max_new_tokens, seed=args.seed, progress=bar.update,
                                 on_record=on_record if records_out else None,
                                 together=getattr(args, "together", False))
    finally:
        bar.close()
    result = {"evaluation": "paraphrase", "command": command_line(args), "text": Path(args.text).name,
              "pairs_files": [Path(f).name for f in files], "split": args.split, "length": args.length,
              "backbone": model.cfg.backbone, "checkpoint": model.checkpoint_path, "default_mode": answers.DEFAULT_MODE,
              "mode": args.mode, "search_top": args.search_top, "seed": args.seed, "together": getattr(args, "together", False),
              "seconds": round(time.perf_counter() - t0, 1),
              "rows": rows, "pairs": records}
    if not getattr(args, "json", False):
        print(format_table(result))
    return result


def format_table(result: dict) -> str:
    lines = [f"{'pairs':<12}{'kind':<13}{'n':>4}{'found':>8}{'memory':>8}{'meaning':>8}{'bm25':>8}{'read':>8}"
             f"{'answered':>10}"]
    for r in result["rows"]:
        lines.append(f"{r['pairs']:<12}{r['kind']:<13}{r['n']:>4}{r['found']:>8.2f}{r['found_memory']:>8.2f}"
                     f"{r.get('found_meaning', 0):>8.2f}{r['found_bm25']:>8.2f}{r['read_back']:>8.2f}"
                     f"{r['answered']:>10.2f}")
    lines.append(f"mode {result['mode']} (default {result['default_mode']}); found: its search "
                 f"({result['search_top']} chunks); memory: the model's search alone; meaning: the meaning search "
                 f"alone; bm25: BM25 alone; read: the fact in its prompt; {result['length']} tokens, split "
                 f"{result['split']}, {result['seconds']} s")
    return "\n".join(lines)
