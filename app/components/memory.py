"""The Memory tab: read documents into the session's bank, see its size, save, load or clear it."""
from __future__ import annotations

from contextlib import closing
from pathlib import Path

import gradio as gr

from .. import handlers, views
from ..background import Done, stream
from ..config import WHEN_FULL
from ..handlers import AppError
from .common import Ui, user_errors
from .memory_map import drawn
from .page import MemoryWidgets, Page


def render(ui: Ui) -> MemoryWidgets:
    with gr.Row(equal_height=False):
        with gr.Column(scale=5):
            files = gr.File(label="Documents to read (.txt, .md, .pdf)", file_count="multiple",
                            file_types=[".txt", ".md", ".pdf"], height=140, elem_id="lm-files")
            example = gr.Dropdown(choices=list(handlers.BOOKS), value=None, label="…or a bundled public-domain book",
                                  info="Read along with any files you chose above")
            with gr.Row():
                read = gr.Button("Read into memory", variant="primary", scale=3, elem_id="lm-read")
                stop = gr.Button("Stop", variant="stop", scale=1)
            when_full = gr.Radio([(label, value) for value, label in WHEN_FULL.items()], value=ui.settings.when_full,
                                 label="When memory is full", elem_id="lm-when-full",
                                 info="Memory grows as it reads, up to its capacity (Settings); beyond it you choose")
            progress = gr.HTML(views.status("info", f"Up to {ui.settings.max_upload_mb:g} MB per file."),
                               elem_id="lm-read-status")
        with gr.Column(scale=6):
            summary = gr.HTML(views.bank_summary({"tokens": 0}), elem_id="lm-summary")
            with gr.Row():
                save = gr.Button("Save memory bank (.zip)", size="md")
                load = gr.UploadButton("Load a saved bank (.zip)", file_types=[".zip"], size="md")
                clear = gr.Button("Clear memory", size="md")
            download = gr.HTML(elem_id="lm-download")
            with gr.Accordion("Memory bank as JSON", open=False):
                stats = gr.JSON(value=handlers.describe_bank(None), show_label=False)
    return MemoryWidgets(files, example, read, stop, progress, summary, save, load, clear, download, stats, when_full)


def listen(ui: Ui, page: Page) -> None:
    model, settings, w = ui.model, ui.settings, page.memory
    shown_outputs = [w.summary, w.stats, page.memory_map.view]

    def shown(session) -> tuple:
        stats = handlers.bank_stats(session)
        return views.bank_summary(stats), stats, drawn(session)

    read_outputs = [w.progress, *shown_outputs, page.session]

    @user_errors(status=w.progress, outputs=read_outputs)
    def memorize(files=None, example=None, session=None, chunk_size=None, capacity=None, when_full=None,
                 request: gr.Request = None):
        """Read the uploaded files and/or the chosen bundled book into this session's memory."""
        session = ui.open(session, request)
        before = shown(session)  # yielded unchanged while reading (common.py: UNCHANGED OUTPUTS)
        yield views.status("info", "Checking the files…"), *before, session
        paths = list(files or []) + ([handlers.bundled_book(example)] if example else [])
        documents = handlers.read_documents(paths, max_bytes=settings.max_upload_bytes)
        yield views.progress_bar(0, f"Reading {documents[0].name}", "counting tokens…"), *before, session
        work = stream(lambda report: handlers.memorize(model, session, documents, chunk_size=chunk_size,
                                                       capacity=capacity, when_full=when_full or settings.when_full,
                                                       progress=report))
        with closing(work):  # closed early when the run is cancelled: the reading then stops
            for event in work:
                if isinstance(event, Done):
                    yield views.memorize_done(event.result, handlers.bank_stats(session)), *shown(session), session
                else:
                    yield views.memorize_progress(event), *before, session

    reading = w.read.click(memorize, [w.files, w.example, page.session, page.settings.chunk_size,
                                      page.settings.capacity, w.when_full], read_outputs, api_name="memorize",
                           show_progress="hidden", **ui.heavy())

    def stopped(session, request: gr.Request):
        """After Stop: wait for the reading to end its segment, then show what memory holds."""
        session = ui.open(session, request)
        handlers.wait_idle(session)
        note = views.status("warn", f"Stopped. Memory holds {len(session.bank) if session.bank else 0:,} tokens.")
        return note, *shown(session), session

    w.stop.click(stopped, [page.session], read_outputs, cancels=[reading], api_visibility="private",
                 show_progress="hidden", concurrency_limit=None)

    @user_errors
    def clear(session, request: gr.Request):
        """Forget everything this session read, asked and classified (its saved bank file too)."""
        session = ui.open(session, request)
        handlers.clear(session)
        return (views.status("ok", "Memory cleared."), *shown(session), [], views.retrieved({}), "", session)

    w.clear.click(clear, [page.session], [w.progress, *shown_outputs, page.chat.chatbot, page.chat.retrieved,
                                          w.download, page.session],
                  api_name="clear", show_progress="hidden", concurrency_limit=None)

    @user_errors
    def save(session, request: gr.Request):
        """This session's memory bank as a .zip file, to load again later: a link that downloads it once
        (relative to the page; no server path). Saving again, Clear and the session's end delete the file."""
        session = ui.open(session, request)
        path = handlers.save_bank(session, ui.work_dir)
        return views.download_link(ui.downloads.offer(path), path.name), session

    w.save.click(save, [page.session], [w.download, page.session], api_name="save_bank", show_progress="hidden",
                 **ui.heavy())

    @user_errors
    def load(file, session, request: gr.Request):
        """Replace this session's memory by a bank saved earlier (same backbone only). The bank is checked, and
        everything shown about it computed, before it replaces the session's memory."""
        session = ui.open(session, request)
        if not file:
            raise AppError("Choose a saved bank (.zip) to load.")
        path = Path(file)
        handlers.check_uploaded(path, ui.work_dir)  # before the try: another session's file is never deleted below
        try:
            bank = handlers.read_bank(model, path, max_bytes=settings.max_bank_bytes,
                                      max_capacity=settings.max_bank_capacity, saved_dir=ui.work_dir)
            stats = handlers.describe_bank(bank)
            try:
                summary, drawn = views.bank_summary(stats), views.memory_map(bank, {}, [])
            except Exception as exc:  # a bank that passed every check but cannot be drawn is still refused
                raise AppError(f"{path.name}: the bank cannot be shown ({type(exc).__name__}); memory unchanged") from exc
            handlers.adopt_bank(session, bank)
        finally:
            path.unlink(missing_ok=True)  # the upload holds document text: not kept on the server
        note = views.status("ok", f"Loaded a memory bank of {stats['tokens']:,} tokens.")
        return note, summary, stats, drawn, session

    w.load.upload(load, [w.load, page.session], read_outputs, api_name="load_bank", show_progress="hidden",
                  **ui.heavy())
