"""Language modelling over long documents read in order (memory-augmented adaptation, as the paper).

A training example is a run of consecutive segments of one document (an *excerpt*); memory holds the excerpt's
preceding segments and is reset between excerpts. Batch i is ``grad_accum`` consecutive segments of the run's
plan: segment k of the run is segment 1 + k % (E - 1) of excerpt k // (E - 1) (segment 0 of an excerpt only fills
memory). The plan of excerpts is a pure function of the data and the seed.

With ``cache_features`` the plan is epochs over the documents' non-overlapping excerpts, the frozen backbone's work
on every training segment is computed once (``features.py``, kept in RAM: about 3 KB per token for SmolLM2-135M)
and a step runs only the memory layer, the final norm and the LM head.
"""
from __future__ import annotations

import random

import torch

from ...config import TrainConfig
from ...model.segments import read_into_memory, segment_loss, segment_tokens
from ..corpus import book_ids, text_files
from ..features import SegmentFeatureCache, cached_segment_loss


def plan_excerpts(lengths: list[int], seg: int, n_segments: int, count: int, seed: int) -> list[tuple[int, int]]:
    """(document index, first token) of ``count`` excerpts of ``n_segments`` segments, sampled with the seed."""
    rng = random.Random(seed)
    span = seg * n_segments
    usable = [i for i, n in enumerate(lengths) if n >= span]
    if not usable:
        raise ValueError(f"no document has {span} tokens; lower excerpt_segments")
    weights = [lengths[i] for i in usable]
    return [(d, rng.randrange(0, lengths[d] - span + 1)) for d in rng.choices(usable, weights=weights, k=count)]


def plan_epochs(lengths: list[int], seg: int, n_segments: int, count: int, seed: int) -> list[tuple[int, int]]:
    """``count`` excerpts as epochs over every document's non-overlapping excerpts (each epoch shuffled with the
    seed): the same segments come back every epoch, so their cached features are reused."""
    span = seg * n_segments
    pool = [(d, first) for d, n in enumerate(lengths) for first in range(0, n - span + 1, span)]
    if not pool:
        raise ValueError(f"no document has {span} tokens; lower excerpt_segments")
    rng, plan = random.Random(seed), []
    while len(plan) < count:
        epoch = list(pool)
        rng.shuffle(epoch)
        plan += epoch
    return plan[:count]


class LanguageModelling:
    """Next-token loss of each segment, reading memory of the excerpt's preceding segments."""

    kind = "language"

    def __init__(self, model, cfg: TrainConfig, world: int = 1) -> None:
        self.model, self.cfg = model, cfg
        tok = model.tokenizer
        self.docs = [book_ids(tok, p) for p in text_files(cfg.data)]
        self.val_docs = [book_ids(tok, p) for p in text_files(cfg.val)] if cfg.val else []
        self.seg = segment_tokens(model)
        self.per = cfg.excerpt_segments - 1  # trained segments per excerpt
        n_excerpts = -(-cfg.steps * world * cfg.grad_accum // self.per) + 1
        planner = plan_epochs if cfg.cache_features else plan_excerpts
        self.plan = planner([len(d) for d in self.docs], self.seg, cfg.excerpt_segments, n_excerpts, cfg.seed)
        self.features = SegmentFeatureCache(model) if cfg.cache_features else None
        self._bank, self._bank_key = None, None  # the bank of the excerpt being read, and (excerpt, last segment) in it

    def _segment(self, e: int, s: int) -> list[int]:
        d, first = self.plan[e]
        return self.docs[d][first + s * self.seg:first + (s + 1) * self.seg]

    def _bank_before(self, e: int, s: int):
        """The bank holding segments 0 .. s-1 of excerpt e (continued from the last batch, else re-read)."""
        if self._bank_key != (e, s - 1):
            self._bank = self.model.new_bank()
            if self.features is not None:
                for j in range(s):
                    keys, values = self.features.kv(self.plan[e][0], self.plan[e][1] + j * self.seg, self._segment(e, j))
                    self._bank.add(keys, values, token_start=j * self.seg)
            else:
                d, first = self.plan[e]
                read_into_memory(self.model, self.docs[d][first:first + s * self.seg], self._bank)
        return self._bank

    def accumulate(self, batch: int) -> dict[str, float]:
        total_loss, total_n = 0.0, 0
        for micro in range(self.cfg.grad_accum):
            e, s = divmod(batch * self.cfg.grad_accum + micro, self.per)
            s += 1
            bank = self._bank_before(e, s)
            piece = self._segment(e, s)
            if self.features is not None:
                d, first = self.plan[e]
                loss, n, keys, values = cached_segment_loss(self.model, self.features.get(d, first + s * self.seg, piece), bank)
            else:
                loss, n, keys, values = segment_loss(self.model, piece, bank)
            (loss / n / self.cfg.grad_accum).backward()
            bank.add(keys.detach(), values.detach(), token_start=s * self.seg)
            self._bank_key = (e, s)
            total_loss, total_n = total_loss + loss.item(), total_n + n
        return {"loss": total_loss / total_n, "tokens": total_n}

    def validate(self) -> dict[str, float]:
        """Mean next-token loss on the first segments of each validation document, with and without memory."""
        if not self.val_docs:
            return {}
        totals = {"memory": 0.0, "no_memory": 0.0}
        tokens = 0
        for ids in self.val_docs:
            bank = self.model.new_bank()
            for s in range(self.cfg.val_segments):
                piece = ids[s * self.seg:(s + 1) * self.seg]
                if len(piece) < 2:
                    break
                loss, n, k, v = segment_loss(self.model, piece, bank)
                totals["memory"] += float(loss)
                totals["no_memory"] += float(segment_loss(self.model, piece, None)[0])
                bank.add(k, v, token_start=s * self.seg)
                tokens += n
        return {"val_loss_memory": totals["memory"] / max(tokens, 1),
                "val_loss_no_memory": totals["no_memory"] / max(tokens, 1), "val_tokens": tokens}
