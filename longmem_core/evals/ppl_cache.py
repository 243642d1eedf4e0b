"""Perplexity with the neural cache on top: LongMem's and the local-only backbone's next-token distributions,
each mixed with a training-free cache (``neural_cache``) of the *preceding* segments.

Beyond the paper. LongMem's memory layer reads what earlier segments left in the bank; the cache (Grave et al.
2017) copies what followed states like the current one in earlier segments. Both read only previous segments,
so they can be stacked: p = (1 - lam) p_model + lam p_cache, with p_model LongMem (trained, reading its bank),
the same adapted at test time (``ppl_adapt``) or the backbone alone on its local segment. One cache, keyed on the
backbone's own states (``settings.PERPLEXITY_CACHE.layer``), serves all, so the mixes differ only in p_model.

While the cache is still empty (the first segment) nothing is mixed in: the mix is the model itself.

Shape legend: T scored positions of a segment, C backbone width, V vocabulary.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from ..model.model import LongMemModel
from ..answer.neural_cache import TokenCache, key_states, mix
from . import settings

# eval-ppl --cache's setting: settings.PERPLEXITY_CACHE. Its keys, hidden_states[-4] = H[L - 3], are the input of
# the third-last block (H[27] of SmolLM2-135M's 31; H[26] and H[28] scored within 0.1 of it). kNN-LM (Khandelwal
# et al. 2020) also found a state below the output the better key.
SYSTEMS = ("local", "longmem")  # p_model: the backbone alone on its segment, or LongMem reading its bank


class Setting(NamedTuple):
    dim: int  # the cache's projected key width (>= the backbone's width: the states as they are)
    theta: float  # sharpness of the softmax over cosine similarities
    lam: float  # cache weight
    gated: bool  # lam scaled by the cache's confidence (its largest probability) at each position


@dataclass(frozen=True)
class CacheGrid:
    """The settings scored (every combination); the first one's figures are the reported ``ppl_*_cache`` keys. Each
    left out is ``settings.PERPLEXITY_CACHE``'s, read when the grid is made."""
    lams: tuple[float, ...] = field(default_factory=lambda: (settings.PERPLEXITY_CACHE.lam,))
    thetas: tuple[float, ...] = field(default_factory=lambda: (settings.PERPLEXITY_CACHE.theta,))
    dims: tuple[int, ...] = field(default_factory=lambda: (settings.PERPLEXITY_CACHE.dim,))
    gates: tuple[bool, ...] = field(default_factory=lambda: (settings.PERPLEXITY_CACHE.gated,))
    # key on hidden_states[layer] (negative: from the end) or on the final normed state (None)
    layer: int | None = field(default_factory=lambda: settings.PERPLEXITY_CACHE.layer)

    def __post_init__(self) -> None:
        if not (self.lams and self.thetas and self.dims and self.gates):
            raise ValueError("the cache grid needs at least one lam, theta, dim and gate")
        if any(not 0 <= lam < 1 for lam in self.lams):
            raise ValueError(f"cache weights must be in [0, 1): {self.lams}")

    def settings(self) -> list[Setting]:
        return [Setting(d, t, lam, g) for d in self.dims for t in self.thetas for lam in self.lams for g in self.gates]


def setting_key(s: Setting, width: int) -> str:
    """A setting's name in ``cache_grid``: e.g. "dim=128,theta=40,lam=0.05" (",gated" if so); dims at or above
    the backbone's ``width`` are the full states, named by the width."""
    return f"dim={min(s.dim, width)},theta={s.theta:g},lam={s.lam:g}" + (",gated" if s.gated else "")


def check_key_layer(model: LongMemModel, layer: int | None) -> None:
    """``layer`` must index the backbone's L + 1 hidden states (negative from the end), or be None (the final
    normed state). Unlike the answer path's cache, which is filled while memorizing (the backbone then stops at
    the memory layer), perplexity runs the whole backbone, so any of them."""
    n = model.backbone.n_layers + 1
    if layer is not None and not -n <= layer < n:
        raise ValueError(f"cache layer {layer} must index the backbone's {n} hidden states (-{n}..{n - 1}), or be None")


def new_key_cache(model: LongMemModel, dim: int, layer: int | None) -> TokenCache:
    """An empty cache keyed on the hidden states ``layer`` (``check_key_layer``)."""
    check_key_layer(model, layer)
    return TokenCache(model.backbone.d_model, dim, seed=model.cfg.seed, device=model.device, layer=layer)


