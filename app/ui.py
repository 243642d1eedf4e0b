"""The page: ``build_demo`` renders each tab's component, collects their widgets into a typed ``Page`` and lets
each component wire its events; it never launches. ``launch_options`` gives ``launch()`` its limits."""
from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from pathlib import Path

import gradio as gr

from longmem_core import LongMemModel, default_checkpoint

from . import handlers
from .components import chat, classify, header, memory, memory_map, settings
from .components.common import Ui
from .components.page import Page
from .config import AppSettings
from .session import SessionRegistry

CSS_PATH = handlers.ASSETS / "app.css"
COMPONENTS = (header, memory, chat, memory_map, classify, settings)
WORK_DIR_PREFIX = "longmem-studio-"  # the page's temporary folder (saved banks), removed on close and at exit
GRADIO_CACHE_SWEEP = (3600, 3600)  # Gradio deletes its own cached copies of uploads older than an hour, hourly


class Studio(gr.Blocks):
    """The LongMem Studio page; ``longmem`` is what is behind it (model, settings, open sessions)."""

    longmem: Ui

    def launch(self, *args, app_kwargs: dict | None = None, **kwargs):
        """``gr.Blocks.launch`` with the route that serves each saved bank once (``app/downloads.py``) put first
        among the server's routes."""
        app_kwargs = dict(app_kwargs or {})
        app_kwargs["routes"] = [self.longmem.downloads.route(), *app_kwargs.get("routes", [])]
        return super().launch(*args, app_kwargs=app_kwargs, **kwargs)

    def close(self, *args, **kwargs) -> None:
        """Stop serving, free every open session's memory and files, and remove the page's work folder."""
        try:
            super().close(*args, **kwargs)
        finally:
            ui = getattr(self, "longmem", None)
            if ui is not None:
                for session_id in ui.sessions.ids():
                    ui.sessions.close(session_id)
                shutil.rmtree(ui.work_dir, ignore_errors=True)


def _free(session) -> None:
    if session is not None:
        session.free()


def build_demo(model: LongMemModel | None = None, checkpoint: str | None = None, **settings_overrides) -> Studio:
    """The LongMem Studio app for ``model`` (default: ``handlers.load_model()``; ``checkpoint`` names the trained
    SideNet a given model carries, for display). Keyword arguments override AppSettings fields. Every browser or
    API session gets its own memory, freed (with its saved files) when the session closes or expires."""
    app_settings = AppSettings.from_kwargs(**settings_overrides)
    if model is None:
        checkpoint = checkpoint or default_checkpoint()
        model = handlers.load_model(checkpoint=checkpoint)
    ui = Ui(model=model, settings=app_settings, sessions=SessionRegistry(), checkpoint=checkpoint or model.checkpoint_path,
            work_dir=Path(tempfile.mkdtemp(prefix=WORK_DIR_PREFIX)))
    with Studio(title="LongMem Studio", delete_cache=GRADIO_CACHE_SWEEP) as demo:
        gr.HTML(f"<style>{CSS_PATH.read_text(encoding='utf-8')}</style>", padding=False)
        header.render(ui)
        session = gr.State(None, time_to_live=app_settings.session_ttl_s, delete_callback=_free)
        with gr.Tabs():
            with gr.Tab("Memory", id="memory"):
                memory_widgets = memory.render(ui)
            with gr.Tab("Chat", id="chat") as chat_tab:
                chat_widgets = chat.render(ui)
            with gr.Tab("Memory map", id="map"):
                map_widgets = memory_map.render(ui)
            with gr.Tab("Classify", id="classify"):
                classify_widgets = classify.render(ui)
            with gr.Tab("Settings", id="settings"):
                settings_widgets = settings.render(ui)
        page = Page(session=session, memory=memory_widgets, chat=chat_widgets, memory_map=map_widgets,
                    classify=classify_widgets, settings=settings_widgets, chat_tab=chat_tab)
        for component in COMPONENTS:
            component.listen(ui, page)

        def close_session(request: gr.Request) -> None:
            ui.sessions.close(request.session_hash)
        demo.unload(close_session)
    demo.queue(default_concurrency_limit=app_settings.concurrency, max_size=app_settings.queue_size)
    demo.longmem = ui
    weakref.finalize(demo, shutil.rmtree, ui.work_dir, True)  # at exit too, if close() was never called
    return demo


def launch_options(app_settings: AppSettings | None = None, **overrides) -> dict:
    """``launch()`` arguments: the upload limit of ``app_settings`` (Gradio refuses a larger file before it
    reaches the disk), then the environment: PORT / GRADIO_SERVER_PORT, GRADIO_SERVER_NAME, LONGMEM_BROWSER=0
    to not open a browser tab; ``overrides`` last."""
    options: dict = {"inbrowser": os.environ.get("LONGMEM_BROWSER", "1") != "0",
                     "max_file_size": (app_settings or AppSettings()).max_file_size}
    port = os.environ.get("PORT") or os.environ.get("GRADIO_SERVER_PORT")
    if port:
        options["server_port"] = int(port)
    if os.environ.get("GRADIO_SERVER_NAME"):
        options["server_name"] = os.environ["GRADIO_SERVER_NAME"]
    return {**options, **overrides}
