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
# rows read in one batch by ``score_prompts``: each row holds its own copy of the cached prompt's keys and values
# (~45 KB per cached token and row on the default model, ~30 MB for a 20-shot prompt), so this bounds memory ...
ROWS_AT_ONCE = 16
TOKENS_AT_ONCE = 1024  # ... and so does this, of the rows' own tokens, pads included (hidden states, retrieval)


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
                          memory_share=torch.cat([t.memory_share for t in traces], 1), gate=traces[0].gate,
                          branch_scale=traces[0].branch_scale)


@torch.no_grad()
def score_labels(model: "LongMemModel", prompt: str, labels: list[str], bank: MemoryBank | None = None,
                 trace: bool = False, top_k: int | None = None,
                 cache: PromptCache | None = None) -> tuple[torch.Tensor, RetrievalTrace | None]:
    """Sum of log-probabilities of each label's tokens after ``prompt``: [n_labels], and the prompt's trace."""
    return score_continuations(model, model.encode(prompt), label_token_ids(model, labels), bank, trace=trace,
                               top_k=top_k, cache=cache)


def label_token_ids(model: "LongMemModel", labels: list[str]) -> list[list[int]]:
    """Each label's token ids (no special tokens); ValueError for a label with none."""
    label_ids = [model.tokenizer(label, add_special_tokens=False)["input_ids"] for label in labels]
    if any(not ids for ids in label_ids):
        raise ValueError("every label must contain at least one token")
    return label_ids


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


def length_batches(lengths: list[int], rows: int, tokens: int) -> list[list[int]]:
    """Indices of rows of these ``lengths`` in batches to read together right-padded: the shortest first, so rows
    of similar length share a batch and it pads little; at most ``rows`` rows and ``rows * the longest`` at most
    ``tokens`` tokens a batch (one row at least)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches and len(batches[-1]) < rows and (len(batches[-1]) + 1) * lengths[i] <= tokens:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


@torch.no_grad()
def score_prompts(model: "LongMemModel", prompts: list[list[int]], continuations: list[list[int]],
                  bank: MemoryBank | None = None, *, top_k: int | None = None,
                  cache: PromptCache | None = None) -> torch.Tensor:
    """Sum of log-probabilities of each continuation's tokens after each of several prompts (token ids opened by
    the sink token): [n_prompts, n_continuations], row i what ``score_continuations(prompts[i], continuations)``
    gives, up to float rounding. ``cache``: the prompt prefix they share, read once (same bank and top_k).

    The prompts are read in batches of similar lengths (``ROWS_AT_ONCE`` rows, ``TOKENS_AT_ONCE`` tokens at most),
    right-padded, each after the cached prefix expanded to the batch: a row is a prompt's tokens after the cache,
    then one continuation's. Attention is causal and every row's positions count on from the cache, so a real token
    never sees the pads after it and reads as it would alone: no padding mask is needed. A one-token continuation is
    scored at its prompt's last position, which every row of that prompt reads: a prompt has one row per
    continuation of more than one token, or one row (its tokens alone) if there is none. Logits are computed only
    where a continuation token is scored."""
    if not continuations or any(not ids for ids in continuations):
        raise ValueError("every continuation must contain at least one token")
    if cache is not None and (cache.bank is not bank or cache.top_k != top_k):
        raise ValueError("this prompt cache was made with another bank or top_k")
    if any(not ids for ids in prompts):
        raise ValueError("every prompt must contain at least one token")
    shared = [cache.shared(ids) if cache is not None else 0 for ids in prompts]  # cached tokens of each prompt
    for ids, n in zip(prompts, shared):
        check_prompt_tokens(len(ids) - n - 1)  # as score_continuations: the tokens read before its last
    longer = [j for j, ids in enumerate(continuations) if len(ids) > 1]
    single = [j for j, ids in enumerate(continuations) if len(ids) == 1]
    rows = [(i, j) for i in range(len(prompts)) for j in (longer or [None])]  # (prompt, its row's continuation)
    lengths = [len(prompts[i]) - shared[i] + (len(continuations[j]) if j is not None else 0) for i, j in rows]
    scores = torch.zeros(len(prompts), len(continuations))
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    for group in length_batches(lengths, ROWS_AT_ONCE, TOKENS_AT_ONCE):
        part = [rows[g] for g in group]
        n = min(shared[i] for i, _ in part)  # cached tokens every row of the batch starts from
        tails = [prompts[i][n:] + (continuations[j] if j is not None else []) for i, j in part]
        width = max(len(t) for t in tails)
        batch = torch.full((len(part), width), pad, dtype=torch.long, device=model.device)  # [B, T] right-padded
        for r, tail in enumerate(tails):
            batch[r, :len(tail)] = torch.tensor(tail)
        caches = cache.expand(n, len(part)) if n else None
        hidden = model(batch, bank, top_k=top_k, caches=caches, logits_from=width).hidden  # [B, T, W]
        # the positions whose next token is scored: (row, position, token, prompt, continuation)
        picks: list[tuple[int, int, int, int, int]] = []
        for r, (i, j) in enumerate(part):
            last = len(prompts[i]) - n - 1  # the prompt's last position in this row
            if j is None or j == longer[0]:  # the prompt's first row scores its one-token continuations
                picks += [(r, last, continuations[k][0], i, k) for k in single]
            if j is not None:
                picks += [(r, last + t, tok, i, j) for t, tok in enumerate(continuations[j])]
        r_at, t_at, tok, i_at, j_at = (torch.tensor(col) for col in zip(*picks))
        chosen = hidden[r_at.to(model.device), t_at.to(model.device)]  # [picks, W]
        logp = torch.log_softmax(model.backbone.logits(chosen).float(), dim=-1).cpu()  # [picks, V]
        scores.index_put_((i_at, j_at), logp[torch.arange(len(picks)), tok], accumulate=True)
    return scores
