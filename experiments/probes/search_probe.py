"""Probe: does the search list the chunks that hold a planted needle? Ranking variants against BM25.

Needles (one per bank): the pass-key sentence of issue 13 and RULER-style "One of the special magic numbers for
{adjective-noun} is: {7 digits}.", planted at depths spread evenly over 0..100% of a book excerpt, inline (after a
sentence, inside its paragraph) or as its own paragraph. For every question wording and every ranking variant we
record the rank of the best chunk whose character span overlaps the needle sentence; recall@k = rank <= k.

How banks are made (honest shortcut, said in the JSON): the excerpt is cut into segments of STEP tokens (each read
as ``LongMemModel.memorize`` reads one: sink token + at most segment_length - 1 tokens, no context across
segments). Segments without the needle are read once per excerpt and reused; the needle's segment is re-read with
the needle in it (STEP leaves room for it), and the bank gets the planted text as its source, with exact spans.
So each bank equals what ``memorize`` writes when segments are cut at those token positions.

    OMP_NUM_THREADS=1 .venv/bin/python experiments/probes/search_probe.py --books frankenstein great_expectations \
        --lengths 4000 16000 --out experiments/results/search_probe.json
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from longmem_core.model import search  # noqa: E402
from longmem_core.config import default_checkpoint  # noqa: E402
from longmem_core.model.model import LongMemModel  # noqa: E402

BOOKS = Path("/work/shared/data/books")
START = 20_000  # characters skipped at the start of a book (licence header, contents)
STEP = 975  # haystack tokens per segment: room for a needle of up to 48 tokens in a 1,023-token segment
ADJECTIVES = ["bitter", "silent", "crimson", "hollow", "brave", "frozen", "gentle", "restless", "golden", "ancient",
              "hungry", "quiet", "distant", "wicked", "lucky", "pale"]
NOUNS = ["falcon", "lantern", "harbor", "meadow", "anchor", "violin", "thunder", "orchard", "compass", "glacier",
         "pepper", "saddle", "candle", "ribbon", "marble", "kettle"]
MAGIC_QUESTIONS = ["What is the special magic number for {k} mentioned in the provided text?",
                   "What is the magic number for {k}?", "Tell me the special magic number for {k}.",
                   "Which number was given for {k}?"]
PASS_QUESTIONS = ["What is the secret pass key?", "What is the pass key? The pass key is"]
RRF_K = 60  # reciprocal-rank fusion constant (Cormack et al. 2009)
NEIGHBOUR_SHARE = 0.5  # neighbour smoothing: a chunk's score plus this share of its neighbours' (a variant that lost)


# ------------------------------------------------------------------ haystacks and needles

class Haystack:
    """A book excerpt of ``length`` tokens, cut into segments whose keys are read once."""

    def __init__(self, model: LongMemModel, book: str, length: int, cache: dict) -> None:
        text = (BOOKS / f"{book}.txt").read_text(encoding="utf-8")[START:START + 8 * length]
        enc = model.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offs = enc["input_ids"][:length], enc["offset_mapping"][:length]
        self.book, self.text = book, text[:offs[-1][1]]
        self.ids, self.offs = ids, [tuple(o) for o in offs]
        self.bounds = list(range(0, len(ids), STEP)) + [len(ids)]  # segment token boundaries
        self.char_starts = [self.offs[b][0] for b in self.bounds[:-1]] + [len(self.text)]
        self.kv = []
        for a, b in zip(self.bounds[:-1], self.bounds[1:]):
            key = (book, hash(tuple(ids[a:b])))
            if key not in cache:
                cache[key] = model.segment_kv(ids[a:b])
            self.kv.append(cache[key])


def insertion_points(text: str, paragraph: bool) -> list[int]:
    """Character positions where a needle can go: paragraph starts (own paragraph) or after a sentence's full stop
    followed by a space inside a paragraph (inline)."""
    if paragraph:
        return [0] + [i for i in range(2, len(text)) if text[i - 2:i] == "\n\n" and text[i] not in "\n\r"] + [len(text)]
    return [i for i in range(1, len(text) - 1) if text[i - 1] in ".!?" and text[i] == " " and text[i + 1].isalpha()]


def plant(model: LongMemModel, hay: Haystack, sentence: str, depth: float, paragraph: bool):
    """A bank holding the haystack with ``sentence`` planted at ``depth``; returns (bank, needle char span)."""
    points = insertion_points(hay.text, paragraph)
    p = min(points, key=lambda i: abs(i - depth * len(hay.text)))
    if paragraph:
        ins = ("\n\n" + sentence) if p == len(hay.text) else (sentence + "\n\n")
        lead = 2 if p == len(hay.text) else 0
    else:
        ins, lead = " " + sentence, 1
    planted = hay.text[:p] + ins + hay.text[p:]
    j = max(i for i, c in enumerate(hay.char_starts[:-1]) if c <= p)  # the segment that takes the needle
    bank = model.new_bank(capacity=1 << 20)
    src = bank.add_source(f"{hay.book}+needle", planted)
    token_start = 0
    for s, (a, b) in enumerate(zip(hay.bounds[:-1], hay.bounds[1:])):
        if s == j:
            cs, ce = hay.char_starts[j], hay.char_starts[j + 1] + len(ins)
            enc = model.tokenizer(planted[cs:ce], add_special_tokens=False, return_offsets_mapping=True)
            seg_ids = enc["input_ids"]
            assert len(seg_ids) <= model.segment_length - 1, "needle segment longer than a segment"
            keys, values = model.segment_kv(seg_ids)
            spans = np.array(enc["offset_mapping"]) + cs
        else:
            keys, values = hay.kv[s]
            spans = np.array(hay.offs[a:b]) + (len(ins) if s > j else 0)
        bank.add(keys, values, source=src, token_start=token_start, char_spans=spans)
        token_start += len(spans)
    return bank, (p + lead, p + lead + len(sentence))


# ------------------------------------------------------------------ ranking variants

def smooth(scores: torch.Tensor, bank, share: float = NEIGHBOUR_SHARE) -> torch.Tensor:
    return search.neighbour_smooth(scores, bank.chunk_source, share)


def rrf(*scores: torch.Tensor) -> torch.Tensor:
    """Reciprocal-rank fusion of several score vectors [Nc]."""
    out = torch.zeros_like(scores[0], dtype=torch.float64)
    for s in scores:
        rank = torch.empty_like(out)
        rank[torch.argsort(s, descending=True)] = torch.arange(1, len(s) + 1, dtype=torch.float64)
        out += 1.0 / (RRF_K + rank)
    return out


def bm25_scores(texts: list[str], question: str) -> torch.Tensor:
    import bm25s
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
    words = bm25s.tokenize([question], stopwords="en", show_progress=False, return_ids=False)[0]
    return torch.from_numpy(retriever.get_scores(words).astype(np.float64)) if words else torch.zeros(len(texts),
                                                                                                      dtype=torch.float64)


def variant_scores(model, bank, question: str, qv: search.QueryVectors, means: torch.Tensor,
                   texts: list[str], windows: list[str]) -> dict[str, torch.Tensor]:
    """Every variant's score per chunk [Nc] (oldest first). The ``mass`` variant is handled by its caller."""
    not_sink = torch.ones(len(qv.tokens), dtype=torch.bool)
    not_sink[0] = model.sink_id is None
    att_own = search.chunk_attention(qv.own_queries[not_sink], means)  # [T, H, Nc] block's own queries
    att_all = search.chunk_attention(qv.queries[not_sink], means)  # with the trained delta
    att_cont = search.chunk_attention(qv.queries[qv.content], means)
    top16 = torch.zeros_like(att_cont)
    top16.scatter_(-1, att_cont.topk(min(16, att_cont.shape[-1]), dim=-1).indices, 1.0)
    mean_q = search.chunk_attention(qv.queries[qv.content].mean(0, keepdim=True), means)  # [1, H, Nc]
    out = {
        "own_soft_all": att_own.sum((0, 1)),
        "soft_all": att_all.sum((0, 1)),
        "soft_content": att_cont.sum((0, 1)),
        "max_content": att_cont.amax((0, 1)),
        "last_token": att_all[-1].sum(0),
        "vote16_content": top16.sum((0, 1)) + 1e-3 * att_cont.sum((0, 1)) / att_cont.sum((0, 1)).max(),
        "meanq_content": mean_q.sum((0, 1)),
        "bm25_chunk": bm25_scores(texts, question),
        "bm25_window7": bm25_scores(windows, question),
    }
    for name in ("soft_all", "soft_content", "vote16_content", "meanq_content", "max_content"):
        out[name + "+nb"] = smooth(out[name], bank)
    out["soft_content+nb0.25"] = smooth(out["soft_content"], bank, 0.25)
    out["soft_content+nb1"] = smooth(out["soft_content"], bank, 1.0)
    out["hybrid_rrf(soft_content+nb,bm25_window7)"] = rrf(out["soft_content+nb"], out["bm25_window7"])
    return out


