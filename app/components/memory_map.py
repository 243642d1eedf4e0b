"""The Memory map tab: where in each document answers looked, and the chunk keys in two dimensions."""
from __future__ import annotations

import gradio as gr

from .. import views
from ..session import Session
from .common import Ui
from .page import MapWidgets, Page


def drawn(session: Session) -> str:
    """The map of a session's memory, its retrieval heat and its latest answer."""
    return views.memory_map(session.bank, session.heat, session.last_retrieved)


def render(ui: Ui) -> MapWidgets:
    gr.Markdown("Updated after every reading and every answer. Hover a cell or a dot to see its text.")
    view = gr.HTML(views.memory_map(None, {}, []), elem_id="lm-memory-map")
    redraw = gr.Button("Redraw", size="sm")
    return MapWidgets(view, redraw)


def listen(ui: Ui, page: Page) -> None:
    def redraw(session, request: gr.Request):
        session = ui.open(session, request)
        return drawn(session), session

    page.memory_map.redraw.click(redraw, [page.session], [page.memory_map.view, page.session],
                                 api_visibility="private", concurrency_limit=None)
