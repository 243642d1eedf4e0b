"""The one learning-rate schedule: linear warm-up, then cosine decay to 10% of the peak."""
from __future__ import annotations

import math
import warnings

import torch

MIN_LR_RATE = 0.1  # the cosine ends at this share of the peak learning rate


def lr_factor(step: int, warmup: int, steps: int) -> float:
    """The share of the peak learning rate at scheduler step ``step``: ``step / warmup`` during the warm-up, then a
    half cosine from 1 down to ``MIN_LR_RATE`` at ``steps`` (the formula of transformers'
    ``get_cosine_with_min_lr_schedule_with_warmup``)."""
    if step < warmup:
        return step / max(1, warmup)
    progress = (step - warmup) / max(1, steps - warmup)
    return max(0.0, MIN_LR_RATE + (1 - MIN_LR_RATE) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def make_schedule(optimizer: torch.optim.Optimizer, warmup: int, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler over ``optimizer``'s groups (each keeps its own peak). It is stepped once at creation, so
    optimizer step s (from 0) runs at the factor of s + 1: step 0 already learns (lr / warmup)."""
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, warmup, steps))
    with warnings.catch_warnings():  # torch warns when a scheduler steps before its optimizer: intended here
        warnings.simplefilter("ignore", UserWarning)
        schedule.step()
    return schedule


def lr_at(step: int, cfg) -> float:
    """The learning rate of optimizer step ``step`` (from 0) for a config with ``lr``, ``warmup`` and ``steps``."""
    return cfg.lr * lr_factor(step + 1, cfg.warmup, cfg.steps)
