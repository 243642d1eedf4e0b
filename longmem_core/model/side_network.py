"""The residual SideNet: the only trainable part of LongMem.

Shapes follow ``shapes.py``: B batch, T tokens, W width, H query heads, G kv heads, D head dim, R chunks retrieved
per query token and head, c chunk size, K = R*c tokens retrieved, N = B*T query rows searched, L backbone blocks;
hidden[l] is the backbone's hidden state after block l.

Side layer i starts as a copy of backbone block 2i+1 and reads the backbone's embeddings hidden[0]; after it,
the cross-network residual hidden[2i+2] - hidden[2i] is added. Side layer floor(m/2) starts as a copy of block m
(the memory layer, whose keys fill the bank) and attends jointly to its local context and to the tokens
retrieved from memory, mixed per head by a sigmoid gate. The backbone's final norm and LM head are shared.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
from einops import rearrange, reduce
from torch import nn

from .attention import apply_rope, memory_augmented_attention
from .backbone import Block, FrozenBackbone
from ..config import LongMemConfig
from .kv_cache import KVCache
from .meaning import MeaningProjection
from ..memory.memory_bank import MemoryHits


@dataclass
class RetrievalTrace:
    """What the memory layer retrieved and how much it used it, per query token and head."""

    chunk_ids: torch.Tensor  # [B, T, H, R] global chunk ids, -1 where nothing was found
    chunk_scores: torch.Tensor  # [B, T, H, R] inner product of the query with each chunk's mean key
    chunk_weights: torch.Tensor  # [B, T, H, R] memory-attention mass on each chunk's tokens (sums to 1 or 0)
    memory_share: torch.Tensor  # [B, T, H] the gate's share of memory in the head's joint attention
    gate: torch.Tensor  # [H] sigmoid(g_h)
    # [H] the memory branch's scale (memory_branch="closed"; None: open): what memory changes in a head's output is
    # this times what the joint attention would change (0 at init: memory attended, nothing of it used)
    branch_scale: torch.Tensor | None = None

    @property
    def local_share(self) -> torch.Tensor:
        """[B, T, H] share of each head's output that came from local attention."""
        return 1.0 - self.memory_share

    def chunk_totals(self, batch_index: int = 0, tokens: slice | None = None) -> dict[int, float]:
        """Memory-attention mass per chunk id, summed over heads and the given query tokens, weighted by
        the memory share; normalised to sum to 1 (empty if nothing was retrieved)."""
        sl = tokens or slice(None)
        ids = self.chunk_ids[batch_index, sl]  # [T, H, R]
        mass = self.chunk_weights[batch_index, sl] * self.memory_share[batch_index, sl].unsqueeze(-1)  # [T, H, R]
        valid = ids >= 0
        totals: dict[int, float] = {}
        for cid, w in zip(ids[valid].tolist(), mass[valid].tolist()):
            totals[cid] = totals.get(cid, 0.0) + w
        norm = sum(totals.values())
        return {cid: w / norm for cid, w in totals.items()} if norm > 0 else {}


Retriever = Callable[[torch.Tensor], MemoryHits]  # queries [N, H, D] -> hits, N = B*T


