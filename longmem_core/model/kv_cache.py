"""Key/value caches for decoding: one ``KVCache`` per attention layer, in buffers allocated ahead of time.

Shapes follow ``shapes.py``. Keys are cached after rotary embedding; the cache only stores and hands back.
A cache sized for a whole generation (``ModelCaches.empty(model, max_length)``) writes every new token in place
and never copies what it holds; an unsized one grows by exactly what each update brings.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .model import LongMemModel


class KVCache:
    """Keys (rotated) and values of the tokens one attention layer has seen so far."""

    def __init__(self, max_length: int = 0) -> None:
        self.max_length = max_length  # tokens to make room for at the first update
        self._k: torch.Tensor | None = None  # [B, G, room, D]; the first ``length`` positions are in use
        self._v: torch.Tensor | None = None
        self.length = 0  # tokens held

    @property
    def k(self) -> torch.Tensor | None:
        """[B, G, S, D] the keys held (a view of the buffer), None while empty."""
        return None if self._k is None else self._k[:, :, :self.length]

    @property
    def v(self) -> torch.Tensor | None:
        return None if self._v is None else self._v[:, :, :self.length]

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new tokens' k, v [B, G, T, D] after those held; returns all keys and values [B, G, S, D].

        While autograd records (a trainable layer under grad), the new tensors are joined out of place, so that
        an earlier step's graph never sees its inputs overwritten."""
        start, end = self.length, self.length + k.shape[2]
        if torch.is_grad_enabled() and (k.requires_grad or v.requires_grad):
            self._k = k if self._k is None else torch.cat([self.k, k], dim=2)
            self._v = v if self._v is None else torch.cat([self.v, v], dim=2)
        else:
            if self._k is None or end > self._k.shape[2]:
                self._reallocate(k, v, max(end, self.max_length))
            self._k[:, :, start:end] = k
            self._v[:, :, start:end] = v
        self.length = end
        return self.k, self.v

    def _reallocate(self, k: torch.Tensor, v: torch.Tensor, room: int) -> None:
        """New buffers with ``room`` positions, holding what the old ones held."""
        B, G, _, D = k.shape
        new_k = k.new_empty(B, G, room, D)
        new_v = v.new_empty(B, v.shape[1], room, v.shape[3])
        if self.length:
            new_k[:, :, :self.length] = self.k
            new_v[:, :, :self.length] = self.v
        self._k, self._v = new_k, new_v

    def prefix(self, length: int, batch: int) -> "KVCache":
        """A new cache holding the first ``length`` tokens of row 0, for ``batch`` rows. It shares this cache's
        memory until its first update, which copies: this cache stays untouched."""
        new = KVCache()
        if self._k is not None:
            new._k = self._k[:1, :, :length].expand(batch, -1, -1, -1)
            new._v = self._v[:1, :, :length].expand(batch, -1, -1, -1)
            new.length = length
        return new


@dataclass
class ModelCaches:
    """One cache per backbone block and per side layer."""

    backbone: list[KVCache]
    side: list[KVCache]

    @classmethod
    def empty(cls, model: "LongMemModel", max_length: int = 0) -> "ModelCaches":
        """Empty caches for ``model``; ``max_length``: the tokens a generation will hold in all (0: unsized)."""
        return cls([KVCache(max_length) for _ in range(model.backbone.n_layers)],
                   [KVCache(max_length) for _ in range(len(model.side.layers))])

    def expand(self, length: int, batch: int) -> "ModelCaches":
        """New caches holding the first ``length`` tokens of row 0, repeated for ``batch`` rows (these caches stay
        untouched)."""
        return ModelCaches([c.prefix(length, batch) for c in self.backbone],
                           [c.prefix(length, batch) for c in self.side])
