"""Run long model work in a thread and stream its progress, so a Gradio generator can show it and stop it."""
from __future__ import annotations

import contextvars
import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")
Report = Callable[[Any], None]  # called by the work with a progress value


class Stopped(Exception):
    """Raised inside the work when its caller asked it to stop."""


@dataclass
class Done(Generic[T]):
    result: T


def stream(work: Callable[[Report], T], poll_s: float = 0.1) -> Iterator[Any]:
    """Run ``work(report)`` in a thread; yield every value it reports, then ``Done(result)``.

    Closing the iterator early (Gradio does when a run is cancelled or its tab closes) makes the next
    ``report`` call raise ``Stopped`` inside the work; the iterator waits for the thread to end, so the
    work never outlives its caller. An exception raised by the work is raised here.
    """
    events: queue.Queue = queue.Queue()
    stop = threading.Event()
    outcome: dict[str, Any] = {}

    def report(value: Any) -> None:
        if stop.is_set():
            raise Stopped()
        events.put(value)

    def run() -> None:
        try:
            outcome["result"] = work(report)
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc
        finally:
            events.put(_END)

    thread = threading.Thread(target=contextvars.copy_context().run, args=(run,), daemon=True)
    thread.start()
    try:
        while True:
            try:
                value = events.get(timeout=poll_s)
            except queue.Empty:
                continue
            if value is _END:
                break
            yield value
    finally:
        stop.set()
        thread.join()
    if "error" in outcome:
        raise outcome["error"]
    yield Done(outcome["result"])


_END = object()