class SideNetwork(nn.Module):
    """Half the backbone's depth, same width; takes the backbone's hidden states, returns final hidden states."""

    def __init__(self, backbone: FrozenBackbone, cfg: LongMemConfig) -> None:
        super().__init__()
        L = backbone.n_layers
        self.n_backbone_layers = L
        self.memory_layer = cfg.resolve_memory_layer(L)  # backbone block whose K/V fill memory
        self.memory_index = self.memory_layer // 2  # side layer that reads memory
        if cfg.memory_position == "fixed" and backbone.rotary is None:
            raise ValueError("memory_position='fixed' needs a RoPE backbone; use 'none' for GPT-2-style models")
        self.memory_position, self.memory_distance = cfg.memory_position, cfg.memory_distance
        sources = [self.memory_layer if i == self.memory_index else 2 * i + 1 for i in range(L // 2)]
        self.layers = nn.ModuleList(copy.deepcopy(backbone.blocks[j]) for j in sources)
        self.gate = nn.Parameter(torch.full((backbone.n_heads,), float(cfg.gate_init)))  # [H] gate logits g_h
        # side_init="identity": side layer i adds scale[i] * (its block's update); this per-layer update scale
        # starts at 0, so the untrained SideNet reproduces the backbone and memory enters only through the memory
        # branch below. (Not the blocks' softmax scale, ``Block.attention_scale``.)
        self.scale = nn.Parameter(torch.zeros(len(self.layers))) if cfg.side_init == "identity" else None
        # memory_branch="closed": what memory changes in each head's attention output (out - local) is scaled by this
        # per-head factor, which starts at 0: an untrained SideNet computes exactly what it would without memory
        # (beyond the paper, whose gates let memory in at init); "open": no factor (the paper's init)
        self.memory_scale = nn.Parameter(torch.zeros(backbone.n_heads)) if cfg.memory_branch == "closed" else None
        # optional low-rank delta on the memory layer's query projection, for the memory queries only:
        # q_mem = q_proj(xn) + up(down(xn)); ``up`` starts at zero, so the delta changes nothing until trained
        self.q_mem_down = self.q_mem_up = None
        if cfg.memory_query_rank > 0:
            width, out = backbone.d_model, backbone.n_heads * backbone.head_dim
            self.q_mem_down = nn.Linear(width, cfg.memory_query_rank, bias=False)
            self.q_mem_up = nn.Linear(cfg.memory_query_rank, out, bias=False)
            nn.init.normal_(self.q_mem_down.weight, std=width ** -0.5)
            nn.init.zeros_(self.q_mem_up.weight)
        # optional maps of the meaning search (meaning.py; beyond the paper): questions and sentences (their
        # tokens' memory-layer values [G*D], or the means: cfg.meaning_pool) into a space of cfg.meaning_dim
        self.meaning = (MeaningProjection(backbone.n_kv_heads * backbone.head_dim, cfg.meaning_dim)
                        if cfg.meaning_dim > 0 else None)
        # the delta is trained for search; the memory attention weighs what was found with the block's own queries
        # unless memory_query_delta_in_attention
        self.delta_in_attention = cfg.memory_query_delta_in_attention
        self.requires_grad_(True)
        self._rope_of = backbone.rope  # shared, parameter-free rotary module (not registered twice)

    def forward(self, hidden: list[torch.Tensor], rope: tuple | None, retrieve: Retriever | None,
                caches: list[KVCache] | None = None, trace: bool = False) -> tuple[torch.Tensor, RetrievalTrace | None]:
        """hidden: the backbone's L + 1 hidden states [B, T, W]; returns final hidden [B, T, W] and a trace."""
        x = hidden[0]
        record = None
        idle = self._idle_layers(retrieve is not None)
        for i, layer in enumerate(self.layers):
            cache = caches[i] if caches else None
            if i in idle:  # its update is scaled by exactly 0 and nothing asks for its gradient
                y = x
            elif i == self.memory_index and retrieve is not None:
                y, record = self._memory_layer(layer, x, rope, retrieve, cache, trace, i)
            else:
                y, _, _ = layer(x, rope, cache)
                if self.scale is not None:
                    y = x + self.scale[i] * (y - x)
            x = y + (hidden[2 * i + 2] - hidden[2 * i])  # cross-network residual
        n = 2 * len(self.layers)
        if n < self.n_backbone_layers:  # odd depth: carry the backbone's last block too
            x = x + (hidden[self.n_backbone_layers] - hidden[n])
        return x, record

    @torch.no_grad()
    def scale_memory_share(self, alpha: float) -> None:
        """Every head's memory share sigmoid(g_h) times ``alpha`` in (0, 1]: the gate logits rewritten in place."""
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        share = torch.sigmoid(self.gate.double()) * alpha  # [H]
        self.gate.copy_(torch.log(share / (1 - share)).to(self.gate.dtype))

    def _idle_layers(self, reads_memory: bool) -> set[int]:
        """Side layers whose output equals their input (identity init, scale exactly 0, no gradient wanted)."""
        if self.scale is None or (self.scale.requires_grad and torch.is_grad_enabled()):
            return set()
        zero = (self.scale.detach() == 0).tolist()
        return {i for i, z in enumerate(zero) if z and not (reads_memory and i == self.memory_index)}

    def memory_query_delta(self, xn: torch.Tensor) -> torch.Tensor | None:
        """The trained change of the memory queries for the memory layer's normed input xn [B, T, W]:
        [B, H, T, D], or None without a delta (memory_query_rank=0)."""
        if self.q_mem_up is None:
            return None
        layer = self.layers[self.memory_index]
        d = self.q_mem_up(self.q_mem_down(xn))  # [B, T, H*D]
        return rearrange(d, "b t (h d) -> b h t d", h=layer.n_heads)

    def memory_queries(self, q: torch.Tensor) -> torch.Tensor:
        """Unrotated queries q [B, H, T, D] -> queries for memory, by the configured position policy."""
        if self.memory_position == "none":
            return q  # position-free: memory keys were stored before rotation
        pos = torch.full((1, 1), self.memory_distance, dtype=torch.long, device=q.device)
        cos, sin = self._rope_of(q, pos)  # [1, 1, D]
        return apply_rope(q, cos, sin)  # as if every memory key sat memory_distance tokens back

    def search_queries(self, xn: torch.Tensor, q: torch.Tensor | None = None) -> torch.Tensor:
        """The queries that search memory for the memory layer's normed input xn [B, T, W]: its block's unrotated
        queries q [B, H, T, D] (computed from xn if not given) plus the trained delta, by the position policy."""
        if q is None:
            q = self.layers[self.memory_index].project(xn)[0]
        delta = self.memory_query_delta(xn)
        return self.memory_queries(q if delta is None else q + delta)

    def _memory_layer(self, layer: Block, x, rope, retrieve: Retriever, cache, trace: bool, i: int):
        B = x.shape[0]
        xn = layer.norm_attn(x)
        q, k, v = layer.project(xn)  # [B, H, T, D], [B, G, T, D], [B, G, T, D]
        q_mem = self.search_queries(xn, q)  # what searches memory
        q_att = q_mem if self.q_mem_up is None or self.delta_in_attention else self.memory_queries(q)  # what weighs the hits
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if cache is not None:
            k, v = cache.update(k, v)  # [B, G, S, D]
        with torch.no_grad():
            hits = retrieve(rearrange(q_mem.detach(), "b h t d -> (b t) h d"))  # search with [N, H, D]
        mem_k = rearrange(hits.keys, "(b t) h k d -> b h t k d", b=B)  # [N, H, K, D] -> [B, H, T, K, D]
        mem_v = rearrange(hits.values, "(b t) h k d -> b h t k d", b=B)
        mem_mask = rearrange(hits.mask, "(b t) h k -> b h t k", b=B)  # [B, H, T, K]
        out, mem = memory_augmented_attention(q, k, v, q_att, mem_k, mem_v, mem_mask, self.gate, layer.attention_scale)
        if self.memory_scale is not None:  # [B, H, T, D]: memory's change of each head's output, scaled per head
            out = mem.local + self.memory_scale.view(1, -1, 1, 1).to(out.dtype) * (out - mem.local)
        if self.scale is None:
            y = layer.finish(x, out)  # paper: the joint attention output goes through the whole block
        else:  # identity: scaled local block update + the memory branch's change of the attention output
            y = x + self.scale[i] * (layer.finish(x, mem.local) - x)
            y = y + nn.functional.linear(rearrange(out - mem.local, "b h t d -> b t (h d)"), layer.o_proj.weight)
        record = None
        if trace:
            R = hits.chunk_ids.shape[-1]
            by_chunk = "(b t) h r -> b t h r"
            record = RetrievalTrace(
                chunk_ids=rearrange(hits.chunk_ids, by_chunk, b=B), chunk_scores=rearrange(hits.scores, by_chunk, b=B),
                chunk_weights=reduce(mem.weights.detach(), "b h t (r c) -> b t h r", "sum", r=R),  # mass per chunk
                memory_share=rearrange(mem.memory_share.detach(), "b h t -> b t h"),
                gate=torch.sigmoid(self.gate.detach()),
                branch_scale=None if self.memory_scale is None else self.memory_scale.detach().clone())
        return y, record
