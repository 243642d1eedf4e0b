"""Train the memory layer's queries to *retrieve*: long-range induction over position-free chunk-mean keys.

Shape legend: n tokens of a segment, G kv heads, H query heads, D head dim, C width, Nc chunks in a bank,
M query tokens with a target.

The untrained SideNet searches memory with the memory layer's own (unrotated) queries, and these do not find
what a reader would look for: a question "... the door code is" does not rank the chunk holding the code
among thousands of chunk-mean keys. This module trains only a small low-rank delta on the memory layer's
query projection, used for the memory queries alone (``LongMemConfig.memory_query_rank``), with a
retrieval objective that does not depend on any particular wording:

* **Long-range induction.** A query token t whose preceding two tokens (t-1, t) also occur, rarely, in memory at
  (p-1, p) should retrieve the chunk holding p + 1: what followed them last time. That is how a question
  "... the door code is" finds the chunk with the code after "the door code is" in memory.
* **Facts in long text.** A short fact (a random number or name under one of many wordings) is inserted at a
  random depth into book text; the last token of a question about it should retrieve the chunks holding the
  answer.

The backbone is frozen, so its work is done once: every segment is read once (as ``LongMemModel.memorize`` reads
it) and we keep its memory keys and the memory layer's normed input ``xn``. A training step is then only a
low-rank projection and a softmax over all chunk-mean keys of a bank (InfoNCE with the chunks of the target as
positives, logits ``q . k_chunk * head_dim**-0.5``, the attention scale), per query head.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .memory_bank import chunk_means
from .model import LongMemModel

# ------------------------------------------------------------------------------------------ cached features


@dataclass
class Segment:
    """One segment as the backbone read it (opened by the sink token, which is not stored)."""

    ids: torch.Tensor  # [n] int64 token ids
    keys: torch.Tensor  # [n, G, D] float16 memory-layer keys before rotation (what a bank stores)
    xn: torch.Tensor  # [n, C] float16 normed input of the SideNet's memory layer (what its q projection reads)
    source: str = ""

    def chunk_means(self, chunk_size: int) -> torch.Tensor:
        """[G, ceil(n / chunk_size), D] float32 mean key per chunk, as ``MemoryBank`` computes it."""
        n, G, D = self.keys.shape
        nc = -(-n // chunk_size)
        k = torch.nn.functional.pad(self.keys, (0, 0, 0, 0, 0, nc * chunk_size - n))
        valid = (torch.arange(nc * chunk_size) < n).view(nc, chunk_size)
        return chunk_means(k.view(nc, chunk_size, G, D).permute(2, 0, 1, 3), valid).contiguous()


def check_supported(model: LongMemModel) -> None:
    """Cached features assume the identity-initialised SideNet whose layers before the memory layer are idle."""
    side = model.side
    if side.scale is None:
        raise ValueError("retrieval training needs side_init='identity' (the memory layer then reads H[2i] exactly)")
    if bool((side.scale.detach()[:side.memory_index] != 0).any()):
        raise ValueError("retrieval training needs the side layers before the memory layer to be idle (scale 0); "
                         "start from an untrained SideNet")
    if side.q_mem_up is None:
        raise ValueError("the model has no memory-query delta; build it with memory_query_rank > 0")


@torch.no_grad()
def segment_features(model: LongMemModel, segments: list[list[int]], source: str = "") -> list[Segment]:
    """Read each list of token ids (without the sink token) as one segment; keep its memory keys and the memory
    layer's normed input (for an identity-initialised SideNet that input is the backbone's H[2 * memory_index])."""
    side, m = model.side, model.memory_layer
    layer = side.layers[side.memory_index]
    out = []
    for ids in segments:
        x = torch.tensor([model.with_sink(list(ids))], device=model.device)
        start = x.shape[1] - len(ids)
        res = model.backbone(x, memory_layer=m, stop_after=m, last_kv_only=True)  # H[0..m] and block m's K/V
        xn = layer.norm_attn(res.hidden_states[2 * side.memory_index])[0, start:]
        out.append(Segment(ids=torch.tensor(list(ids), dtype=torch.long), keys=res.memory_keys[0, start:].half().cpu(),
                           xn=xn.half().cpu(), source=source))
    return out


def save_segments(segments: list[Segment], path: str | Path) -> None:
    torch.save([asdict(s) for s in segments], path)


def load_segments(path: str | Path) -> list[Segment]:
    return [Segment(**d) for d in torch.load(path, weights_only=False)]


# ------------------------------------------------------------------------------------------ synthetic facts

# Wordings used for training. The evaluation uses other key names and other wordings (EVAL_*), so a gain on
# held-out facts is not a gain from having seen the words.
TRAIN_KEYS = ["secret code", "door code", "access number", "account number", "magic number", "lucky number",
              "safe combination", "ticket number", "room number", "serial number", "password", "secret word",
              "code word", "locker number", "phone extension", "favourite number", "special number", "order number",
              "meeting room", "hidden word", "gate code", "alarm code", "badge number", "boat name"]
TRAIN_FACTS = [
    " The {k} is {v}.",
    " Note that the {k} is {v}. Do not forget it.",
    " Please remember this: the {k} is {v}.",
    " By the way, the {k} is {v}, in case you need it.",
    " Important: the {k} is {v}. Keep it safe.",
    " The {k} you will need later is {v}.",
    " Here is the {k}. The {k} is {v}. I repeat, the {k} is {v}.",
    " {n}'s {k} is {v}.",
    " {n} said that the {k} was {v}.",
    " Write it down somewhere: {k}: {v}.",
]
TRAIN_QUESTIONS = [
    "What is the {k}? The {k} is",
    "Tell me the {k}. The {k} is",
    "Do you remember the {k}? The {k} is",
    "Question: what is the {k}? Answer: the {k} is",
    "What was the {k}?",
    "I need the {k}.",
    "What is {n}'s {k}? {n}'s {k} is",
]
EVAL_KEYS = ["pass key", "vault code", "launch number", "hidden number", "secret phrase", "combination"]
EVAL_FACTS = [
    " The {k} is {v}. Remember it. {v} is the {k}.",
    " Listen carefully: the {k} is {v}.",
    " {n} whispered that the {k} was {v}.",
]
EVAL_QUESTIONS = ["What is the {k}? The {k} is", "Can you recall the {k}? It is", "The {k} is"]
NAMES = ["Anna", "Boris", "Clara", "Dmitri", "Elena", "Felix", "Greta", "Hugo", "Irene", "Jonas", "Karl", "Lena",
         "Marta", "Nils", "Olga", "Pavel", "Rosa", "Stefan", "Tilda", "Viktor"]
WORDS = ["lantern", "harbour", "violet", "granite", "saffron", "meadow", "falcon", "copper", "orchid", "thimble",
         "juniper", "quartz", "marble", "willow", "cobalt", "ember", "pepper", "walrus", "velvet", "tundra"]


@dataclass
class Fact:
    text: str  # inserted sentence, starting with a space
    question: str
    value: str


def make_fact(rng: random.Random, evaluation: bool = False) -> Fact:
    keys, facts, questions = (EVAL_KEYS, EVAL_FACTS, EVAL_QUESTIONS) if evaluation else (
        TRAIN_KEYS, TRAIN_FACTS, TRAIN_QUESTIONS)
    k, n = rng.choice(keys), rng.choice(NAMES)
    value = str(rng.randrange(10 ** (d := rng.randint(3, 7)) // 10, 10 ** d)) if rng.random() < 0.8 else rng.choice(WORDS)
    fact = rng.choice(facts)
    q = rng.choice([t for t in questions if ("{n}" in t) <= ("{n}" in fact)])
    return Fact(fact.format(k=k, v=value, n=n), q.format(k=k, n=n), value)


def insert_fact(model: LongMemModel, base: list[int], fact: Fact, rng: random.Random) -> tuple[list[int], list[int]]:
    """``base`` token ids with the fact's tokens spliced in before a line break (else after a full stop) at a
    random depth; returns the ids and the positions of the value's tokens (its last occurrence's first tokens)."""
    tok = model.tokenizer
    pieces = tok.convert_ids_to_tokens(base)
    breaks = [i for i, p in enumerate(pieces) if p.startswith("Ċ")] or [i + 1 for i, p in enumerate(pieces) if p == "."]
    at = rng.choice(breaks) if breaks else rng.randrange(len(base) + 1)
    ids = tok(fact.text, add_special_tokens=False)["input_ids"]
    enc = tok(fact.text, add_special_tokens=False, return_offsets_mapping=True)
    vs = fact.text.index(fact.value)
    value_pos = [at + i for i, (s, e) in enumerate(enc["offset_mapping"]) if e > vs and s < vs + len(fact.value)]
    return base[:at] + ids + base[at:], value_pos


# ------------------------------------------------------------------------------------------ examples


@dataclass
class Example:
    """A bank (segment indices of a store) and a query segment with, per query token, its positive chunks."""

    bank: list[int]
    query: int  # index of the query segment in the store (never in ``bank``)
    targets: dict[int, list[int]] = field(default_factory=dict)  # query position -> positive chunk indices in the bank
    kind: str = "induction"


def chunk_offsets(store: list[Segment], bank: list[int], chunk_size: int) -> list[int]:
    offs, total = [], 0
    for s in bank:
        offs.append(total)
        total += -(-len(store[s].ids) // chunk_size)
    return offs + [total]


def induction_targets(store: list[Segment], bank: list[int], query: int, chunk_size: int,
                      max_count: int = 3, ahead: int = 1) -> dict[int, list[int]]:
    """Query position t -> chunks holding p + ahead, for every occurrence (p-1, p) in the bank of the query's
    bigram (t-1, t), when that bigram occurs at most ``max_count`` times in the bank."""
    offs = chunk_offsets(store, bank, chunk_size)
    where: dict[tuple[int, int], list[int]] = {}
    for j, s in enumerate(bank):
        ids = store[s].ids.tolist()
        for p in range(1, len(ids) - ahead):
            where.setdefault((ids[p - 1], ids[p]), []).append(offs[j] + (p + ahead) // chunk_size)
    q = store[query].ids.tolist()
    out = {}
    for t in range(1, len(q)):
        hits = where.get((q[t - 1], q[t]))
        if hits and len(hits) <= max_count:
            out[t] = sorted(set(hits))
    return out


def value_chunks(offset: int, value_pos: list[int], chunk_size: int) -> list[int]:
    return sorted({offset + p // chunk_size for p in value_pos})


# ------------------------------------------------------------------------------------------ loss and ranks


def memory_queries(model: LongMemModel, xn: torch.Tensor) -> torch.Tensor:
    """xn [M, C] -> the memory queries of the memory layer [M, H, D] (block's q projection + trained delta,
    position policy applied), exactly as ``SideNetwork._memory_layer`` forms them."""
    side = model.side
    layer = side.layers[side.memory_index]
    x = xn.float().to(model.device).unsqueeze(0)  # [1, M, C]
    q = layer.q_proj(x).view(1, -1, layer.n_heads, layer.head_dim).transpose(1, 2)  # [1, H, M, D]
    delta = side.memory_query_delta(x)
    q = side.memory_queries(q if delta is None else q + delta)
    return q[0].transpose(0, 1)  # [M, H, D]


def chunk_logits(model: LongMemModel, q: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """q [M, H, D], chunk means [G, Nc, D] -> [M, H, Nc] inner products times the attention scale."""
    M, H, D = q.shape
    G = means.shape[0]
    qg = q.view(M, G, H // G, D)
    return torch.einsum("mgjd,gcd->mgjc", qg, means.to(q.device)).reshape(M, H, -1) * D ** -0.5


def infonce(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Multi-positive InfoNCE: logits [M, H, Nc], positives [M, Nc] bool -> mean over M and H."""
    pos = logits.masked_fill(~positives.to(logits.device)[:, None, :], float("-inf"))
    return (torch.logsumexp(logits, -1) - torch.logsumexp(pos, -1)).mean()


