"""Memory-augmented adaptation: train the SideNet on long documents read in order, segment by segment.

Each training example is a run of consecutive segments of one document (an *excerpt*); the memory bank holds
the excerpt's preceding segments and is reset between excerpts. Only SideNet parameters train. The plan of
excerpts is a pure function of the data and the seed, so a run resumes exactly from its last checkpoint.
"""
from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .evaluate import segment_loss
from .model import LongMemModel

TRAINABLE = ("memory", "all")


@dataclass
class TrainConfig:
    data: list[str]  # .txt files or folders of them (read in order, segment by segment)
    val: list[str] = field(default_factory=list)  # held-out .txt files for the validation loss
    out: str = "runs/sidenet"  # run folder: checkpoints, state, log
    steps: int = 600  # optimizer steps
    grad_accum: int = 1  # segments per optimizer step
    lr: float = 1e-3  # peak learning rate (AdamW, betas 0.9/0.98 as the paper)
    warmup: int = 20  # linear warm-up steps, then cosine decay to 10%
    weight_decay: float = 0.01
    excerpt_segments: int = 16  # consecutive segments per excerpt: memory grows to (excerpt_segments-1) segments
    checkpoint_every: int = 100  # steps between checkpoints (with validation)
    val_segments: int = 8  # segments per validation file
    trainable: str = "memory"  # "memory": gate + memory layer only; "all": every SideNet parameter
    gate_lr_scale: float = 20.0  # the per-head gate logits (and side scales) learn this much faster: they must travel O(1)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.trainable not in TRAINABLE:
            raise ValueError(f"trainable must be one of {TRAINABLE}, got {self.trainable!r}")
        if self.excerpt_segments < 2:
            raise ValueError("excerpt_segments must be >= 2 (memory needs a preceding segment)")


def text_files(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(p.glob("*.txt")))
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    if not files:
        raise FileNotFoundError(f"no .txt files in {paths}")
    return files


def select_trainable(model: LongMemModel, which: str) -> list[torch.nn.Parameter]:
    """Freeze every SideNet parameter except the chosen group; returns the trainable ones."""
    side = model.side
    for p in side.parameters():
        p.requires_grad_(which == "all")
    if which == "memory":
        side.gate.requires_grad_(True)
        side.layers[side.memory_index].requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


def make_optimizer(model: LongMemModel, trainable: str, lr: float, gate_lr_scale: float,
                   weight_decay: float) -> tuple[list[torch.nn.Parameter], torch.optim.AdamW]:
    """The chosen SideNet parameters and AdamW over them (betas 0.9/0.98 as the paper); the per-head gate logits
    and side scales learn ``gate_lr_scale`` times faster, without weight decay. Each group's ``lr_scale`` multiplies
    the scheduled learning rate."""
    params = select_trainable(model, trainable)
    fast = [p for p in (model.side.gate, model.side.scale) if p is not None and p.requires_grad]
    slow = [p for p in params if all(p is not f for f in fast)]
    optimizer = torch.optim.AdamW([{"params": slow, "lr_scale": 1.0},
                                   {"params": fast, "lr_scale": gate_lr_scale, "weight_decay": 0.0}],
                                  lr=lr, betas=(0.9, 0.98), weight_decay=weight_decay)
    return params, optimizer


def plan_excerpts(lengths: list[int], seg: int, n_segments: int, count: int, seed: int) -> list[tuple[int, int]]:
    """(document index, first token) of ``count`` excerpts of ``n_segments`` segments, sampled with the seed."""
    rng = random.Random(seed)
    span = seg * n_segments
    usable = [i for i, n in enumerate(lengths) if n >= span]
    if not usable:
        raise ValueError(f"no document has {span} tokens; lower excerpt_segments")
    weights = [lengths[i] for i in usable]
    return [(d, rng.randrange(0, lengths[d] - span + 1)) for d in rng.choices(usable, weights=weights, k=count)]


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


@torch.no_grad()
def validate(model: LongMemModel, docs: list[list[int]], n_segments: int) -> dict:
    """Mean next-token loss on the first segments of each validation document, with and without memory."""
    seg = model.segment_length - 1
    totals = {"memory": 0.0, "no_memory": 0.0}
    tokens = 0
    for ids in docs:
        bank = model.new_bank()
        for s in range(n_segments):
            piece = ids[s * seg:(s + 1) * seg]
            if len(piece) < 2:
                break
            loss, n, k, v = segment_loss(model, piece, bank)
            totals["memory"] += float(loss)
            totals["no_memory"] += float(segment_loss(model, piece, None)[0])
            bank.add(k, v, token_start=s * seg)
            tokens += n
    return {"val_loss_memory": totals["memory"] / max(tokens, 1), "val_loss_no_memory": totals["no_memory"] / max(tokens, 1),
            "val_tokens": tokens}


