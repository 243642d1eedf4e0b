"""Test-time training of the memory branch on what was already read (dynamic evaluation; beyond the paper).

Krause et al. (2018) keep training a language model on the text it has just scored. Here only the SideNet's
memory layer and its per-head gates train, one AdamW step per segment, on the segment just scored and reading
the bank exactly as it was scored (the previous segments), before the segment itself goes into memory. Nothing
of a segment is learned before it has been scored, so every figure stays a prediction of unseen tokens.

Two facts make the controls hold by construction:
* With the SideNet's identity init (``side_init="identity"``) the memory layer changes the backbone's stream only
  through its memory branch (``side_network._memory_layer``: its own local update is scaled by an untrained 0),
  so an adapted model reading an empty bank is still the backbone.
* ``memory_share`` scales every head's trained memory share sigmoid(g_h) once, before adaptation (the books
  checkpoint's gates opened to 0.92-1.00 on its training books; 0.75 of that predicted the tuning books better).

``memory_share``, the learning rate and the steps are ``settings.ADAPT``, chosen on the tuning books frankenstein
and the_time_machine (docs/results/perplexity.md).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from ..model.segments import segment_loss
from ..model.model import LongMemModel
from ..training.params import make_optimizer
from . import settings

# training.params' group: the memory layer and the gates. Not a tuned choice: with any other group the adapted model
# reading an empty bank would no longer be the backbone (the first of the two facts above).
TRAINABLE = "memory"


@dataclass(frozen=True)
class Adaptation:
    """One test-time adaptation; each option left out is ``settings.ADAPT``'s, read when it is made."""

    lr: float = field(default_factory=lambda: settings.ADAPT.lr)
    steps: int = field(default_factory=lambda: settings.ADAPT.steps)
    memory_share: float = field(default_factory=lambda: settings.ADAPT.memory_share)

    def __post_init__(self) -> None:
        if not self.lr > 0 or self.steps < 1:
            raise ValueError(f"adaptation needs lr > 0 and steps >= 1, got lr={self.lr}, steps={self.steps}")
        if not 0 < self.memory_share <= 1:
            raise ValueError(f"memory_share must be in (0, 1], got {self.memory_share}")

    def to_dict(self) -> dict:
        return {**asdict(self), "trainable": TRAINABLE}


def adapted_copy(model: LongMemModel, adaptation: Adaptation) -> LongMemModel:
    """A model on the same (frozen, shared) backbone with a copy of ``model``'s SideNet, its memory share scaled."""
    if model.side.scale is None:
        raise ValueError("test-time adaptation needs side_init='identity' (the memory branch alone may change)")
    copy = LongMemModel(model.cfg, backbone=model.backbone).to(model.device)
    copy.side.load_state_dict(model.side.state_dict())
    copy.side.scale_memory_share(adaptation.memory_share)
    copy.eval()
    return copy


class OnlineAdapter:
    """One AdamW over the memory layer and the gates of ``model`` (which it trains in place)."""

    def __init__(self, model: LongMemModel, adaptation: Adaptation) -> None:
        self.model, self.adaptation = model, adaptation
        _, self.optimizer = make_optimizer(model, TRAINABLE, adaptation.lr, gate_lr_scale=1.0, weight_decay=0.0)
        self.steps_taken = 0

    def learn(self, ids: list[int], bank) -> None:
        """``adaptation.steps`` steps on one segment (token ids without the sink) reading ``bank``, which must hold
        only what preceded the segment. Nothing to learn from an empty bank (the memory branch is then silent)."""
        if bank is None or len(bank) == 0 or len(ids) < 2:
            return
        self.model.train()
        with torch.enable_grad():
            for _ in range(self.adaptation.steps):
                loss, n, _, _ = segment_loss(self.model, ids, bank)
                self.optimizer.zero_grad(set_to_none=True)
                (loss / n).backward()
                self.optimizer.step()
                self.steps_taken += 1
        self.model.eval()
