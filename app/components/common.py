"""What the components share: the ``Ui`` context (no module globals) and a guard that turns bad input into
a message in the page."""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from longmem_core import LongMemModel

from .. import views
from ..handlers import AppError
from ..session import Session, SessionRegistry
from ..settings import AppSettings


@dataclass
class Ui:
    """The model, the settings and every widget that more than one component uses, by name."""

    model: LongMemModel
    settings: AppSettings
    sessions: SessionRegistry
    checkpoint: str | None  # the trained SideNet loaded, if any
    widgets: dict[str, Any] = field(default_factory=dict)
    work_dir: Path | None = None  # where downloads are written (a per-demo temporary folder)

    def __getitem__(self, name: str) -> Any:
        return self.widgets[name]

    def add(self, **widgets: Any) -> None:
        self.widgets.update(widgets)

    def open(self, session: Session | None, request: gr.Request | None) -> Session:
        """The caller's session, registered so that closing its tab frees its memory."""
        return self.sessions.open(session, getattr(request, "session_hash", None))

    def heavy(self) -> dict:
        """Event options for work that runs the model: all sessions share ``concurrency`` slots."""
        return {"concurrency_id": "model", "concurrency_limit": self.settings.concurrency}

    def memory_map(self, session: Session) -> str:
        return views.memory_map(session.bank, session.heat, session.last_retrieved)


def user_errors(fn: Callable | None = None, *, status: tuple[int, int] | None = None) -> Callable:
    """Show an AppError's message in the page: as a Gradio error notice (an error for API clients) and, for a
    streaming event with ``status=(index, n_outputs)``, first as an error line in its status output."""
    if fn is None:
        return functools.partial(user_errors, status=status)
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def generator(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except AppError as exc:
                if status is not None:
                    index, n = status
                    yield tuple(views.status("error", str(exc)) if i == index else gr.skip() for i in range(n))
                raise gr.Error(str(exc), print_exception=False) from exc
        return generator

    @functools.wraps(fn)
    def plain(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except AppError as exc:
            raise gr.Error(str(exc), print_exception=False) from exc
    return plain
