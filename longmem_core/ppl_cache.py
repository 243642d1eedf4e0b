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

import torch

from .model import LongMemModel
from .neural_cache import CACHE_DIM, CACHE_LAYER, LAMBDA_PPL, THETA, TokenCache, key_states, mix, new_cache

# cache weight and sharpness chosen on the tuning books (frankenstein, great_expectations) for eval-ppl --cache;
# see docs/notes/2026-12-02-ppl-cache.md
LAMBDA_MIX = LAMBDA_PPL
THETA_MIX = THETA
SYSTEMS = ("local", "longmem")  # p_model: the backbone alone on its segment, or LongMem reading its bank


@dataclass(frozen=True)
class CacheGrid:
    """The (theta, lam) pairs scored; the first pair's figures are the reported ``ppl_*_cache`` keys."""
    lams: tuple[float, ...] = (LAMBDA_MIX,)
    thetas: tuple[float, ...] = (THETA_MIX,)
    dim: int = CACHE_DIM  # projected key width (>= the backbone's width: the states as they are)
    layer: int | None = CACHE_LAYER  # key on the final normed state (None) or on H[layer]

    def pairs(self) -> list[tuple[float, float]]:
        return [(theta, lam) for theta in self.thetas for lam in self.lams]

    def __post_init__(self) -> None:
        if not self.lams or not self.thetas or any(not 0 <= lam < 1 for lam in self.lams):
            raise ValueError(f"cache weights must be in [0, 1) and at least one of each: lams {self.lams}")


def grid_key(theta: float, lam: float) -> str:
    return f"theta={theta:g},lam={lam:g}"


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
    for every (theta, lam) of ``grid``. Call ``score`` on a segment, then ``remember`` it: the cache only ever
    holds previous segments."""

    def __init__(self, model: LongMemModel, grid: CacheGrid = CacheGrid(), rows: int = 256) -> None:
        self.model, self.grid, self.rows = model, grid, rows
        self.cache = new_cache(model, grid.dim, grid.layer)
        self.vocab = model.backbone.lm_head.weight.shape[0]
        self.nll = {(name, theta, lam): 0.0 for name in SYSTEMS for theta, lam in grid.pairs()}
        self.tokens = 0
        self._states: torch.Tensor | None = None  # [T, C] key states of the last segment scored

    def score(self, ids: list[int], bank) -> int:
        """Add the mixed NLLs of one segment (``bank``: LongMem's memory of the previous segments). -> tokens
        scored (every token after the first, as ``evaluate.segment_loss`` scores)."""
        logits, targets, self._states = segment_outputs(self.model, self.cache, ids, bank)
        empty = len(self.cache) == 0
        for r in range(0, targets.shape[0], self.rows):  # rows at a time: p_cache is [rows, V]
            tgt = targets[r:r + self.rows]  # [R]
            for theta in self.grid.thetas:
                p_cache, _ = self.cache.distribution(self._states[r:r + tgt.shape[0]], self.vocab, theta)  # [R, V]
                for name in SYSTEMS:
                    block = logits[name][r:r + tgt.shape[0]].float().cpu()  # [R, V]
                    for lam in self.grid.lams:
                        logp = mix(block, p_cache, 0.0 if empty else lam)  # [R, V]
                        self.nll[(name, theta, lam)] -= float(logp.gather(1, tgt[:, None]).sum())
        self.tokens += targets.shape[0]
        return targets.shape[0]

    def remember(self, ids: list[int], following: list[int]) -> None:
        """Store the segment just scored: (key state of each token, the token after it). ``following``: the
        tokens after each of ``ids`` in the text (one fewer at the text's end)."""
        if self._states is None:
            raise RuntimeError("remember() follows score() on the same segment")
        self.cache.add(self._states[:len(following)], ids[:len(following)], following)
        self._states = None

    def perplexities(self) -> dict:
        """``ppl_local_cache`` and ``ppl_longmem_cache`` at the grid's first (theta, lam), the settings, and
        with more than one pair ``cache_grid``: {pair: {key: ppl}}."""
        n = max(self.tokens, 1)
        ppl = {k: math.exp(v / n) for k, v in self.nll.items()}
        theta, lam = self.grid.pairs()[0]
        out: dict = {f"ppl_{name}_cache": ppl[(name, theta, lam)] for name in SYSTEMS}
        out["cache"] = {"theta": theta, "lam": lam, "dim": self.cache.dim, "layer": self.grid.layer,
                        "stored_tokens": len(self.cache)}
        if len(self.grid.pairs()) > 1:
            out["cache_grid"] = {grid_key(t, l): {f"ppl_{name}_cache": ppl[(name, t, l)] for name in SYSTEMS}
                                 for t, l in self.grid.pairs()}
        return out
