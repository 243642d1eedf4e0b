"""What the components share: the ``Ui`` context (no module globals), a guard that turns bad input into a
message in the page, and a choice widget whose API schema says it takes whole numbers."""
from __future__ import annotations

import functools
import inspect
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import gradio as gr

from longmem_core import LongMemModel, limits

from .. import views
from ..config import AppSettings
from ..downloads import Downloads
from ..handlers import AppError
from ..session import Session, SessionRegistry

# UNCHANGED OUTPUTS: a streaming event never yields gr.skip() (or gr.update()) for an output it later gives a value.
# Gradio 6.31 answers a skip by replacing the session's copy of that component with a new one (a new id), and keeps
# the next value in the session's config under that new id for as long as the session lives: one more copy of the
# memory map (~300 KB) per chat or reading, which was the soak's growing memory (docs/results/soak.md).
# Events yield the values already shown instead.
MODEL_SLOTS = "model"  # concurrency id shared by every event that runs the model or reads a whole bank


@dataclass
class Ui:
    """The model, the settings and the open sessions behind one page."""

    model: LongMemModel
    settings: AppSettings
    sessions: SessionRegistry
    checkpoint: str | None  # the trained SideNet loaded, if any
    work_dir: Path  # where saved banks are written (a per-page temporary folder, removed on shutdown)
    downloads: Downloads = field(default_factory=Downloads)  # saved banks waiting for their one download

    def open(self, session: Session | None, request: gr.Request | None) -> Session:
        """The caller's session, registered so that closing its tab frees its memory."""
        return self.sessions.open(session, getattr(request, "session_hash", None))

    def heavy(self) -> dict:
        """Event options for expensive work: all sessions share ``settings.concurrency`` slots."""
        return {"concurrency_id": MODEL_SLOTS, "concurrency_limit": self.settings.concurrency}


def int_choice(choices: Sequence[int], **kwargs: Any) -> gr.Dropdown:
    """A dropdown of whole numbers whose API schema says so (a plain Dropdown's says string, and gradio_client shows
    any enum as quoted strings, so the choices go in the description) and that accepts 4 or "4" from API
    clients. Customised on the instance: a Dropdown subclass would make Gradio write a type-stub file next to this
    module at import."""
    dropdown = gr.Dropdown(list(choices), **kwargs)
    allowed = [value for _, value in dropdown.choices]
    plain_preprocess = dropdown.preprocess

    def api_info() -> dict[str, Any]:
        return {"type": "integer", "description": f"one of {', '.join(map(str, allowed))}"}

    def preprocess(payload: Any) -> Any:
        if isinstance(payload, str) and payload.strip().lstrip("-").isdigit():
            payload = int(payload)
        if payload is not None and (isinstance(payload, bool) or payload not in allowed):
            raise gr.Error(f"{dropdown.label}: {payload!r:.40} is not one of {allowed}", print_exception=False)
        return plain_preprocess(payload)

    dropdown.api_info, dropdown.preprocess = api_info, preprocess
    return dropdown


def checked_number(widget: gr.Slider | gr.Number, *, integer: bool = False) -> gr.Slider | gr.Number:
    """A Slider or Number whose input from the page or an API client must be a number within the widget's range:
    a string that is not a number, null, NaN (which passes Gradio's own range check) or infinity is refused with
    one clear message naming the widget, where Gradio would give its generic error or pass NaN on. Digits in a
    string are accepted. Customised on the instance (see ``int_choice``)."""
    low = -math.inf if widget.minimum is None else widget.minimum
    high = math.inf if widget.maximum is None else widget.maximum
    plain_preprocess = widget.preprocess

    def preprocess(payload: Any) -> Any:
        try:
            value = limits.check_number(payload, widget.label or "this number", low, high, integer=integer)
        except ValueError as exc:
            raise gr.Error(f"{exc}.", print_exception=False) from None
        return plain_preprocess(value)

    widget.preprocess = preprocess
    return widget


def user_errors(fn: Callable | None = None, *, status: Any = None, outputs: Sequence[Any] = ()) -> Callable:
    """Show an AppError's message (or the library's InputError's: a limit of ``limits.py``) in the page: as a
    Gradio error notice (an error for API clients) and, for a streaming event, first as an error line in its
    ``status`` widget, found by identity among ``outputs``, the other outputs showing what the run showed last
    (see UNCHANGED OUTPUTS above)."""
    if fn is None:
        return functools.partial(user_errors, status=status, outputs=outputs)
    index = None if status is None else next(i for i, o in enumerate(outputs) if o is status)
    n = len(outputs)
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def generator(*args, **kwargs):
            last = None  # the values the run showed last: the error line goes with them, not with gr.skip()
            try:
                for last in fn(*args, **kwargs):
                    yield last
            except (AppError, limits.InputError) as exc:  # InputError: over a limit of the library
                if index is not None:
                    yield tuple(views.status("error", str(exc)) if i == index else (gr.skip() if last is None else v)
                                for i, v in enumerate(last or [None] * n))
                raise gr.Error(str(exc), print_exception=False) from exc
        return generator

    @functools.wraps(fn)
    def plain(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (AppError, limits.InputError) as exc:  # InputError: over a limit of the library
            raise gr.Error(str(exc), print_exception=False) from exc
    return plain
