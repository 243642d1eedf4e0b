"""Scoring continuations: log-probabilities of labels or token sequences after a prompt, all read in one batch,
and prompt caches that let many scorings share one prompt prefix read once.

A prompt is read in blocks of ``PROMPT_BLOCK`` tokens into caches (once, not once per continuation), and logits
are computed only where continuations are scored: what reading costs grows with the block, not with the prompt
(the memory layer's retrieved keys and values, and [T, V] logits, per token read together).

Shapes follow ``shapes.py`` (V vocabulary).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .kv_cache import ModelCaches
from ..limits import check_prompt_tokens
from ..memory.memory_bank import MemoryBank
from .side_network import RetrievalTrace

if TYPE_CHECKING:
    from .model import LongMemModel

PROMPT_BLOCK = 256  # prompt tokens read at once (the default model retrieves ~0.3 MB of memory keys per token)


@dataclass
class PromptCache:
    """A prompt prefix read once (``cache_prompt``): its token ids and every layer's keys/values."""

    ids: list[int]
    caches: ModelCaches
    bank: MemoryBank | None
    top_k: int | None  # tokens retrieved per query token and head it was read with (None: the config's)

    def shared(self, prompt_ids: list[int]) -> int:
        """How many leading tokens of ``prompt_ids`` the cache can stand for: the common prefix, less one so the
        prompt's last position is always read (its logits score the first label token)."""
        n = 0
        for a, b in zip(self.ids, prompt_ids):
            if a != b:
                break
            n += 1
        return min(n, len(prompt_ids) - 1)

    def expand(self, length: int, batch: int) -> ModelCaches:
        return self.caches.expand(length, batch)


@torch.no_grad()
def cache_prompt(model: "LongMemModel", prompt: str | list[int], bank: MemoryBank | None = None,
                 top_k: int | None = None) -> PromptCache:
    """Read a prompt prefix once and keep every layer's keys/values (see ``LongMemModel.cache_prompt``)."""
    ids = model.encode(prompt) if isinstance(prompt, str) else list(prompt)
    check_prompt_tokens(len(ids))
    caches = ModelCaches.empty(model, max_length=len(ids))
    _read(model, ids, bank, caches, top_k)
    return PromptCache(ids=ids, caches=caches, bank=bank, top_k=top_k)


def _read(model: "LongMemModel", ids: list[int], bank: MemoryBank | None, caches: ModelCaches, top_k: int | None,
          trace: bool = False) -> list[RetrievalTrace | None]:
    """Read ``ids`` (one row) into ``caches`` in blocks of PROMPT_BLOCK tokens, computing no logits; each block's
    trace (None without one)."""
    traces = []
    for start in range(0, len(ids), PROMPT_BLOCK):
        block = ids[start:start + PROMPT_BLOCK]
        out = model(torch.tensor([block], device=model.device), bank, caches=caches, top_k=top_k, trace=trace,
                    logits_from=len(block))
        traces.append(out.trace)
    return traces


def _joined(traces: list[RetrievalTrace | None]) -> RetrievalTrace | None:
    """Traces of one row read in pieces [1, T_i, ...] as one trace [1, sum T_i, ...] (None if any is None)."""
    if not traces or any(t is None for t in traces):
        return None
    if len(traces) == 1:
        return traces[0]
    return RetrievalTrace(chunk_ids=torch.cat([t.chunk_ids for t in traces], 1),
                          chunk_scores=torch.cat([t.chunk_scores for t in traces], 1),
                          chunk_weights=torch.cat([t.chunk_weights for t in traces], 1),
                          memory_share=torch.cat([t.memory_share for t in traces], 1), gate=traces[0].gate)


@torch.no_grad()
def score_labels(model: "LongMemModel", prompt: str, labels: list[str], bank: MemoryBank | None = None,
                 trace: bool = False, top_k: int | None = None,
                 cache: PromptCache | None = None) -> tuple[torch.Tensor, RetrievalTrace | None]:
    """Sum of log-probabilities of each label's tokens after ``prompt``: [n_labels], and the prompt's trace."""
    label_ids = [model.tokenizer(label, add_special_tokens=False)["input_ids"] for label in labels]
    if any(not ids for ids in label_ids):
        raise ValueError("every label must contain at least one token")
    return score_continuations(model, model.encode(prompt), label_ids, bank, trace=trace, top_k=top_k, cache=cache)


@torch.no_grad()
def score_continuations(model: "LongMemModel", prompt_ids: list[int], continuations: list[list[int]],
                        bank: MemoryBank | None = None, *, trace: bool = False, top_k: int | None = None,
                        cache: PromptCache | None = None) -> tuple[torch.Tensor, RetrievalTrace | None]:
    """Sum of log-probabilities of each continuation's tokens after ``prompt_ids``: [n_continuations], all read in
    one batch, and the trace of the batch's first row (see ``LongMemModel.score_continuations``)."""
    if not continuations or any(not ids for ids in continuations):
        raise ValueError("every continuation must contain at least one token")
    n = 0
    if cache is not None:
        if cache.bank is not bank or cache.top_k != top_k:
            raise ValueError("this prompt cache was made with another bank or top_k")
        n = cache.shared(prompt_ids)
    # the prompt's tokens after the cached ones, but its last, read once in blocks (one row); then each
    # continuation from the prompt's last token, one at a time: a continuation's first step copies the prompt's
    # caches for itself, so one copy lives at a time, not one per continuation
    head = prompt_ids[n:-1]
    check_prompt_tokens(len(head))
    caches = cache.expand(n, 1) if n else ModelCaches.empty(model, max_length=len(prompt_ids))
    traces = _read(model, head, bank, caches, top_k, trace)
    scores, first_trace = [], None
    for row, ids in enumerate(continuations):
        out = model(torch.tensor([prompt_ids[-1:] + ids], device=model.device), bank, trace=trace and row == 0,
                    top_k=top_k, caches=caches.expand(n + len(head), 1))
        logp = torch.log_softmax(out.logits[0, :len(ids)].float(), dim=-1)  # [len(ids), V]
        scores.append(logp[torch.arange(len(ids)), torch.tensor(ids)].sum())
        first_trace = out.trace if row == 0 else first_trace
    return torch.stack(scores).cpu(), _joined(traces + [first_trace]) if trace else None
