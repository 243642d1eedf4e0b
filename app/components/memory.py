"""The Memory tab: read documents into the session's bank, see its size, save, load or clear it."""
from __future__ import annotations

from contextlib import closing

import gradio as gr

from .. import handlers, views
from ..background import Done, stream
from .common import Ui, user_errors


def render(ui: Ui) -> None:
    with gr.Row(equal_height=False):
        with gr.Column(scale=5):
            files = gr.File(label="Documents to read (.txt, .md, .pdf)", file_count="multiple",
                            file_types=[".txt", ".md", ".pdf"], height=140, elem_id="lm-files")
            example = gr.Dropdown(choices=list(handlers.BOOKS), value=None, label="…or a bundled public-domain book",
                                  info="Read along with any files you chose above")
            with gr.Row():
                read = gr.Button("Read into memory", variant="primary", scale=3, elem_id="lm-read")
                stop = gr.Button("Stop", variant="stop", scale=1)
            progress = gr.HTML(views.status("info", f"Up to {ui.settings.max_upload_mb:g} MB per file. "
                                                    "Reading takes about 2 s per 1,000 tokens on a CPU."), elem_id="lm-read-status")
        with gr.Column(scale=6):
            summary = gr.HTML(views.bank_summary({"tokens": 0}), elem_id="lm-summary")
            with gr.Row():
                save = gr.Button("Save memory bank (.zip)", size="md")
                load = gr.UploadButton("Load a saved bank (.zip)", file_types=[".zip"], size="md")
                clear = gr.Button("Clear memory", size="md")
            download = gr.File(label="Your saved memory bank", visible=False, interactive=False)
            with gr.Accordion("Memory bank as JSON", open=False):
                stats = gr.JSON(value=handlers.bank_stats(handlers.Session()), show_label=False)
    ui.add(files=files, example=example, read=read, stop_read=stop, read_progress=progress, summary=summary,
           save=save, load_bank=load, clear=clear, download=download, stats=stats)


def listen(ui: Ui) -> None:
    model, settings = ui.model, ui.settings
    summary_outputs = [ui["summary"], ui["stats"], ui["memory_map"]]

    def shown(session):
        stats = handlers.bank_stats(session)
        return views.bank_summary(stats), stats, ui.memory_map(session)

    @user_errors(status=(0, 5))
    def memorize(files=None, example=None, session=None, chunk_size=None, capacity=None, request: gr.Request = None):
        """Read the uploaded files and/or the chosen bundled book into this session's memory."""
        session = ui.open(session, request)
        paths = list(files or []) + ([handlers.bundled_book(example)] if example else [])
        documents = handlers.read_documents(paths, max_bytes=settings.max_upload_bytes)
        yield views.progress_bar(0, f"Reading {documents[0].name}", "starting…"), *[gr.skip()] * 3, session
        work = stream(lambda report: handlers.memorize(model, session, documents, chunk_size=chunk_size,
                                                       capacity=capacity, progress=report))
        with closing(work):  # closed early when the run is cancelled: the reading then stops
            for event in work:
                if isinstance(event, Done):
                    yield views.memorize_done(event.result, handlers.bank_stats(session)), *shown(session), session
                else:
                    yield views.memorize_progress(event), *[gr.skip()] * 3, session

    reading = ui["read"].click(memorize, [ui["files"], ui["example"], ui["session"], ui["chunk_size"], ui["capacity"]],
                               [ui["read_progress"], *summary_outputs, ui["session"]], api_name="memorize",
                               show_progress="hidden", **ui.heavy())

    def stopped(session, request: gr.Request):
        """After Stop: wait for the reading to end its segment, then show what memory holds."""
        session = ui.open(session, request)
        handlers.wait_idle(session)
        note = views.status("warn", f"Stopped. Memory holds {len(session.bank) if session.bank else 0:,} tokens.")
        return note, *shown(session), session

    ui["stop_read"].click(stopped, [ui["session"]], [ui["read_progress"], *summary_outputs, ui["session"]],
                          cancels=[reading], api_visibility="private", show_progress="hidden", concurrency_limit=None)

    @user_errors
    def clear(session, request: gr.Request):
        """Forget everything this session read, asked and classified."""
        session = ui.open(session, request)
        handlers.clear(session)
        return views.status("ok", "Memory cleared."), *shown(session), [], views.retrieved({}), session

    ui["clear"].click(clear, [ui["session"]], [ui["read_progress"], *summary_outputs, ui["chatbot"], ui["retrieved"],
                                               ui["session"]], api_name="clear", show_progress="hidden", concurrency_limit=None)

    @user_errors
    def save(session, request: gr.Request):
        """This session's memory bank as a .zip file, to load again later."""
        session = ui.open(session, request)
        path = handlers.save_bank(session, ui.work_dir)
        return gr.update(value=str(path), visible=True), session

    ui["save"].click(save, [ui["session"]], [ui["download"], ui["session"]], api_name="save_bank",
                     show_progress="hidden", concurrency_limit=None)

    @user_errors
    def load(file, session, request: gr.Request):
        """Replace this session's memory by a bank saved earlier (same backbone only)."""
        session = ui.open(session, request)
        stats = handlers.load_bank(model, session, file, max_bytes=settings.max_bank_bytes)
        note = views.status("ok", f"Loaded a memory bank of {stats['tokens']:,} tokens.")
        return note, *shown(session), session

    ui["load_bank"].upload(load, [ui["load_bank"], ui["session"]], [ui["read_progress"], *summary_outputs, ui["session"]],
                           api_name="load_bank", show_progress="hidden", concurrency_limit=None)
