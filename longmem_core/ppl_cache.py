"""Perplexity with the neural cache on top: LongMem's and the local-only backbone's next-token distributions,
each mixed with a training-free cache (``neural_cache``) of the *preceding* segments.

Beyond the paper. LongMem's memory layer reads what earlier segments left in the bank; the cache (Grave et al.
2017) copies what followed states like the current one in earlier segments. Both read only previous segments,
so they can be stacked: p = (1 - lam) p_model + lam p_cache, with p_model either LongMem (trained, reading its
bank) or the backbone alone on its local segment. One cache, keyed on the backbone's own states (as
``neural_cache.perplexity`` keys it), serves both, so the two mixes differ only in p_model.

While the cache is still empty (the first segment) nothing is mixed in: the mix is the model itself.

Shape legend: T scored positions of a segment, C backbone width, V vocabulary.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from .model import LongMemModel
from .neural_cache import CACHE_LAYER, THETA, TokenCache, key_states, mix, new_cache

# eval-ppl --cache's setting, chosen with LongMem on the first 8,192 tokens of the tuning books frankenstein and
# the_time_machine (docs/notes/2026-12-02-ppl-cache.md; great_expectations was a training book of the checkpoint)
LAMBDA_MIX = 0.2  # cache weight, times the cache's confidence (GATED_MIX); neural_cache.LAMBDA_PPL is 0.05 ungated
THETA_MIX = THETA
DIM_MIX = 1 << 16  # at or above the backbone's width: the states as they are, unprojected (576 for SmolLM2-135M)
GATED_MIX = True
SYSTEMS = ("local", "longmem")  # p_model: the backbone alone on its segment, or LongMem reading its bank


class Setting(NamedTuple):
    dim: int  # the cache's projected key width (>= the backbone's width: the states as they are)
    theta: float  # sharpness of the softmax over cosine similarities
    lam: float  # cache weight
    gated: bool  # lam scaled by the cache's confidence (its largest probability) at each position


@dataclass(frozen=True)
class CacheGrid:
    """The settings scored (every combination); the first one's figures are the reported ``ppl_*_cache`` keys."""
    lams: tuple[float, ...] = (LAMBDA_MIX,)
    thetas: tuple[float, ...] = (THETA_MIX,)
    dims: tuple[int, ...] = (DIM_MIX,)
    gates: tuple[bool, ...] = (GATED_MIX,)
    layer: int | None = CACHE_LAYER  # key on the final normed state (None) or on H[layer]

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


@torch.no_grad()
def segment_outputs(model: LongMemModel, cache: TokenCache, ids: list[int], bank
                    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """One segment (opened by the sink token) read by the backbone alone and by LongMem reading ``bank``.
    -> logits per system {name: [T - 1, V]} at the scored positions, the targets [T - 1] and the cache's key
    states [T, C] for every token of the segment (to store once the segment has been scored)."""
    x = torch.tensor([model.with_sink(ids)], device=model.device)  # [1, S + T]
    start = x.shape[1] - len(ids)  # the sink token is input only
    hs = model.backbone(x).hidden_states  # L + 1 tensors [1, S + T, C]
    logits = {"local": model.backbone.logits(hs[-1])[0, start:-1],  # [T - 1, V]
              "longmem": model(x, bank).logits[0, start:-1]}  # [T - 1, V]
    states = key_states(model, cache, hs)[0, start:]  # [T, C]
    return logits, x[0, start + 1:].cpu(), states


class CachePerplexity:
    """Running summed NLLs of every system in ``SYSTEMS`` mixed with a cache of the segments remembered so far,
    for every setting of ``grid`` (one cache per key width). Call ``score`` on a segment, then ``remember`` it:
    the caches only ever hold previous segments."""

    def __init__(self, model: LongMemModel, grid: CacheGrid = CacheGrid(), rows: int = 256) -> None:
        self.model, self.grid, self.rows = model, grid, rows
        self.caches = {d: new_cache(model, d, grid.layer) for d in grid.dims}
        self.vocab = model.backbone.lm_head.weight.shape[0]
        self.nll = {(name, s): 0.0 for name in SYSTEMS for s in grid.settings()}
        self.tokens = 0
        self._states: torch.Tensor | None = None  # [T, C] key states of the last segment scored

    @property
    def cache(self) -> TokenCache:
        """The cache of the first key width (every cache holds the same tokens)."""
        return self.caches[self.grid.dims[0]]

    def score(self, ids: list[int], bank) -> int:
        """Add the mixed NLLs of one segment (``bank``: LongMem's memory of the previous segments). -> tokens
        scored (every token after the first, as ``evaluate.segment_loss`` scores)."""
        logits, targets, self._states = segment_outputs(self.model, self.cache, ids, bank)
        for r in range(0, targets.shape[0], self.rows):  # rows at a time: p_cache is [R, V]
            tgt = targets[r:r + self.rows]  # [R]
            blocks = {name: logits[name][r:r + tgt.shape[0]].float().cpu() for name in SYSTEMS}  # [R, V] each
            for dim, cache in self.caches.items():
                for theta in self.grid.thetas:
                    p_cache, _ = cache.distribution(self._states[r:r + tgt.shape[0]], self.vocab, theta)  # [R, V]
                    confidence = p_cache.max(dim=-1, keepdim=True).values  # [R, 1] (0 while the cache is empty)
                    for lam in self.grid.lams:
                        for gated in self.grid.gates:
                            weight = lam * confidence if gated else (lam if len(cache) else 0.0)
                            for name in SYSTEMS:
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
        settings = self.grid.settings()
        first = settings[0]
        out: dict = {f"ppl_{name}_cache": ppl[(name, first)] for name in SYSTEMS}
        out["cache"] = {"theta": first.theta, "lam": first.lam, "dim": self.caches[first.dim].dim,
                        "gated": first.gated, "layer": self.grid.layer, "stored_tokens": len(self.cache)}
        if len(settings) > 1:
            width = self.model.backbone.d_model
            out["cache_grid"] = {setting_key(s, width): {f"ppl_{name}_cache": ppl[(name, s)] for name in SYSTEMS}
                                 for s in settings}
        return out