def best_rank(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """[M, H] 1-based rank of the best positive chunk among all chunks, per query token and head."""
    best_pos = logits.masked_fill(~positives.to(logits.device)[:, None, :], float("-inf")).amax(-1, keepdim=True)
    return (logits > best_pos).sum(-1) + 1


class BankCache:
    """Chunk means of a store's segments, computed once."""

    def __init__(self, store: list[Segment], chunk_size: int) -> None:
        self.store, self.chunk_size = store, chunk_size
        self._means: dict[int, torch.Tensor] = {}

    def means(self, bank: list[int]) -> torch.Tensor:
        for s in bank:
            if s not in self._means:
                self._means[s] = self.store[s].chunk_means(self.chunk_size)
        return torch.cat([self._means[s] for s in bank], dim=1)  # [G, Nc, D]


def example_batch(ex: Example, store: list[Segment], cache: BankCache, max_queries: int,
                  rng: random.Random | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(query xn [M, C], positives [M, Nc] bool, bank chunk means [G, Nc, D]) of one example."""
    means = cache.means(ex.bank)
    positions = sorted(ex.targets)
    if rng is not None and len(positions) > max_queries:
        positions = sorted(rng.sample(positions, max_queries))
    positives = torch.zeros(len(positions), means.shape[1], dtype=torch.bool, device=means.device)
    for i, t in enumerate(positions):
        positives[i, ex.targets[t]] = True
    return store[ex.query].xn[positions], positives, means


@torch.no_grad()
def evaluate_ranks(model: LongMemModel, examples: list[Example], store: list[Segment], chunk_size: int,
                   cache: BankCache | None = None) -> dict:
    """Rank of the best positive chunk (1 = top) per query token and head, summarised per example kind:
    median over (token, head) pairs, the share of pairs with rank <= 16 (inside what one head retrieves),
    and per token the best head's rank (median) and its share <= 16."""
    cache = cache or BankCache(store, chunk_size)
    by_kind: dict[str, list[torch.Tensor]] = {}
    for ex in examples:
        xn, pos, means = example_batch(ex, store, cache, max_queries=10 ** 9)
        if not len(xn):
            continue
        ranks = best_rank(chunk_logits(model, memory_queries(model, xn), means), pos)  # [M, H]
        by_kind.setdefault(ex.kind, []).append(ranks)
    out = {}
    for kind, rs in by_kind.items():
        r = torch.cat(rs).float()
        best = r.min(-1).values
        out[kind] = {"pairs": r.numel(), "median_rank": float(r.median()), "top16": float((r <= 16).float().mean()),
                     "best_head_median_rank": float(best.median()), "best_head_top16": float((best <= 16).float().mean()),
                     "chunks_mean": float(np.mean([cache.means(ex.bank).shape[1] for ex in examples if ex.kind == kind]))}
    return out


def _find(seq: list[int], sub: list[int]) -> int:
    for i in range(len(seq) - len(sub) + 1):
        if seq[i:i + len(sub)] == sub:
            return i
    return -1


@torch.no_grad()
def retrieve_eval(model: LongMemModel, store: list[Segment], groups: list[dict], top: int = 10) -> dict:
    """The end-to-end check: for every held-out fact, a real ``MemoryBank`` holding the book's excerpt and the
    fact segment (keys from the cache; values zero, which does not change what is retrieved), and
    ``model.retrieve(question)``; a hit is a retrieved chunk among the first ``top`` that overlaps the inserted
    fact. Returns the hit rate and, per fact, the position of the first overlapping chunk (None if not in the
    first 100)."""
    tok, c = model.tokenizer, model.cfg.chunk_size
    rows = []
    for g in groups:
        for f in g["facts"]:
            bank = model.new_bank(capacity=max(model.cfg.capacity, 1 << 20))
            span = None
            for s in g["excerpt"] + [f["segment"]]:
                seg = store[s]
                first = bank.n_chunks
                bank.add(seg.keys, torch.zeros_like(seg.keys), token_start=0)
                if s == f["segment"]:
                    fact_ids = tok(f["fact"]["text"], add_special_tokens=False)["input_ids"]
                    at = _find(seg.ids.tolist(), fact_ids)
                    span = (first + at // c, first + (at + len(fact_ids) - 1) // c) if at >= 0 else None
            got = model.retrieve(f["fact"]["question"], bank, top=100)
            pos = next((i + 1 for i, r in enumerate(got) if span and span[0] <= r.info.chunk_id <= span[1]), None)
            rows.append({"book": g["book"], "question": f["fact"]["question"], "value": f["fact"]["value"],
                         "first_hit": pos, "chunks": bank.n_chunks})
    hits = [r for r in rows if r["first_hit"] is not None and r["first_hit"] <= top]
    return {f"hit@{top}": len(hits) / max(1, len(rows)), "facts": rows}


# ------------------------------------------------------------------------------------------ building data


def book_ids(model: LongMemModel, path: str | Path) -> list[int]:
    return model.tokenizer(Path(path).read_text(encoding="utf-8"), add_special_tokens=False)["input_ids"]


def build_store(model: LongMemModel, books: list[str], *, excerpt_segments: int, facts_per_book: int,
                evaluation: bool = False, seed: int = 0, log=print) -> tuple[list[Segment], list[dict]]:
    """Read an excerpt of ``excerpt_segments`` segments of every book, plus ``facts_per_book`` segments of the same
    book (random windows, random lengths) with a fact inserted, plus one question segment per fact.

    Returns the store and a description of its groups (which segments form each book's excerpt, and for each fact
    the fact segment, value positions and question segment)."""
    rng = random.Random(seed)
    seg = model.segment_length - (1 if model.sink_id is not None else 0)
    store: list[Segment] = []
    groups = []
    for path in books:
        t0 = time.perf_counter()
        ids = book_ids(model, path)
        name = Path(path).name
        span = seg * excerpt_segments
        start = 0 if evaluation else rng.randrange(0, max(1, len(ids) - span))
        pieces = [ids[start + i * seg:start + (i + 1) * seg] for i in range(excerpt_segments)]
        pieces = [p for p in pieces if len(p) >= 8]
        first = len(store)
        store += segment_features(model, pieces, name)
        group = {"book": name, "excerpt": list(range(first, len(store))), "facts": []}
        for _ in range(facts_per_book):
            fact = make_fact(rng, evaluation)
            length = rng.randint(min(96, seg // 2), max(min(96, seg // 2), seg - 40))
            s = rng.randrange(0, len(ids) - length)
            fact_ids, value_pos = insert_fact(model, ids[s:s + length], fact, rng)
            fact_ids, value_pos = fact_ids[:seg], [p for p in value_pos if p < seg]
            question = model.tokenizer(fact.question, add_special_tokens=False)["input_ids"]
            if rng.random() < 0.25 and not evaluation:  # some questions through the chat template, as the app asks
                question = chat_question_ids(model, fact.question)
            store += segment_features(model, [fact_ids, question], name)
            group["facts"].append({"segment": len(store) - 2, "question": len(store) - 1, "value_pos": value_pos,
                                   "fact": asdict(fact)})
        groups.append(group)
        log(f"read {name}: {len(group['excerpt'])} segments + {facts_per_book} facts in {time.perf_counter() - t0:.0f} s")
    return store, groups


def chat_question_ids(model: LongMemModel, question: str) -> list[int]:
    """The question through the chat template, without the sink token (``chat_ids`` adds it)."""
    ids = model.chat_ids(question)
    return ids[1:] if model.sink_id is not None else ids


def make_examples(store: list[Segment], groups: list[dict], chunk_size: int, *, seed: int = 0,
                  distractor_books: int = 1, induction_per_book: int | None = None) -> list[Example]:
    """Induction examples (a segment of a book's excerpt queries the rest of the excerpt, plus the excerpt of
    ``distractor_books`` other books) and fact examples (a question queries the excerpt, other books' excerpts
    and the fact segment; its last token's positives are the value's chunks, its other tokens get induction
    targets)."""
    rng = random.Random(seed)
    examples = []
    for gi, g in enumerate(groups):
        others = [h for j, h in enumerate(groups) if j != gi]
        queries = g["excerpt"] if induction_per_book is None else rng.sample(g["excerpt"], min(induction_per_book, len(g["excerpt"])))
        for q in queries:
            extra = [s for h in rng.sample(others, min(distractor_books, len(others))) for s in h["excerpt"]]
            bank = [s for s in g["excerpt"] if s != q] + extra
            rng.shuffle(bank)
            examples.append(Example(bank=bank, query=q, targets=induction_targets(store, bank, q, chunk_size)))
        for f in g["facts"]:
            extra = [s for h in rng.sample(others, min(distractor_books, len(others))) for s in h["excerpt"]]
            bank = g["excerpt"] + extra
            bank.insert(rng.randrange(len(bank) + 1), f["segment"])
            targets = induction_targets(store, bank, f["question"], chunk_size)
            offs = chunk_offsets(store, bank, chunk_size)
            last = len(store[f["question"]].ids) - 1
            if f["value_pos"]:
                targets[last] = value_chunks(offs[bank.index(f["segment"])], f["value_pos"], chunk_size)
            examples.append(Example(bank=bank, query=f["question"], targets=targets, kind="fact"))
    return [e for e in examples if e.targets]


# ------------------------------------------------------------------------------------------ training


@dataclass
class RetrievalTrainConfig:
    data: list[str]  # training books (.txt files or folders)
    eval: list[str] = field(default_factory=list)  # held-out books
    out: str = "runs/retrieval"
    rank: int = 64  # memory_query_rank of the delta
    steps: int = 1500
    batch: int = 8  # examples per step
    max_queries: int = 48  # query tokens per example and step (sampled among those with targets)
    lr: float = 2e-3
    weight_decay: float = 0.0
    fact_weight: float = 1.0  # weight of the fact examples' loss relative to induction examples
    excerpt_segments: int = 8  # segments of each training book read as its excerpt
    facts_per_book: int = 16
    eval_excerpt_segments: int = 20  # ~20k tokens, as the pass-key test
    eval_facts_per_book: int = 12
    distractor_books: int = 1
    seed: int = 0


def select_delta(model: LongMemModel) -> list[torch.nn.Parameter]:
    """Freeze every SideNet parameter but the memory-query delta (so a checkpoint holds only the delta)."""
    model.side.requires_grad_(False)
    params = [model.side.q_mem_down.weight, model.side.q_mem_up.weight]
    for p in params:
        p.requires_grad_(True)
    return params


def train_retrieval(model: LongMemModel, store: list[Segment], examples: list[Example], cfg: RetrievalTrainConfig,
                    eval_fn=None, log=print) -> list[dict]:
    """Train the delta with multi-positive InfoNCE over each example's whole bank; returns the log records."""
    check_supported(model)
    params = select_delta(model)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = random.Random(cfg.seed)
    cache = BankCache(store, model.cfg.chunk_size)
    facts = [e for e in examples if e.kind == "fact"]
    induction = [e for e in examples if e.kind != "fact"]
    records, t0 = [], time.perf_counter()
    for step in range(cfg.steps):
        lr = cfg.lr * min(1.0, (step + 1) / 50) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / cfg.steps)))
        for g in opt.param_groups:
            g["lr"] = lr
        batch = [rng.choice(facts) if facts and (not induction or rng.random() < 0.5) else rng.choice(induction)
                 for _ in range(cfg.batch)]
        total, weight = 0.0, 0.0
        for ex in batch:
            xn, pos, means = example_batch(ex, store, cache, cfg.max_queries, rng)
            loss = infonce(chunk_logits(model, memory_queries(model, xn), means), pos)
            w = cfg.fact_weight if ex.kind == "fact" else 1.0
            total, weight = total + w * loss, weight + w
        (total / weight).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if (step + 1) % 50 == 0 or step == 0:
            rec = {"step": step + 1, "loss": float(total.detach() / weight), "lr": lr, "seconds": round(time.perf_counter() - t0, 1)}
            if eval_fn is not None and ((step + 1) % 250 == 0 or step + 1 == cfg.steps):
                rec["eval"] = eval_fn()
            records.append(rec)
            log(json.dumps(rec))
    return records


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m longmem_core train-retrieval", description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="+", help="training books (.txt files or folders)")
    ap.add_argument("--eval", nargs="*", default=[], help="held-out books for target-chunk ranks")
    ap.add_argument("--out", default="runs/retrieval")
    ap.add_argument("--backbone", default=None, help="backbone (default: the config preset's)")
    ap.add_argument("--preset", default="default", help="config preset to start from (default, tiny, tiny-gpt2)")
    ap.add_argument("--segment-length", type=int, default=None, help="override the preset's segment length")
    d = RetrievalTrainConfig(data=[])
    for name in ("rank", "steps", "batch", "max_queries", "excerpt_segments", "facts_per_book",
                 "eval_excerpt_segments", "eval_facts_per_book", "distractor_books", "seed"):
        ap.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name))
    for name in ("lr", "weight_decay", "fact_weight"):
        ap.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(d, name))
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from .train import text_files
    cfg = RetrievalTrainConfig(data=[str(p) for p in text_files(args.data)],
                               eval=[str(p) for p in text_files(args.eval)] if args.eval else [],
                               **{k: getattr(args, k) for k in ("out", "rank", "steps", "batch", "max_queries", "lr",
                                                                 "weight_decay", "fact_weight", "excerpt_segments",
                                                                 "facts_per_book", "eval_excerpt_segments",
                                                                 "eval_facts_per_book", "distractor_books", "seed")})
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    from .config import preset
    overrides = {"memory_query_rank": cfg.rank}
    if args.backbone:
        overrides["backbone"] = args.backbone
    if args.segment_length:
        overrides["segment_length"] = args.segment_length
    model = LongMemModel(preset(args.preset, **overrides))
    torch.manual_seed(cfg.seed)
    model.side.q_mem_down.reset_parameters()
    torch.nn.init.normal_(model.side.q_mem_down.weight, std=model.backbone.d_model ** -0.5)
    c = model.cfg.chunk_size
    store, groups = _cached_store(model, cfg.data, out / "train_features.pt", cfg.excerpt_segments,
                                  cfg.facts_per_book, False, cfg.seed, log)
    examples = make_examples(store, groups, c, seed=cfg.seed, distractor_books=cfg.distractor_books)
    log(f"{len(examples)} training examples ({sum(e.kind == 'fact' for e in examples)} facts), "
        f"{sum(len(e.targets) for e in examples)} query tokens with targets")
    eval_fn = None
    report: dict = {"train_config": asdict(cfg)}
    if cfg.eval:
        ev_store, ev_groups = _cached_store(model, cfg.eval, out / "eval_features.pt", cfg.eval_excerpt_segments,
                                            cfg.eval_facts_per_book, True, cfg.seed + 1, log)
        ev_examples = make_examples(ev_store, ev_groups, c, seed=cfg.seed + 1, distractor_books=0,
                                    induction_per_book=4)
        ev_cache = BankCache(ev_store, c)
        eval_fn = lambda: evaluate_ranks(model, ev_examples, ev_store, c, ev_cache)  # noqa: E731
        report["eval_before"] = eval_fn()
        report["retrieve_before"] = retrieve_eval(model, ev_store, ev_groups)
        log("held-out before: " + json.dumps(report["eval_before"]) +
            f" retrieve hit@10 {report['retrieve_before']['hit@10']:.2f}")
    t0 = time.perf_counter()
    report["log"] = train_retrieval(model, store, examples, cfg, eval_fn, log)
    report["train_seconds"] = round(time.perf_counter() - t0, 1)
    if eval_fn is not None:
        report["eval_after"] = eval_fn()
        report["retrieve_after"] = retrieve_eval(model, ev_store, ev_groups)
        log("held-out after: " + json.dumps(report["eval_after"]) +
            f" retrieve hit@10 {report['retrieve_after']['hit@10']:.2f}")
    path = model.save_checkpoint(out / "sidenet.safetensors",
                                 note=json.dumps({"kind": "retrieval", "train_config": asdict(cfg)}))
    report["checkpoint"] = str(path)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps({"checkpoint": report["checkpoint"], "train_seconds": report["train_seconds"],
                      **{k: report[k] for k in ("eval_before", "eval_after") if k in report},
                      **{k: report[k]["hit@10"] for k in ("retrieve_before", "retrieve_after") if k in report}}))
    return 0


def _cached_store(model, books, path: Path, excerpt_segments, facts_per_book, evaluation, seed, log):
    """Features of the books, read once and kept at ``path`` (reused when the same books and settings match)."""
    key = {"books": [str(b) for b in books], "excerpt_segments": excerpt_segments, "facts_per_book": facts_per_book,
           "evaluation": evaluation, "seed": seed, "backbone": model._fingerprint, "memory_layer": model.memory_layer,
           "segment_length": model.segment_length}
    if path.exists():
        saved = torch.load(path, weights_only=False)
        if saved.get("key") == key:
            log(f"using cached features {path}")
            return [Segment(**d) for d in saved["store"]], saved["groups"]
    store, groups = build_store(model, books, excerpt_segments=excerpt_segments, facts_per_book=facts_per_book,
                                evaluation=evaluation, seed=seed, log=log)
    torch.save({"key": key, "store": [asdict(s) for s in store], "groups": groups}, path)
    return store, groups


if __name__ == "__main__":
    raise SystemExit(main())
