"""The one learning-rate schedule: linear warm-up, then cosine decay to 10% of the peak (transformers' scheduler)."""
from __future__ import annotations

import warnings

import torch
from transformers import get_cosine_with_min_lr_schedule_with_warmup

MIN_LR_RATE = 0.1  # the cosine ends at this share of the peak learning rate


def make_schedule(optimizer: torch.optim.Optimizer, warmup: int, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler over ``optimizer``'s groups (each keeps its own peak). It is stepped once at creation, so
    optimizer step s (from 0) runs at the factor of s + 1: step 0 already learns (lr / warmup)."""
    schedule = get_cosine_with_min_lr_schedule_with_warmup(optimizer, num_warmup_steps=warmup,
                                                           num_training_steps=steps, min_lr_rate=MIN_LR_RATE)
    with warnings.catch_warnings():  # torch warns when a scheduler steps before its optimizer: intended here
        warnings.simplefilter("ignore", UserWarning)
        schedule.step()
    return schedule


def lr_at(step: int, cfg) -> float:
    """The learning rate of optimizer step ``step`` (from 0) for a config with ``lr``, ``warmup`` and ``steps``."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=cfg.lr)
    schedule = make_schedule(opt, cfg.warmup, cfg.steps)
    for _ in range(step):
        opt.step()
        schedule.step()
    return opt.param_groups[0]["lr"]
