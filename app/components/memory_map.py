"""The Memory map tab: where in each document answers looked, and the chunk keys in two dimensions."""
from __future__ import annotations

import gradio as gr

from .. import views
from .common import Ui


def render(ui: Ui) -> None:
    gr.Markdown("Updated after every reading and every answer. Hover a cell or a dot to see its text.")
    memory_map = gr.HTML(views.memory_map(None, {}, []), elem_id="lm-memory-map")
    refresh = gr.Button("Redraw", size="sm")
    ui.add(memory_map=memory_map, refresh_map=refresh)


def listen(ui: Ui) -> None:
    def redraw(session, request: gr.Request):
        session = ui.open(session, request)
        return ui.memory_map(session), session

    ui["refresh_map"].click(redraw, [ui["session"]], [ui["memory_map"], ui["session"]], api_visibility="private",
                            concurrency_limit=None)
