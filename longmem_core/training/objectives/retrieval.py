"""Retrieval: train the memory-query delta so that the memory layer's queries *find* what a reader looks for.

Shape legend: M query tokens with a target, H query heads, G kv heads, D head dim, C width, Nc chunks in a bank.

The untrained SideNet searches memory with the memory layer's own (unrotated) queries, and these do not rank the
chunk holding "the door code is 4412" first for a question "... the door code is". Only a small low-rank delta on
the memory layer's query projection trains (``LongMemConfig.memory_query_rank``, ``trainable="search"``), on the
examples of ``search_examples.py``. The backbone is frozen, so its work is cached (``features.Segment``); a step
is the memory queries of the cached inputs (the SideNet's own ``search_queries``) and a multi-positive InfoNCE
over all chunk-mean keys of a bank (logits ``q . k_chunk * D**-0.5``, the attention scale), per query head.
"""
from __future__ import annotations

import random

import numpy as np
import torch

from ...config import RetrievalTrainConfig
from ..features import BankCache, Segment
from ..search_examples import FACT_KINDS, SearchExample
from . import batch_rng


def memory_queries(model, xn: torch.Tensor) -> torch.Tensor:
    """The memory layer's normed input xn [M, C] -> its memory queries [M, H, D] (``SideNetwork.search_queries``)."""
    q = model.side.search_queries(xn.float().to(model.device).unsqueeze(0))  # [1, H, M, D]
    return q[0].transpose(0, 1)


def chunk_logits(model, q: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
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


def example_batch(ex: SearchExample, store: list[Segment], cache: BankCache, max_queries: int,
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
def evaluate_ranks(model, examples: list[SearchExample], store: list[Segment], chunk_size: int,
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
def retrieve_eval(model, store: list[Segment], groups: list[dict], top: int = 10) -> dict:
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
            got = model.retrieve(f["fact"]["question"], bank, search_top=100)
            pos = next((i + 1 for i, r in enumerate(got) if span and span[0] <= r.info.chunk_id <= span[1]), None)
            rows.append({"book": g["book"], "question": f["fact"]["question"], "value": f["fact"]["value"],
                         "first_hit": pos, "chunks": bank.n_chunks})
    hits = [r for r in rows if r["first_hit"] is not None and r["first_hit"] <= top]
    return {f"hit@{top}": len(hits) / max(1, len(rows)), "facts": rows}


def check_supported(model) -> None:
    """Cached inputs assume the identity-initialised SideNet whose layers before the memory layer are idle."""
    side = model.side
    if side.scale is None:
        raise ValueError("retrieval training needs side_init='identity' (the memory layer then reads H[2i] exactly)")
    if bool((side.scale.detach()[:side.memory_index] != 0).any()):
        raise ValueError("retrieval training needs the side layers before the memory layer to be idle (scale 0); "
                         "start from an untrained SideNet")
    if side.q_mem_up is None:
        raise ValueError("the model has no memory-query delta; build it with memory_query_rank > 0")


class Retrieval:
    """Each batch: ``cfg.batch`` examples (facts and induction, half and half where both exist), InfoNCE over each
    example's whole bank, fact examples weighted ``cfg.fact_weight``."""

    kind = "retrieval"

    def __init__(self, model, store: list[Segment], examples: list[SearchExample], cfg: RetrievalTrainConfig,
                 validation=None) -> None:
        check_supported(model)
        self.model, self.store, self.cfg = model, store, cfg
        self.cache = BankCache(store, model.cfg.chunk_size)
        self.facts = [e for e in examples if e.kind in FACT_KINDS]
        self.induction = [e for e in examples if e.kind not in FACT_KINDS]
        self._validation = validation  # () -> dict, or None

    def accumulate(self, batch: int) -> dict[str, float]:
        rng = batch_rng(self.cfg.seed, batch)
        chosen = [rng.choice(self.facts) if self.facts and (not self.induction or rng.random() < 0.5)
                  else rng.choice(self.induction) for _ in range(self.cfg.batch)]
        total, weight, queries = 0.0, 0.0, 0
        for ex in chosen:
            xn, pos, means = example_batch(ex, self.store, self.cache, self.cfg.max_queries, rng)
            loss = infonce(chunk_logits(self.model, memory_queries(self.model, xn), means), pos)
            w = self.cfg.fact_weight if ex.kind in FACT_KINDS else 1.0
            total, weight, queries = total + w * loss, weight + w, queries + len(xn)
        (total / weight).backward()
        return {"loss": float(total.detach() / weight), "tokens": queries}

    def validate(self) -> dict:
        return self._validation() if self._validation else {}
