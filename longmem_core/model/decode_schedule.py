"""Which decode schedule pays on this machine: the SideNet beside the backbone in a second thread, or after it.

``cfg.parallel_decode`` lets a cached one-token step run the SideNet in a pool thread beside the backbone
(``LongMemModel._decode_in_two_threads``). Whether that pays depends on the CPU: on the AMD EPYC this project was
first measured on it took generation from about 0.66x to 0.97x the backbone's speed; on the Intel Xeon of a later
session it fell from 0.89x to 0.57x (docs/results/generation.md). Both schedules give the same tokens
(tested), so the choice can be measured on the model's own first decode steps: they alternate between the two,
and once each has ``trials`` timed steps (after ``warmup`` untimed ones; ``settings.DECODE_SCHEDULE``) the faster median wins for the rest of
the process.
"""
from __future__ import annotations

import statistics
import threading

from . import settings


class DecodeSchedule:
    """Alternates the two schedules over the first steps it is asked about, then keeps the faster."""

    def __init__(self, warmup: int | None = None, trials: int | None = None) -> None:
        tuned = settings.DECODE_SCHEDULE
        self.warmup = tuned.warmup if warmup is None else warmup
        self.trials = tuned.trials if trials is None else trials
        self.times: dict[bool, list[float]] = {True: [], False: []}
        self.seen: dict[bool, int] = {True: 0, False: 0}
        self.chosen: bool | None = None  # True: the SideNet beside the backbone
        self._lock = threading.Lock()

    def pick(self) -> bool:
        """The schedule for the next step: True beside, False after."""
        with self._lock:
            if self.chosen is not None:
                return self.chosen
            return self.seen[True] <= self.seen[False]  # alternate, beside first

    def record(self, beside: bool, seconds: float) -> None:
        """The wall time of one step run with schedule ``beside``."""
        with self._lock:
            if self.chosen is not None:
                return
            self.seen[beside] += 1
            if self.seen[beside] > self.warmup:
                self.times[beside].append(seconds)
            if all(len(t) >= self.trials for t in self.times.values()):
                self.chosen = statistics.median(self.times[True]) < statistics.median(self.times[False])