@torch.no_grad()
def segment_states(model: LongMemModel, cache: TokenCache, ids: list[int]) -> torch.Tensor:
    """The cache's key states [T, C] of every token of one segment (opened by the sink token), from the backbone."""
    x = torch.tensor([model.with_sink(ids)], device=model.device)  # [1, S + T]
    start = x.shape[1] - len(ids)  # the sink token is input only
    return key_states(model, cache, model.backbone(x).hidden_states)[0, start:]  # [T, C]


class CachePerplexity:
    """Running summed NLLs of each of ``systems`` mixed with a cache of the segments remembered so far, for every
    setting of ``grid`` (default: ``CacheGrid()``, the chosen setting; one cache per key width). Call ``score`` on
    a segment, then ``remember`` it: the caches only ever hold previous segments."""

    def __init__(self, model: LongMemModel, grid: CacheGrid | None = None, rows: int = 256,
                 systems: tuple[str, ...] = SYSTEMS) -> None:
        grid = CacheGrid() if grid is None else grid
        self.model, self.grid, self.rows, self.systems = model, grid, rows, systems
        self.caches = {d: new_key_cache(model, d, grid.layer) for d in grid.dims}
        self.vocab = model.backbone.lm_head.weight.shape[0]
        self.nll = {(name, s): 0.0 for name in systems for s in grid.settings()}
        self.tokens = 0
        self._states: torch.Tensor | None = None  # [T, C] key states of the last segment scored

    @property
    def cache(self) -> TokenCache:
        """The cache of the first key width (every cache holds the same tokens)."""
        return self.caches[self.grid.dims[0]]

    @torch.no_grad()
    def score(self, ids: list[int], logits: dict[str, torch.Tensor], targets: torch.Tensor) -> int:
        """Add the mixed NLLs of one segment (token ids without the sink), given each system's logits at its
        scored positions {name: [T - 1, V]} and their targets [T - 1] (``segments.segment_logits``). -> tokens
        scored (every token after the first, as ``segments.segment_loss`` scores)."""
        missing = set(self.systems) - set(logits)
        if missing:
            raise ValueError(f"no logits for {sorted(missing)}")
        self._states = segment_states(self.model, self.cache, ids)
        targets = targets.cpu()
        for r in range(0, targets.shape[0], self.rows):  # rows at a time: p_cache is [R, V]
            tgt = targets[r:r + self.rows]  # [R]
            blocks = {name: logits[name][r:r + tgt.shape[0]].float().cpu() for name in self.systems}  # [R, V] each
            for dim, cache in self.caches.items():
                for theta in self.grid.thetas:
                    p_cache, _ = cache.distribution(self._states[r:r + tgt.shape[0]], self.vocab, theta)  # [R, V]
                    confidence = p_cache.max(dim=-1, keepdim=True).values  # [R, 1] (0 while the cache is empty)
                    for lam in self.grid.lams:
                        for gated in self.grid.gates:
                            weight = lam * confidence if gated else (lam if len(cache) else 0.0)
                            for name in self.systems:
                                logp = mix(blocks[name], p_cache, weight)  # [R, V]
                                key = (name, Setting(dim, theta, lam, gated))
                                self.nll[key] -= float(logp.gather(1, tgt[:, None]).sum())
        self.tokens += targets.shape[0]
        return targets.shape[0]

    def remember(self, ids: list[int], following: list[int]) -> None:
        """Store the segment just scored: (key state of each token, the token after it). ``following``: the
        tokens after each of ``ids`` in the text (one fewer at the text's end)."""
        if self._states is None:
            raise RuntimeError("remember() follows score() on the same segment")
        for cache in self.caches.values():
            cache.add(self._states[:len(following)], ids[:len(following)], following)
        self._states = None

    def perplexities(self) -> dict:
        """``ppl_local_cache`` and ``ppl_longmem_cache`` at the grid's first setting, that setting, and with more
        than one setting ``cache_grid``: {setting: {key: ppl}}."""
        n = max(self.tokens, 1)
        ppl = {k: math.exp(v / n) for k, v in self.nll.items()}
        scored = self.grid.settings()
        first = scored[0]
        out: dict = {f"ppl_{name}_cache": ppl[(name, first)] for name in self.systems}
        out["cache"] = {"theta": first.theta, "lam": first.lam, "dim": self.caches[first.dim].dim,
                        "gated": first.gated, "layer": self.grid.layer, "stored_tokens": len(self.cache)}
        if len(scored) > 1:
            width = self.model.backbone.d_model
            out["cache_grid"] = {setting_key(s, width): {f"ppl_{name}_cache": ppl[(name, s)] for name in self.systems}
                                 for s in scored}
        return out
