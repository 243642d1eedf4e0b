"""Training objectives: small pluggable pieces that the one loop (``training.loop.run``) drives.

An objective turns a batch index into a loss and its gradients; the loop owns the optimizer, schedule,
checkpoints, resume, progress and validation. Batch ``i`` must be a pure function of the objective's data, its
seed and ``i`` (no hidden random state carried from step to step), so a resumed run repeats an uninterrupted one
and ranks of a multi-process run can each take their own batches (rank r of w takes ``step * w + r``).
"""
from __future__ import annotations

from typing import Protocol

import torch


class Objective(Protocol):
    kind: str  # written into checkpoints and the run state: "language", "retrieval", "recall", ...

    def accumulate(self, batch: int) -> dict[str, float]:
        """Compute the loss of batch ``batch`` and backpropagate it (gradients add up in ``.grad``); returns at
        least {"loss": mean loss, "tokens": scored tokens or query tokens}."""

    def validate(self) -> dict[str, float]:
        """Held-out figures (empty without held-out data); called by the loop without gradients."""


def batch_rng(seed: int, batch: int):
    """A random generator of its own for batch ``batch`` (so batches do not depend on the ones before)."""
    import random
    return random.Random(f"{seed}:{batch}")


def weighted_nll(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """logits [T, V], targets [T], weights [T] (None: 1) -> the weighted sum of next-token losses (float32)."""
    nll = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")  # [T]
    return nll.sum() if weights is None else (nll * weights).sum()
