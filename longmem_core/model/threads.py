"""CPU work split over threads with one intra-op thread each: independent forwards side by side, results in
order (``ordered_map``), and one decoding step's SideNet beside its backbone (``HiddenStream``).

Reading a book segment by segment is many independent forwards of a mid-sized model. On a CPU, running them
side by side in ``workers`` Python threads (torch releases the GIL inside its kernels), each op on a single
thread, keeps every core busy through the small ops (norms, rotary, softmax) where splitting one op over
threads pays little, instead of fanning out and joining around every op. Each forward computes what it computes
alone; only a BLAS that sums in another order on one thread than on several could change the last bits (the
tiny-model tests check bit for bit, the real-backbone test within the bank's 16-bit storage).
"""
from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, TypeVar

import torch

Item = TypeVar("Item")
Result = TypeVar("Result")


def default_workers(device: torch.device | str = "cpu") -> int:
    """Threads for independent forwards: torch's intra-op thread count on a CPU, 1 on an accelerator."""
    return torch.get_num_threads() if torch.device(device).type == "cpu" else 1


def ordered_map(fn: Callable[[Item], Result], items: Iterable[Item], workers: int) -> Iterator[Result]:
    """``map(fn, items)`` computed by ``workers`` threads with one intra-op thread each, yielded in order.

    At most ``2 * workers`` results wait unread, so a slow consumer does not pile them up. With one worker it
    is a plain ``map`` (torch's own threading untouched). torch's thread count is process-wide: it is set to 1
    while this runs and restored afterwards, so other torch work in the process runs single-threaded meanwhile.
    """
    if workers <= 1:
        yield from map(fn, items)
        return
    with single_threaded_ops(), ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


_lock = threading.Lock()
_holders = 0
_saved_threads = 0


@contextmanager
def single_threaded_ops():
    """torch ops run on one intra-op thread inside. torch's count is process-wide, so overlapping sections (two
    app sessions) share one count of holders: the first saves the count, the last restores it."""
    global _holders, _saved_threads
    with _lock:
        if _holders == 0:
            _saved_threads = torch.get_num_threads()
            torch.set_num_threads(1)
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0:
                torch.set_num_threads(_saved_threads)


class HiddenStream:
    """The backbone's hidden states of one forward, published one by one as its blocks finish.

    The backbone appends to it (it stands in for the list ``FrozenBackbone.forward`` fills); the SideNet,
    running in another thread, indexes it, and reading ``stream[j]`` waits until block j - 1 has run. While
    decoding one token every block is a matrix-vector product bound by memory bandwidth, where a second core
    adds little to one op: so the backbone and the SideNet each take a core and run at once.
    """

    def __init__(self) -> None:
        self._items: list[torch.Tensor] = []
        self._ready = threading.Condition()
        self._error: BaseException | None = None

    def append(self, x: torch.Tensor) -> None:
        with self._ready:
            self._items.append(x)
            self._ready.notify_all()

    def fail(self, error: BaseException) -> None:
        """The producer stopped: every reader waiting or still to come gets this error."""
        with self._ready:
            self._error = error
            self._ready.notify_all()

    def __getitem__(self, j: int) -> torch.Tensor:
        if j < 0:
            raise IndexError("a stream is read by position from its start")
        with self._ready:
            self._ready.wait_for(lambda: len(self._items) > j or self._error is not None)
            if len(self._items) > j:
                return self._items[j]
            raise RuntimeError("the backbone stopped before this hidden state") from self._error

    def __len__(self) -> int:
        with self._ready:
            return len(self._items)


_side_pool: ThreadPoolExecutor | None = None


def side_thread(fn: Callable[[], Result]) -> "Future[Result]":
    """Run ``fn`` on the shared pool the SideNet decodes in (one intra-op thread per worker)."""
    global _side_pool
    with _lock:
        if _side_pool is None:
            _side_pool = ThreadPoolExecutor(4, thread_name_prefix="longmem-side",
                                            initializer=torch.set_num_threads, initargs=(1,))
    return _side_pool.submit(fn)
