"""The frozen backbone's work on training text, computed once and reused across steps and epochs.

Shape legend: T tokens of a segment with its sink token, n = T - 1 (or T without a sink) text tokens, G kv heads,
D head dim, C width, L backbone depth, Nc chunks.

The backbone never trains, so what it computes for a segment never changes. For an identity-initialised SideNet
whose side layers other than the memory layer are idle (scale exactly 0, not training), the SideNet's output is
``y + H[L] - H[2i]`` where ``y`` is the memory layer's output on ``H[2i]`` (i = its index): the side layers before
it pass their input on, the cross-network residuals add up to ``H[L] - H[2i]``. A segment's features are
therefore ``H[2i]``, ``H[L]`` and the memory K/V it writes; a step then runs only the memory layer, the final
norm and the LM head (``cached_segment_loss``), through the SideNet's own forward.

Two kinds of features:
* ``SegmentFeatures`` (language modelling and recall): H[2i] [T, C], H[L] [T, C], memory keys/values [n, G, D].
  Kept in float16: 2 * (C + G * D) * 2 bytes per token (3 KB for SmolLM2-135M).
* ``Segment`` (retrieval): the memory keys [n, G, D] and the memory layer's normed input [n, C], all the memory
  queries need.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..memory.memory_bank import chunk_means

# ------------------------------------------------------------------------------------------ language modelling


@dataclass
class SegmentFeatures:
    ids: list[int]  # the segment's token ids with its sink token first (when the model has one)
    h_memory_input: torch.Tensor  # [T, C] float16 H[2i], the memory side layer's input
    h_last: torch.Tensor  # [T, C] float16 H[L], the backbone's last hidden state (before the final norm)
    keys: torch.Tensor  # [n, G, D] float16 memory-layer keys before rotation (what a bank stores)
    values: torch.Tensor  # [n, G, D] float16


def check_cacheable(model) -> None:
    """Cached features reproduce the SideNet only while its side layers other than the memory layer are idle."""
    side = model.side
    if side.scale is None:
        raise ValueError("cached features need side_init='identity'")
    others = [i for i in range(len(side.layers)) if i != side.memory_index]
    if side.scale.requires_grad or bool((side.scale.detach()[others] != 0).any()):
        raise ValueError("cached features need the side layers other than the memory layer idle (scale 0, frozen): "
                         "train with trainable='memory' from a SideNet whose other side layers are untrained")


@torch.no_grad()
def segment_features(model, ids: list[int], dtype: torch.dtype = torch.float16) -> SegmentFeatures:
    """One full backbone pass over a segment (``ids`` without the sink token), kept (in ``dtype``) for reuse."""
    x = torch.tensor([model.with_sink(ids)], device=model.device)
    start = x.shape[1] - len(ids)
    out = model.backbone(x, memory_layer=model.memory_layer)
    return SegmentFeatures(ids=x[0].tolist(), h_memory_input=out.hidden_states[2 * model.side.memory_index][0].to(dtype),
                           h_last=out.hidden_states[-1][0].to(dtype), keys=out.memory_keys[0, start:].to(dtype),
                           values=out.memory_values[0, start:].to(dtype))


def cached_segment_logits(model, f: SegmentFeatures, bank, top_k: int | None = None):
    """``segments.segment_logits`` from cached features: the logits at the scored positions [T - 1, V] of the
    segment reading ``bank`` (``top_k`` tokens retrieved per query and head; default the config's) and their
    targets [T - 1]."""
    check_cacheable(model)
    x = torch.tensor([f.ids], device=model.device)  # [1, T]
    n = len(f.ids) - len(model.with_sink([]))
    start = x.shape[1] - n
    h_in, h_last = f.h_memory_input.float()[None], f.h_last.float()[None]  # [1, T, C]
    # the SideNet's own forward on a hidden-state list whose residuals add up to H[L] - H[2i] (see the docstring)
    hidden = [h_in] * model.backbone.n_layers + [h_last]
    rope = model.backbone.rope(h_in, model.backbone.positions(x))
    if bank is not None:
        model.check_bank(bank)
        n_chunks = (top_k or model.cfg.top_k) // bank.chunk_size
        retrieve = lambda q: bank.search(q, n_chunks).to(q.device)  # noqa: E731  (as LongMemModel.forward)
    else:
        retrieve = None
    final, _ = model.side(hidden, rope, retrieve)
    logits = model.backbone.logits(final)  # [1, T, V]
    return logits[0, start:-1], x[0, start + 1:]


def cached_segment_loss(model, f: SegmentFeatures, bank):
    """``segments.segment_loss`` from cached features: summed next-token loss of the segment reading ``bank``, the
    number of scored tokens, and the segment's memory keys/values (float32) to write afterwards."""
    logits, targets = cached_segment_logits(model, f, bank)
    loss = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum")
    return loss, len(targets), f.keys.float(), f.values.float()


class SegmentFeatureCache:
    """Features of training segments by (document, first token), computed on first use and kept in RAM."""

    def __init__(self, model, dtype: torch.dtype = torch.float16) -> None:
        self.model, self.dtype = model, dtype
        self._store: dict[tuple[int, int], SegmentFeatures] = {}
        self.computed = self.reused = 0

    def get(self, doc: int, first: int, ids: list[int]) -> SegmentFeatures:
        key = (doc, first)
        if key in self._store:
            self.reused += 1
        else:
            self._store[key] = segment_features(self.model, ids, self.dtype)
            self.computed += 1
        return self._store[key]

    def kv(self, doc: int, first: int, ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Memory keys and values [n, G, D] of a segment (float32, as a bank receives them)."""
        f = self.get(doc, first, ids)
        return f.keys.float(), f.values.float()

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for f in self._store.values()
                   for t in (f.h_memory_input, f.h_last, f.keys, f.values))


# ------------------------------------------------------------------------------------------ retrieval


@dataclass
class Segment:
    """One segment as the backbone read it (opened by the sink token, which is not stored)."""

    ids: torch.Tensor  # [n] int64 token ids
    keys: torch.Tensor  # [n, G, D] float16 memory-layer keys before rotation (what a bank stores)
    xn: torch.Tensor  # [n, C] float16 normed input of the SideNet's memory layer (what its q projection reads)
    source: str = ""

    def chunk_means(self, chunk_size: int) -> torch.Tensor:
        """[G, ceil(n / chunk_size), D] float32 mean key per chunk, as ``MemoryBank`` computes it."""
        n, G, D = self.keys.shape
        nc = -(-n // chunk_size)
        k = torch.nn.functional.pad(self.keys, (0, 0, 0, 0, 0, nc * chunk_size - n))
        valid = (torch.arange(nc * chunk_size) < n).view(nc, chunk_size)
        return chunk_means(k.view(nc, chunk_size, G, D).permute(2, 0, 1, 3), valid).contiguous()


@torch.no_grad()
def search_features(model, segments: list[list[int]], source: str = "") -> list[Segment]:
    """Read each list of token ids (without the sink token) as one segment, up to the memory layer; keep its memory
    keys and the memory layer's normed input (for an identity-initialised SideNet whose earlier side layers are
    idle, that input is the backbone's H[2 * memory_index])."""
    side, m = model.side, model.memory_layer
    layer = side.layers[side.memory_index]
    out = []
    for ids in segments:
        x = torch.tensor([model.with_sink(list(ids))], device=model.device)
        start = x.shape[1] - len(ids)
        res = model.backbone(x, memory_layer=m, stop_after=m, last_kv_only=True)  # H[0..m] and block m's K/V
        xn = layer.norm_attn(res.hidden_states[2 * side.memory_index])[0, start:]
        out.append(Segment(ids=torch.tensor(list(ids), dtype=torch.long), keys=res.memory_keys[0, start:].half().cpu(),
                           xn=xn.half().cpu(), source=source))
    return out


class BankCache:
    """Chunk means of a store's segments, computed once."""

    def __init__(self, store: list[Segment], chunk_size: int) -> None:
        self.store, self.chunk_size = store, chunk_size
        self._means: dict[int, torch.Tensor] = {}

    def means(self, bank: list[int]) -> torch.Tensor:
        for s in bank:
            if s not in self._means:
                self._means[s] = self.store[s].chunk_means(self.chunk_size)
        return torch.cat([self._means[s] for s in bank], dim=1)  # [G, Nc, D]


def save_store(path: str | Path, key: dict, store: list[Segment], groups: list[dict]) -> None:
    """Tensors and JSON strings only, so ``load_store`` reads it with ``weights_only=True``."""
    torch.save({"key": json.dumps(key, sort_keys=True), "groups": json.dumps(groups),
                "store": [asdict(s) for s in store]}, path)


def load_store(path: str | Path, key: dict) -> tuple[list[Segment], list[dict]] | None:
    """The store saved at ``path`` if it was built with ``key``, else None."""
    if not Path(path).exists():
        return None
    saved = torch.load(path, weights_only=True)
    if saved.get("key") != json.dumps(key, sort_keys=True):
        return None
    return [Segment(**d) for d in saved["store"]], json.loads(saved["groups"])