def train(cfg: TrainConfig, model: LongMemModel | None = None, log: Callable[[str], None] = print) -> Path:
    """Run (or resume) a training run; returns the path of the last checkpoint."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    state_path, ckpt_path = out / "state.pt", out / "sidenet.safetensors"
    model = model or LongMemModel.load()
    params, optimizer = make_optimizer(model, cfg.trainable, cfg.lr, cfg.gate_lr_scale, cfg.weight_decay)
    step = 0
    if state_path.exists():  # exact resume: parameters, optimizer, step; the bank is rebuilt by re-reading
        state = torch.load(state_path, weights_only=False)
        if state["train_config"] != asdict(cfg):
            raise ValueError(f"{out} holds a run with another configuration; use a new --out")
        model.load_checkpoint(ckpt_path)
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
        log(f"resuming at step {step}")
    tok = model.tokenizer
    docs = [tok(p.read_text(encoding="utf-8"), add_special_tokens=False)["input_ids"] for p in text_files(cfg.data)]
    val_docs = [tok(p.read_text(encoding="utf-8"), add_special_tokens=False)["input_ids"]
                for p in (text_files(cfg.val) if cfg.val else [])]
    seg = model.segment_length - 1
    n_excerpts = -(-cfg.steps * cfg.grad_accum // (cfg.excerpt_segments - 1)) + 1
    plan = plan_excerpts([len(d) for d in docs], seg, cfg.excerpt_segments, n_excerpts, cfg.seed)
    # segment k of the run: excerpt k // (E-1), segment 1 + k % (E-1) (segment 0 of each excerpt only fills memory)
    per = cfg.excerpt_segments - 1
    from tqdm import tqdm
    bar = tqdm(total=cfg.steps, initial=step, desc="train", unit="step")
    bank, bank_key = None, None
    t0, seen = time.perf_counter(), 0
    log_file = open(out / "log.jsonl", "a")
    while step < cfg.steps:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg) * group["lr_scale"]
        total_loss, total_n = 0.0, 0
        for micro in range(cfg.grad_accum):
            k = step * cfg.grad_accum + micro
            e, s = divmod(k, per)
            s += 1
            d, first = plan[e]
            if bank_key != (e, s - 1):  # new excerpt or resumed run: re-read the preceding segments
                bank = model.new_bank()
                for j in range(s):
                    piece = docs[d][first + j * seg:first + (j + 1) * seg]
                    model.memorize_ids(piece, bank, token_start=j * seg)
            piece = docs[d][first + s * seg:first + (s + 1) * seg]
            loss, n, keys, values = segment_loss(model, piece, bank)
            (loss / n / cfg.grad_accum).backward()
            bank.add(keys.detach(), values.detach(), token_start=s * seg)
            bank_key = (e, s)
            total_loss, total_n = total_loss + loss.item(), total_n + n
            seen += n
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        rate = seen / (time.perf_counter() - t0)
        bar.set_postfix(loss=f"{total_loss / total_n:.3f}", tok_s=f"{rate:.0f}")
        bar.update(1)
        record = {"step": step, "loss": total_loss / total_n, "lr": lr_at(step - 1, cfg), "tokens_per_s": rate,
                  "gate": torch.sigmoid(model.side.gate.detach()).tolist()}
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            model.save_checkpoint(ckpt_path, note=json.dumps({"step": step, "train_config": asdict(cfg)}))
            torch.save({"step": step, "optimizer": optimizer.state_dict(), "train_config": asdict(cfg)},
                       state_path.with_suffix(".tmp"))
            state_path.with_suffix(".tmp").replace(state_path)
            if val_docs:
                record.update(validate(model, val_docs, cfg.val_segments))
                log(f"step {step}: val loss with memory {record['val_loss_memory']:.4f}, "
                    f"without {record['val_loss_no_memory']:.4f}")
        log_file.write(json.dumps(record) + "\n")
        log_file.flush()
    bar.close()
    log_file.close()
    return ckpt_path
