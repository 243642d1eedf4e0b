"""The page: ``build_demo`` arranges the components and wires their events; it never launches."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import gradio as gr

from longmem_core import LongMemModel, default_checkpoint

from . import handlers
from .components import chat, classify, header, memory, memory_map, settings
from .components.common import Ui
from .session import SessionRegistry
from .settings import AppSettings

CSS_PATH = handlers.ASSETS / "app.css"
COMPONENTS = (header, memory, chat, memory_map, classify, settings)


def build_demo(model: LongMemModel | None = None, checkpoint: str | None = None, **settings_overrides) -> gr.Blocks:
    """The LongMem Studio app for ``model`` (default: ``handlers.load_model()``; ``checkpoint`` names the trained
    SideNet a given model carries, for display). Keyword arguments override AppSettings fields. Every browser or
    API session gets its own memory, freed when the session closes."""
    app_settings = AppSettings.from_kwargs(**settings_overrides)
    if model is None:
        checkpoint = checkpoint or default_checkpoint()
        model = handlers.load_model(checkpoint=checkpoint)
    ui = Ui(model=model, settings=app_settings, sessions=SessionRegistry(), checkpoint=checkpoint or model.checkpoint_path,
            work_dir=Path(tempfile.mkdtemp(prefix="longmem-studio-")))
    with gr.Blocks(title="LongMem Studio", delete_cache=(3600, 3600)) as demo:
        gr.HTML(f"<style>{CSS_PATH.read_text(encoding='utf-8')}</style>", padding=False)
        header.render(ui)
        ui.add(session=gr.State(None, time_to_live=app_settings.session_ttl_s,
                                delete_callback=lambda session: session.free() if session is not None else None))
        with gr.Tabs():
            with gr.Tab("Memory", id="memory"):
                memory.render(ui)
            with gr.Tab("Chat", id="chat"):
                chat.render(ui)
            with gr.Tab("Memory map", id="map"):
                memory_map.render(ui)
            with gr.Tab("Classify", id="classify"):
                classify.render(ui)
            with gr.Tab("Settings", id="settings"):
                settings.render(ui)
        for component in COMPONENTS:
            component.listen(ui)

        def close_session(request: gr.Request) -> None:
            ui.sessions.close(request.session_hash)
        demo.unload(close_session)
    demo.queue(default_concurrency_limit=app_settings.concurrency, max_size=app_settings.queue_size)
    demo.longmem = ui  # for tests and tools: the model, settings and open sessions behind this page
    return demo


def launch_options() -> dict:
    """``launch()`` arguments from the environment: PORT / GRADIO_SERVER_PORT, GRADIO_SERVER_NAME, and
    LONGMEM_BROWSER=0 to not open a browser tab."""
    options: dict = {"inbrowser": os.environ.get("LONGMEM_BROWSER", "1") != "0"}
    port = os.environ.get("PORT") or os.environ.get("GRADIO_SERVER_PORT")
    if port:
        options["server_port"] = int(port)
    if os.environ.get("GRADIO_SERVER_NAME"):
        options["server_name"] = os.environ["GRADIO_SERVER_NAME"]
    return options
