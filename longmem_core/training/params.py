"""Which SideNet parameters train, and the optimizer over them."""
from __future__ import annotations

import torch

from ..config import TRAINABLE


def select_trainable(model, which: str) -> list[torch.nn.Parameter]:
    """Freeze every SideNet parameter except the chosen group; returns the trainable ones.

    "memory": the per-head gates, the memory branch's scale (when closed) and the memory layer; "all": every SideNet parameter; "search": only the
    memory-query delta (``memory_query_rank > 0``), so a checkpoint holds the delta alone."""
    if which not in TRAINABLE:
        raise ValueError(f"trainable must be one of {TRAINABLE}, got {which!r}")
    side = model.side
    side.requires_grad_(which == "all")
    if which == "memory":
        side.gate.requires_grad_(True)
        if side.memory_scale is not None:
            side.memory_scale.requires_grad_(True)
        side.layers[side.memory_index].requires_grad_(True)
    elif which == "search":
        if side.q_mem_up is None:
            raise ValueError("the model has no memory-query delta; build it with memory_query_rank > 0")
        side.q_mem_down.requires_grad_(True)
        side.q_mem_up.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


def make_optimizer(model, trainable: str, lr: float, gate_lr_scale: float,
                   weight_decay: float) -> tuple[list[torch.nn.Parameter], torch.optim.AdamW]:
    """The chosen SideNet parameters and AdamW over them (betas 0.9/0.98 as the paper); the per-head gate logits,
    the side scales and the memory branch's scale learn ``gate_lr_scale`` times faster, without weight decay."""
    params = select_trainable(model, trainable)
    fast = [p for p in (model.side.gate, model.side.scale, model.side.memory_scale)
            if p is not None and p.requires_grad]
    slow = [p for p in params if all(p is not f for f in fast)]
    groups = [{"params": slow, "lr": lr}]
    if fast:
        groups.append({"params": fast, "lr": lr * gate_lr_scale, "weight_decay": 0.0})
    return params, torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), weight_decay=weight_decay)


def floor_branch(model) -> None:
    """Project the closed memory branch's per-head factors onto [0, inf) (``LoopConfig.branch_floor``): a factor an
    optimizer step took below 0 is set to 0, where the head's output is the backbone's and its gradient can open it
    again. Nothing to do for an open branch."""
    scale = model.side.memory_scale
    if scale is not None:
        with torch.no_grad():
            scale.clamp_(min=0.0)
