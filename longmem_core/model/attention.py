"""Attention math as pure functions: rotary embedding, causal attention, memory-augmented attention.

Shapes follow ``shapes.py``: B batch, T query tokens, S key tokens (local context), H query heads,
G kv heads, D head dim, K tokens retrieved from memory per query token and head.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` [B, H, T, D] by position angles ``cos``/``sin`` [B, T, D] (Llama's half-split layout)."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # [B, 1, T, D]
    return x * cos + rotate_half(x) * sin


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """Causal attention where the T queries are the *last* T of the S keys.

    q: [B, H, T, D]; k, v: [B, G, S, D] with H a multiple of G (grouped-query attention).
    Returns [B, H, T, D].
    """
    T, S = q.shape[2], k.shape[2]
    gqa = q.shape[1] != k.shape[1]
    if T == S:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=gqa)
    # queries sit at positions S-T .. S-1: each sees keys up to its own position (bottom-right aligned)
    allowed = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(diagonal=S - T)  # [T, S]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=scale, enable_gqa=gqa)


@dataclass
class MemoryAttention:
    """What the memory branch of one joint attention computed (for traces)."""

    weights: torch.Tensor  # [B, H, T, K] softmax over the retrieved tokens (0 where masked)
    memory_share: torch.Tensor  # [B, H, T] share of the output taken from memory: sigmoid(g_h), 0 if nothing was retrieved
    local: torch.Tensor  # [B, H, T, D] the local causal attention alone, before mixing in memory


def memory_augmented_attention(
    q_local: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_memory: torch.Tensor,
    memory_keys: torch.Tensor,
    memory_values: torch.Tensor,
    memory_mask: torch.Tensor,
    gate_logit: torch.Tensor,
    scale: float,
) -> tuple[torch.Tensor, MemoryAttention]:
    """LongMem's joint attention: local causal attention and attention over retrieved memory, each with its
    own softmax, mixed per head by a sigmoid gate: ``out = (1 - s) * local + s * memory``, ``s = sigmoid(g_h)``.

    q_local: [B, H, T, D] queries for local attention (rotated for RoPE models)
    k, v: [B, G, S, D] local keys (rotated) and values, the last T of them aligned with the queries
    q_memory: [B, H, T, D] queries for memory (position-free or fixed-distance, see config.memory_position)
    memory_keys, memory_values: [B, H, T, K, D] retrieved tokens per query token and head
    memory_mask: [B, H, T, K] True where a retrieved slot holds a real token
    gate_logit: [H]
    A query token with nothing retrieved (empty memory) gets plain causal attention exactly.
    scale: softmax scale of q.k (head_dim ** -0.5 for the blocks here)
    Returns out [B, H, T, D] and what the memory branch computed (its weights, share, and the local output).
    """
    local = causal_attention(q_local, k, v, scale)  # [B, H, T, D]
    scores = torch.einsum("bhtd,bhtkd->bhtk", q_memory, memory_keys.to(q_memory.dtype)) * scale  # [B, H, T, K]
    scores = scores.masked_fill(~memory_mask, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1) * memory_mask  # [B, H, T, K]; all-masked rows become 0
    memory = torch.einsum("bhtk,bhtkd->bhtd", weights, memory_values.to(q_memory.dtype))  # [B, H, T, D]
    has_memory = memory_mask.any(dim=-1)  # [B, H, T]
    share = torch.sigmoid(gate_logit).view(1, -1, 1) * has_memory  # [B, H, T]
    out = local + share.unsqueeze(-1) * (memory - local)  # (1 - s) * local + s * memory
    return out, MemoryAttention(weights=weights, memory_share=share, local=local)
