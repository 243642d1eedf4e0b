import math

import torch
import torch.nn.functional as F

from longmem_core.model.attention import apply_rope, causal_attention, memory_augmented_attention


def _inputs(B=2, H=4, G=2, T=5, K=6, D=8):
    q = torch.randn(B, H, T, D)
    k, v = torch.randn(B, G, T, D), torch.randn(B, G, T, D)
    mem_k, mem_v = torch.randn(B, H, T, K, D), torch.randn(B, H, T, K, D)
    return q, k, v, mem_k, mem_v


def test_empty_memory_is_plain_causal_attention_exactly():
    q, k, v, mem_k, mem_v = _inputs()
    mask = torch.zeros(mem_k.shape[:-1], dtype=torch.bool)
    out, mem = memory_augmented_attention(q, k, v, q, mem_k, mem_v, mask, torch.zeros(4), 0.125)
    ref = F.scaled_dot_product_attention(q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1), is_causal=True, scale=0.125)
    assert torch.allclose(out, ref, atol=1e-6)
    assert torch.equal(out, causal_attention(q, k, v, 0.125))
    assert torch.equal(mem.memory_share, torch.zeros_like(mem.memory_share))
    assert torch.equal(mem.weights, torch.zeros_like(mem.weights))


def test_closed_gate_ignores_memory():
    q, k, v, mem_k, mem_v = _inputs()
    mask = torch.ones(mem_k.shape[:-1], dtype=torch.bool)
    closed = torch.full((4,), -math.inf)
    a, _ = memory_augmented_attention(q, k, v, q, mem_k, mem_v, mask, closed, 0.125)
    b, _ = memory_augmented_attention(q, k, v, q, torch.randn_like(mem_k), torch.randn_like(mem_v), mask, closed, 0.125)
    assert torch.equal(a, b)
    assert torch.equal(a, causal_attention(q, k, v, 0.125))


def test_open_gate_mixes_separate_softmaxes():
    q, k, v, mem_k, mem_v = _inputs(B=1, H=2, G=2, T=3, K=4, D=8)
    mask = torch.ones(mem_k.shape[:-1], dtype=torch.bool)
    gate = torch.tensor([0.0, 2.0])
    out, mem = memory_augmented_attention(q, k, v, q, mem_k, mem_v, mask, gate, 0.3)
    local = causal_attention(q, k, v, 0.3)
    w = torch.softmax(torch.einsum("bhtd,bhtkd->bhtk", q, mem_k) * 0.3, -1)
    memory = torch.einsum("bhtk,bhtkd->bhtd", w, mem_v)
    s = torch.sigmoid(gate).view(1, 2, 1, 1)
    assert torch.allclose(out, (1 - s) * local + s * memory, atol=1e-6)
    assert torch.allclose(mem.weights.sum(-1), torch.ones(1, 2, 3))


def test_masked_slots_get_no_weight():
    q, k, v, mem_k, mem_v = _inputs(B=1, H=2, G=1, T=2, K=4, D=8)
    mask = torch.tensor([True, True, False, False]).expand(1, 2, 2, 4)
    out, mem = memory_augmented_attention(q, k, v, q, mem_k, mem_v, mask, torch.zeros(2), 0.3)
    assert torch.equal(mem.weights[..., 2:], torch.zeros(1, 2, 2, 2))
    mem_v2 = mem_v.clone()
    mem_v2[..., 2:, :] = 1e3  # values behind masked slots must not matter
    out2, _ = memory_augmented_attention(q, k, v, q, mem_k, mem_v2, mask, torch.zeros(2), 0.3)
    assert torch.allclose(out, out2)


def test_causal_attention_with_cached_prefix_matches_full():
    q, k, v, *_ = _inputs(B=1, H=4, G=2, T=7)
    full = causal_attention(q, k, v, 0.2)
    tail = causal_attention(q[:, :, 4:], k, v, 0.2)  # the last 3 queries against all 7 keys
    assert torch.allclose(full[:, :, 4:], tail, atol=1e-6)


def test_rope_matches_transformers():
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb
    q, k = torch.randn(1, 2, 5, 8), torch.randn(1, 2, 5, 8)
    cos, sin = torch.randn(1, 5, 8), torch.randn(1, 5, 8)
    rq, rk = apply_rotary_pos_emb(q, k, cos, sin)
    assert torch.allclose(apply_rope(q, cos, sin), rq) and torch.allclose(apply_rope(k, cos, sin), rk)
