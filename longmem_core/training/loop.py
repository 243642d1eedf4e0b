"""The one training loop: optimizer, schedule, progress bar, checkpoints, exact resume, validation, log.

Every objective (language modelling, retrieval, recall, ...) runs through ``run``. A run folder holds
``sidenet.safetensors`` (the trained SideNet parameters), ``state.pt`` (step, optimizer and schedule, loaded with
``weights_only=True``) and ``log.jsonl`` (one record per step). Running again with the same folder and the same
configuration resumes at the last checkpoint; another configuration is refused.

Several processes (``torch.distributed``, e.g. gloo on CPUs) train one model as data-parallel ranks: rank r of w
takes batch ``step * w + r``, gradients are averaged across ranks before each optimizer step, rank 0 writes.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist

from ..config import LoopConfig
from .objectives import Objective
from .params import floor_branch, make_optimizer
from .schedule import make_schedule


@dataclass
class RunResult:
    checkpoint: Path  # the last checkpoint written
    records: list[dict] = field(default_factory=list)  # this session's log records, one per step
    validation: dict = field(default_factory=dict)  # the last validation figures (empty without held-out data)


def rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _average_gradients(params: list[torch.nn.Parameter], world: int) -> None:
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        p.grad /= world


def _summary(figures: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items())


def run(objective: Objective, model, cfg: LoopConfig, log: Callable[[str], None] = print,
        progress: bool = True) -> RunResult:
    """Train ``model``'s SideNet (``cfg.trainable``) on ``objective`` for ``cfg.steps`` optimizer steps, or resume."""
    rank, world = rank_world()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    state_path, ckpt_path = out / "state.pt", out / "sidenet.safetensors"
    params, optimizer = make_optimizer(model, cfg.trainable, cfg.lr, cfg.gate_lr_scale, cfg.weight_decay)
    schedule = make_schedule(optimizer, cfg.warmup, cfg.steps)
    identity = {"objective": objective.kind, "train_config": asdict(cfg), "world": world}
    step = 0
    if state_path.exists():  # exact resume: parameters, optimizer, schedule, step
        state = torch.load(state_path, weights_only=True)
        if {k: state.get(k) for k in identity} != identity:
            raise ValueError(f"{out} holds a run with another configuration; use a new --out")
        model.load_checkpoint(ckpt_path)
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        step = state["step"]
        if rank == 0:
            log(f"resuming at step {step}")
    result = RunResult(checkpoint=ckpt_path)
    bar = None
    if progress and rank == 0:
        from tqdm import tqdm
        bar = tqdm(total=cfg.steps, initial=step, desc=f"train {objective.kind}", unit="step", file=sys.stderr)
    log_file = open(out / "log.jsonl", "a") if rank == 0 else None
    t0, seen = time.perf_counter(), 0
    try:
        while step < cfg.steps:
            lr = optimizer.param_groups[0]["lr"]
            stats = objective.accumulate(step * world + rank)
            if world > 1:
                _average_gradients(params, world)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            if cfg.branch_floor:
                floor_branch(model)
            optimizer.zero_grad(set_to_none=True)
            schedule.step()
            step += 1
            seen += int(stats.get("tokens", 0)) * world
            rate = seen / (time.perf_counter() - t0)
            record = {"step": step, **stats, "lr": lr, "tokens_per_s": rate, "seconds": round(time.perf_counter() - t0, 2),
                      "gate": [round(g, 4) for g in torch.sigmoid(model.side.gate.detach()).tolist()]}
            if bar is not None:
                bar.set_postfix(loss=f"{stats['loss']:.3f}", tok_s=f"{rate:.0f}")
                bar.update(1)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                if rank == 0:
                    _save(model, optimizer, schedule, step, identity, ckpt_path, state_path)
                if world > 1:
                    dist.barrier()
            if rank == 0 and (step % cfg.validate_every == 0 or step == cfg.steps):
                with torch.no_grad():
                    figures = objective.validate()
                if figures:
                    result.validation = figures
                    record.update(figures)
                    log(f"step {step}: {_summary(figures)}")
            result.records.append(record)
            if log_file is not None:
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
    finally:
        if bar is not None:
            bar.close()
        if log_file is not None:
            log_file.close()
    return result


def _save(model, optimizer, schedule, step: int, identity: dict, ckpt_path: Path, state_path: Path) -> None:
    """The checkpoint, then the state that points at it (each written to a temporary file, then renamed)."""
    model.save_checkpoint(ckpt_path, note=json.dumps({"kind": identity["objective"], "step": step,
                                                      "train_config": identity["train_config"]}))
    tmp = state_path.with_suffix(".tmp")
    torch.save({"step": step, "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(), **identity}, tmp)
    tmp.replace(state_path)
