"""Generation as small typed functions: ``prefill`` reads the prompt, ``decode_one_token`` reads one token, both
into caches allocated for the whole generation; ``sample_token`` picks the next token; ``generate`` streams text.

Shapes follow ``shapes.py`` (B batch, T tokens, V vocabulary).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator

import torch

from .kv_cache import ModelCaches
from .memory_bank import MemoryBank
from .prompts import stop_token_ids
from .side_network import RetrievalTrace

if TYPE_CHECKING:
    from .model import LongMemModel

MAX_CONTEXT = 8192  # tokens one generation holds at most, prompt included (bounds the caches it allocates)


@dataclass
class Generation:
    """A streaming generation: iterate for text pieces; afterwards ``text``, ``token_ids`` and ``retrieved``."""

    steps: Iterator[str]
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    chunk_mass: dict[int, float] = field(default_factory=dict)  # chunk id -> summed memory attention mass
    memory_share: float = 0.0  # mean share of the memory layer's output that came from memory

    def __iter__(self) -> Iterator[str]:
        return self.steps


@dataclass
class Step:
    """What one forward of a generation gives: the next token's logits and what memory contributed."""

    logits: torch.Tensor  # [V] at the last position read
    trace: RetrievalTrace | None


def _read(model: "LongMemModel", ids: torch.Tensor, bank: MemoryBank | None, caches: ModelCaches,
          backbone_only: bool, top_k: int | None) -> Step:
    """Read ids [1, T] after what ``caches`` hold."""
    if backbone_only:
        hidden = model.backbone(ids, caches=caches.backbone).hidden_states[-1]  # [1, T, W]
        return Step(model.backbone.logits(hidden[:, -1:])[0, -1], None)
    out = model(ids, bank, trace=bank is not None, caches=caches, top_k=top_k)
    return Step(out.logits[0, -1], out.trace)


def prefill(model: "LongMemModel", prompt: torch.Tensor, bank: MemoryBank | None, caches: ModelCaches, *,
            backbone_only: bool = False, top_k: int | None = None) -> Step:
    """Read the prompt [1, T] into empty ``caches``; the logits predict its next token."""
    assert caches.backbone[0].length == 0, "prefill starts a generation: its caches must be empty"
    return _read(model, prompt, bank, caches, backbone_only, top_k)


def decode_one_token(model: "LongMemModel", token: torch.Tensor, bank: MemoryBank | None, caches: ModelCaches, *,
                     backbone_only: bool = False, top_k: int | None = None) -> Step:
    """Read one token [1, 1] after the tokens ``caches`` hold (on a CPU with two threads and
    ``cfg.parallel_decode``, the SideNet runs beside the backbone: ``LongMemModel.forward``)."""
    assert token.shape == (1, 1), f"decode_one_token reads one token, got shape {tuple(token.shape)}"
    return _read(model, token, bank, caches, backbone_only, top_k)


def sample_token(logits: torch.Tensor, temperature: float, top_p: float, generator=None) -> int:
    """Greedy at temperature 0, else nucleus sampling. logits: [V]."""
    if temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    sorted_p, order = probs.sort(descending=True)
    keep = sorted_p.cumsum(0) - sorted_p < top_p  # smallest set whose mass reaches top_p
    sorted_p = sorted_p * keep
    return int(order[torch.multinomial(sorted_p / sorted_p.sum(), 1, generator=generator)])


def generate(model: "LongMemModel", prompt_ids: list[int], bank: MemoryBank | None = None, *,
             max_new_tokens: int = 128, temperature: float = 0.0, top_p: float = 0.9, backbone_only: bool = False,
             seed: int | None = None, top_k: int | None = None) -> Generation:
    """Stream a continuation of ``prompt_ids`` (see ``LongMemModel.generate``). The prompt is cut from the left to
    leave room for ``max_new_tokens`` within the backbone's context (at most ``MAX_CONTEXT``)."""
    if bank is not None and not backbone_only:
        model.check_bank(bank)
    max_ctx = min(model.backbone.max_positions, MAX_CONTEXT)
    if len(prompt_ids) + max_new_tokens > max_ctx:
        prompt_ids = prompt_ids[-(max_ctx - max_new_tokens):]
    gen = Generation(steps=iter(()))
    gen.steps = _stream(model, gen, prompt_ids, bank, max_new_tokens, temperature, top_p, backbone_only, seed, top_k)
    return gen


@torch.no_grad()
def _stream(model: "LongMemModel", gen: Generation, prompt_ids: list[int], bank: MemoryBank | None,
            max_new_tokens: int, temperature: float, top_p: float, backbone_only: bool, seed: int | None,
            top_k: int | None) -> Iterator[str]:
    """The token loop behind ``generate``: yields text as soon as it decodes to whole characters."""
    if max_new_tokens <= 0:
        return
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    stop = stop_token_ids(model.tokenizer)
    caches = ModelCaches.empty(model, max_length=len(prompt_ids) + max_new_tokens)
    options = dict(backbone_only=backbone_only, top_k=top_k)
    step = prefill(model, torch.tensor([prompt_ids], device=model.device), bank, caches, **options)
    shares: list[float] = []
    while True:
        if step.trace is not None:
            for cid, w in step.trace.chunk_totals(0).items():
                gen.chunk_mass[cid] = gen.chunk_mass.get(cid, 0.0) + w
            shares.append(float(step.trace.memory_share.mean()))
        token = sample_token(step.logits.float().cpu(), temperature, top_p, generator)
        if token in stop:
            break
        gen.token_ids.append(token)
        text = model.tokenizer.decode(gen.token_ids, skip_special_tokens=True)
        if not text.endswith("\ufffd"):  # wait for the rest of a multi-byte character
            delta, gen.text = text[len(gen.text):], text
            if delta:
                yield delta
        if len(gen.token_ids) == max_new_tokens:
            break
        step = decode_one_token(model, torch.tensor([[token]], device=model.device), bank, caches, **options)
    gen.memory_share = sum(shares) / len(shares) if shares else 0.0
