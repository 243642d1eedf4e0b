"""Scoring continuations: log-probabilities of labels or token sequences after a prompt, all read in one batch,
and prompt caches that let many scorings share one prompt prefix read once.

Shapes follow ``shapes.py`` (V vocabulary).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .kv_cache import ModelCaches
from .memory_bank import MemoryBank
from .side_network import RetrievalTrace

if TYPE_CHECKING:
    from .model import LongMemModel


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
    caches = ModelCaches.empty(model)
    model(torch.tensor([ids], device=model.device), bank, caches=caches, top_k=top_k, logits_from=len(ids))
    return PromptCache(ids=ids, caches=caches, bank=bank, top_k=top_k)


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
    width = len(prompt_ids) + max(len(ids) for ids in continuations)
    pad = model.tokenizer.pad_token_id or 0
    rows = [prompt_ids[n:] + ids + [pad] * (width - len(prompt_ids) - len(ids)) for ids in continuations]
    caches = cache.expand(n, len(rows)) if n else None
    # right padding never changes earlier positions
    first = len(prompt_ids) - 1 - n  # the prompt's last position: its logits score the first continuation token
    out = model(torch.tensor(rows, device=model.device), bank, trace=trace, top_k=top_k, caches=caches,
                logits_from=first)  # logits only where continuations are scored, not over the whole prompt
    logp = torch.log_softmax(out.logits.float(), dim=-1)  # [rows, width - n - first, V]
    scores = []
    for row, ids in enumerate(continuations):
        pos = torch.arange(0, len(ids), device=logp.device)
        scores.append(logp[row, pos, torch.tensor(ids, device=logp.device)].sum())
    return torch.stack(scores).cpu(), out.trace
