"""The SideNet on its own: its trace arithmetic, its layers, its memory queries and how it reads retrieved tokens."""
import math

import pytest
import torch

from longmem_core.model.attention import apply_rope
from longmem_core.memory.memory_bank import MemoryHits
from longmem_core.model.side_network import RetrievalTrace


def _trace(chunk_ids, weights, share):
    ids = torch.tensor(chunk_ids)  # [B, T, H, R]
    return RetrievalTrace(chunk_ids=ids, chunk_scores=torch.zeros(ids.shape), chunk_weights=torch.tensor(weights),
                          memory_share=torch.tensor(share), gate=torch.zeros(ids.shape[2]))


def test_chunk_totals_weigh_each_head_by_its_memory_share_and_skip_empty_slots():
    # 1 row, 2 tokens, 2 heads, 2 chunks per query and head
    tr = _trace([[[[7, 8], [7, -1]], [[8, 9], [-1, -1]]]],
                [[[[0.75, 0.25], [1.0, 0.0]], [[0.5, 0.5], [0.0, 0.0]]]],
                [[[0.5, 0.25], [1.0, 0.0]]])
    raw = {7: 0.75 * 0.5 + 1.0 * 0.25, 8: 0.25 * 0.5 + 0.5 * 1.0, 9: 0.5 * 1.0}
    total = sum(raw.values())
    got = tr.chunk_totals()
    assert got.keys() == raw.keys()
    for cid, w in raw.items():
        assert math.isclose(got[cid], w / total, rel_tol=1e-6)
    first = tr.chunk_totals(0, slice(0, 1))  # the first token only
    assert math.isclose(first[7], (0.375 + 0.25) / 0.75, rel_tol=1e-6)
    assert math.isclose(first[8], 0.125 / 0.75, rel_tol=1e-6)
    assert torch.equal(tr.local_share, 1 - tr.memory_share)


def test_chunk_totals_are_empty_when_nothing_was_retrieved():
    tr = _trace([[[[-1, -1]]]], [[[[0.0, 0.0]]]], [[[0.0]]])
    assert tr.chunk_totals() == {}


def test_layers_halve_the_backbone_and_the_identity_init_starts_at_zero(make_model):
    model = make_model("tiny")
    side, bb = model.side, model.backbone
    assert len(side.layers) == bb.n_layers // 2 and side.n_backbone_layers == bb.n_layers
    assert side.memory_layer == model.cfg.resolve_memory_layer(bb.n_layers)
    assert side.memory_index == side.memory_layer // 2
    assert torch.equal(side.scale, torch.zeros(len(side.layers)))
    assert all(p.requires_grad for p in side.parameters())
    assert make_model("tiny", side_init="paper").side.scale is None


def test_without_memory_the_untrained_sidenet_returns_the_backbones_last_hidden_state(make_model):
    model = make_model("tiny")
    ids = torch.tensor([model.encode("The Time Traveller smiled.")])
    out = model.backbone(ids)
    hidden, record = model.side(out.hidden_states, out.rope, None)
    assert record is None
    assert torch.allclose(hidden, out.hidden_states[-1], atol=1e-6)


def test_memory_queries_follow_the_position_policy(make_model):
    q = torch.randn(1, 4, 3, 8)  # [B, H, T, D]
    assert torch.equal(make_model("tiny").side.memory_queries(q), q)  # position-free
    side = make_model("tiny", memory_position="fixed", memory_distance=64).side
    cos, sin = side._rope_of(q, torch.tensor([[64]]))
    assert torch.allclose(side.memory_queries(q), apply_rope(q, cos, sin))
    assert not torch.allclose(side.memory_queries(q), q)


def test_memory_query_delta_starts_at_zero_and_exists_only_with_a_rank(make_model):
    xn = torch.randn(2, 5, 32)  # [B, T, W]
    assert make_model("tiny").side.memory_query_delta(xn) is None
    side = make_model("tiny", memory_query_rank=4).side
    delta = side.memory_query_delta(xn)
    assert delta.shape == (2, 4, 5, 8) and torch.equal(delta, torch.zeros_like(delta))  # [B, H, T, D]


@pytest.mark.parametrize("side_init", ["paper", "identity"])
def test_trace_reports_per_chunk_attention_mass_of_what_the_retriever_returned(make_model, side_init):
    """A hand-made retriever: each query gets R = 2 chunks of c = 2 tokens; chunk 1's keys equal the query, so it
    gets most of the weight. The trace's chunk weights are the memory-attention weights summed per chunk."""
    model = make_model("tiny", side_init=side_init, memory_branch="open")  # the paper's init: memory used at once
    ids = torch.tensor([model.encode("abcdef")])
    out = model.backbone(ids)
    T, H, D = ids.shape[1], model.backbone.n_heads, model.backbone.head_dim
    seen = []

    def retrieve(q):  # q: [N, H, D]
        seen.append(q)
        N = q.shape[0]
        keys = torch.zeros(N, H, 4, D)
        keys[:, :, 2:] = 10 * q.unsqueeze(2)  # the second chunk points where the query points
        return MemoryHits(keys=keys, values=torch.randn(N, H, 4, D), mask=torch.ones(N, H, 4, dtype=torch.bool),
                          chunk_ids=torch.tensor([0, 1]).expand(N, H, 2), scores=torch.zeros(N, H, 2))

    with torch.no_grad():
        hidden, tr = model.side(out.hidden_states, out.rope, retrieve, trace=True)
    assert seen[0].shape == (T, H, D)
    assert tr.chunk_ids.shape == tr.chunk_weights.shape == (1, T, H, 2) and tr.memory_share.shape == (1, T, H)
    assert torch.allclose(tr.chunk_weights.sum(-1), torch.ones(1, T, H), atol=1e-5)
    assert bool((tr.chunk_weights[..., 1] > tr.chunk_weights[..., 0]).all())
    assert torch.allclose(tr.memory_share, torch.full((1, T, H), 0.5))
    assert torch.allclose(tr.gate, torch.full((H,), 0.5))
    assert not torch.allclose(hidden, model.side(out.hidden_states, out.rope, None)[0])  # memory changed the output
