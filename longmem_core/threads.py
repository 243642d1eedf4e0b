"""Independent CPU work in parallel threads, one intra-op thread each, results in order.

Reading a book segment by segment is many independent forwards of a mid-sized model. On a CPU, running them
side by side in ``workers`` Python threads (torch releases the GIL inside its kernels), each op on a single
thread, keeps every core busy through the small ops (norms, rotary, softmax) where splitting one op over
threads pays little, instead of fanning out and joining around every op. The results are the same bits:
each forward is computed exactly as alone, only concurrently (docs/RESULTS.md has the measured gain).
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")


def default_workers(device: torch.device | str = "cpu") -> int:
    """Threads for independent forwards: torch's intra-op thread count on a CPU, 1 on an accelerator."""
    return torch.get_num_threads() if torch.device(device).type == "cpu" else 1


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """``map(fn, items)`` computed by ``workers`` threads with one intra-op thread each, yielded in order.

    At most ``2 * workers`` results wait unread, so a slow consumer does not pile them up. With one worker it
    is a plain ``map`` (torch's own threading untouched). torch's thread count is process-wide: it is set to 1
    while this runs and restored afterwards, so other torch work in the process runs single-threaded meanwhile.
    """
    if workers <= 1:
        yield from map(fn, items)
        return
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
            pending: deque = deque()
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
    finally:
        torch.set_num_threads(saved)