def rank_of(scores: torch.Tensor, needle: torch.Tensor) -> int:
    """1-based rank of the best needle chunk (ties counted against it)."""
    best = scores[needle].max()
    return int((scores > best).sum()) + 1 + int((scores[~needle] == best).sum())


# ------------------------------------------------------------------ the run

def summarise(rows: list[dict], variant: str) -> dict:
    ranks = [r["ranks"][variant] for r in rows if variant in r["ranks"]]
    found = [x for x in ranks if x is not None]
    worst = [x if x is not None else r["chunks"] for x, r in zip(ranks, rows)]
    return {"n": len(ranks), "recall@6": round(sum(x <= 6 for x in found) / len(ranks), 3),
            "recall@16": round(sum(x <= 16 for x in found) / len(ranks), 3),
            "mean_rank": round(float(np.mean(worst)), 1), "median_rank": float(np.median(worst)),
            "absent": len(ranks) - len(found)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--books", nargs="+", default=["frankenstein", "great_expectations"])
    ap.add_argument("--lengths", nargs="+", type=int, default=[4000, 16000])
    ap.add_argument("--depths", type=int, default=9, help="depths spread evenly over 0..100%%")
    ap.add_argument("--variants", nargs="*", default=None, help="report only these (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="experiments/results/search_probe.json")
    ap.add_argument("--section", default="tuning", help="key of this run in the output JSON (other keys are kept)")
    ap.add_argument("--precision", default=None, help="memorize_precision for the banks (default: the config's)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    model = LongMemModel.load(checkpoint=default_checkpoint())
    if args.precision:
        model.cfg.memorize_precision = args.precision
    rng = random.Random(args.seed)
    cache: dict = {}
    qcache: dict[str, search.QueryVectors] = {}
    rows = []
    depths = [i / (args.depths - 1) for i in range(args.depths)]
    for book in args.books:
        for length in args.lengths:
            t0 = time.perf_counter()
            hay = Haystack(model, book, length, cache)
            for depth in depths:
                for paragraph in (False, True):
                    for kind in ("passkey", "magic"):
                        if kind == "passkey":
                            v = str(rng.randrange(10_000, 100_000))
                            sentence = f"The secret pass key is {v}. Remember it. {v} is the pass key."
                            questions = PASS_QUESTIONS
                        else:
                            k, v = f"{rng.choice(ADJECTIVES)}-{rng.choice(NOUNS)}", str(rng.randrange(10 ** 6, 10 ** 7))
                            sentence = f"One of the special magic numbers for {k} is: {v}."
                            questions = [q.format(k=k) for q in MAGIC_QUESTIONS]
                        bank, span = plant(model, hay, sentence, depth, paragraph)
                        chars = bank.chunk_chars  # [Nc, 2]
                        needle = torch.from_numpy((chars[:, 0] < span[1]) & (chars[:, 1] > span[0]))
                        texts = [hay_text_of(bank, c) for c in chars]
                        windows = [" ".join(texts[max(0, i - 3):i + 4]) for i in range(len(texts))]
                        means = torch.from_numpy(bank.chunk_keys())
                        ids = bank.chunk_ids
                        for question in questions:
                            if question not in qcache:
                                qcache[question] = search.query_vectors(model, question)
                            ranks: dict[str, int | None] = {}
                            want = lambda name: args.variants is None or name in args.variants  # noqa: E731
                            if want("mass"):
                                listed = model.attention_mass(question, bank, chunks_listed=len(ids))
                                pos = [i for i, r in enumerate(listed) if bool(needle[r.info.chunk_id - ids[0]])]
                                ranks["mass"] = pos[0] + 1 if pos else None
                            for name, s in variant_scores(model, bank, question, qcache[question], means, texts,
                                                          windows).items():
                                if want(name):
                                    ranks[name] = rank_of(s, needle)
                            if want("rank_chunks"):
                                got = search.rank_chunks(model, bank, question, top=len(ids))
                                pos = [i for i, r in enumerate(got) if bool(needle[r.info.chunk_id - ids[0]])]
                                ranks["rank_chunks"] = pos[0] + 1 if pos else None
                            rows.append({"book": book, "length": length, "depth": round(depth, 3),
                                         "placement": "paragraph" if paragraph else "inline", "needle": kind,
                                         "question": question, "chunks": len(ids), "ranks": ranks})
            print(f"{book} {length}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    variants = sorted({v for r in rows for v in r["ranks"]})
    overall = {v: summarise(rows, v) for v in variants}
    groups = {}
    for key in ("length", "placement", "needle", "book"):
        for val in sorted({r[key] for r in rows}):
            sub = [r for r in rows if r[key] == val]
            groups[f"{key}={val}"] = {v: summarise(sub, v) for v in variants}
    by_depth = {str(d): {v: summarise([r for r in rows if r["depth"] == round(d, 3)], v)["recall@6"]
                         for v in variants} for d in depths}
    result = {"command": "OMP_NUM_THREADS=1 .venv/bin/python experiments/probes/search_probe.py " + " ".join(argv or sys.argv[1:]),
              "checkpoint": model.checkpoint_path and Path(model.checkpoint_path).name,
              "bank_construction": "segments of %d haystack tokens read once per excerpt; the needle's segment re-read "
                                   "with the needle; one needle per bank" % STEP,
              "recall": "a chunk among the first k whose character span overlaps the needle sentence",
              "mean_rank": "rank of the best needle chunk; a variant that does not list it counts the bank's chunk count",
              "seconds": round(time.perf_counter() - t_start), "overall": overall, "groups": groups,
              "recall@6_by_depth": by_depth, "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    saved = json.loads(out.read_text()) if out.is_file() else {}
    saved[args.section] = result
    out.write_text(json.dumps(saved, indent=1))
    width = max(len(v) for v in variants)
    for v in sorted(variants, key=lambda v: -overall[v]["recall@6"]):
        o = overall[v]
        print(f"{v:<{width}}  r@6 {o['recall@6']:.3f}  r@16 {o['recall@16']:.3f}  mean rank {o['mean_rank']:7.1f}  "
              f"median {o['median_rank']:6.1f}  absent {o['absent']}")
    return 0


def hay_text_of(bank, span) -> str:
    return bank.sources[0]["text"][span[0]:span[1]] if span[0] >= 0 else ""


if __name__ == "__main__":
    raise SystemExit(main())
