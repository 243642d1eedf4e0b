"""The Classify tab: few-shot classification in the default mode (beyond the paper: the mode chosen on
demonstrations held out of memory) against k in context only."""
from __future__ import annotations

from contextlib import closing

import gradio as gr

from .. import handlers, views
from ..background import Done, stream
from .common import Ui, checked_number, user_errors
from .page import ClassifyWidgets, Page


RESULT_COLUMNS = ["text", "label", "default (beyond the paper)", "in context only", "paper: memory layer"]


def render(ui: Ui) -> ClassifyWidgets:
    s = ui.settings
    with gr.Row(equal_height=False):
        with gr.Column(scale=5):
            gr.Markdown("#### 1. Demonstrations: all go into memory, k of them into the prompt")
            choice = gr.Dropdown(list(handlers.DEMONSTRATION_SETS) + [handlers.UPLOADED_SET],
                                 value=next(iter(handlers.DEMONSTRATION_SETS)), label="Demonstration set")
            upload = gr.File(label="Your demonstrations (CSV, TSV or JSONL with 'text' and 'label' columns)",
                             file_types=[".csv", ".tsv", ".jsonl", ".json"], height=150)
            template = gr.Dropdown(list(handlers.TEMPLATES), value=next(iter(handlers.TEMPLATES)),
                                   label="Prompt template for an uploaded set")
            k = checked_number(gr.Slider(0, 40, value=s.k, step=1, label="k: demonstrations in context (paper: 20)"),
                               integer=True)
            gr.Markdown("#### 2. What to classify")
            text = gr.Textbox(label="A text", placeholder="e.g. a gripping , beautifully acted film", lines=2)
            test_file = gr.File(label="…and/or a test file (same format; with a label column you get accuracy)",
                                file_types=[".csv", ".tsv", ".jsonl", ".json"], height=150)
            bundled_test = gr.Checkbox(label="Use the bundled labelled test set of this demonstration set (24 texts)",
                                       value=False)
            with gr.Row():
                run = gr.Button("Classify", variant="primary", scale=3, elem_id="lm-classify")
                stop = gr.Button("Stop", variant="stop", scale=1)
        with gr.Column(scale=6):
            status = gr.HTML(views.status("info", "Reading a bundled set into memory takes about 20 s the first time; "
                                                  "it is kept for the next texts."), elem_id="lm-classify-status")
            probabilities = gr.Label(label="Label probabilities in the default mode (in-context scores and memory, "
                                           "weighed as held-out demonstrations taught; beyond the paper)",
                                     num_top_classes=6)
            explanation = gr.HTML()
            accuracy = gr.HTML()
            table = gr.Dataframe(headers=RESULT_COLUMNS, label="Test file: predictions", wrap=True,
                                 interactive=False, max_height=360, column_widths=["52%", "12%", "12%", "12%", "12%"])
            with gr.Accordion("Result as JSON", open=False):
                result_json = gr.JSON(show_label=False)
    return ClassifyWidgets(choice, upload, template, k, text, test_file, bundled_test, run, stop, status,
                           probabilities, explanation, accuracy, table, result_json)


def listen(ui: Ui, page: Page) -> None:
    model, s, w = ui.model, ui.settings, page.classify
    w.upload.upload(lambda: handlers.UPLOADED_SET, None, w.choice, api_visibility="private", queue=False)
    results = [w.probabilities, w.explanation, w.accuracy, w.table, w.result_json]
    outputs = [w.status, *results, page.session]

    @user_errors(status=w.status, outputs=outputs)
    def classify(choice, upload=None, template=None, k=s.k, text=None, test_file=None, bundled_test=False, session=None,
                 chunk_size=None, capacity=None, top_k=None, request: gr.Request = None):
        """Classify a text and/or a test file in the default mode (beyond the paper), against in context only."""
        session = ui.open(session, request)
        blank = [None, "", "", [], None]  # per widget of `results` while computed (common.py: UNCHANGED OUTPUTS)
        yield views.status("info", "Checking the input…"), *blank, session
        demos = handlers.demonstration_set(choice, upload if choice == handlers.UPLOADED_SET else None,
                                           handlers.TEMPLATES.get(template), max_bytes=s.max_upload_bytes,
                                           max_rows=s.max_demonstrations)
        if bundled_test and demos.test_file is None:
            raise handlers.AppError("Only the bundled demonstration sets come with a test set; upload yours instead.")
        test_path = test_file or (demos.test_file if bundled_test else None)
        rows = handlers.read_test_file(test_path, max_bytes=s.max_upload_bytes, max_rows=s.max_test_rows) \
            if test_path else None
        if not (text or "").strip() and not rows:
            raise handlers.AppError("Type a text to classify, or give a test file.")
        k = int(k)
        n = len(demos.examples)
        reading = stream(lambda report: handlers.load_demonstrations(
            model, session, demos, chunk_size=chunk_size, capacity=capacity, progress=lambda d, t: report((d, t))))
        with closing(reading):  # closed early when the run is cancelled: the work then stops
            for event in reading:
                if not isinstance(event, Done):
                    done, total = event
                    yield views.progress_bar(done / max(total, 1), f"Reading {n:,} demonstrations into memory",
                                             f"{done:,} / {total:,} tokens"), *blank, session
        result: dict = {"demonstrations": demos.name, "text": None, "file": None}
        values: list = [None, "", "", [], result]  # one per widget of `results`
        if (text or "").strip():
            yield views.progress_bar(0.5, "Classifying the text", "default mode, in context only, paper's memory layer"), *blank, session
            one = handlers.classify_text(model, session, text, k=k, seed=s.seed, top=s.search_top,
                                         top_k=int(top_k) if top_k else None, max_chars=s.max_question_chars)
            result["text"] = one
            values[0:2] = [one["probabilities"], views.classification(one)]
        if rows:
            classifying = stream(lambda report: handlers.classify_rows(
                model, session, rows, k=k, seed=s.seed, progress=lambda d, t: report((d, t)),
                top_k=int(top_k) if top_k else None))
            with closing(classifying):
                for event in classifying:
                    if isinstance(event, Done):
                        many = event.result
                    else:
                        done, total = event
                        yield views.progress_bar(done / total, "Classifying the test texts",
                                                 f"{done} / {total} texts (default mode, in context only, paper's memory layer)"), \
                            *blank, session
            result["file"] = many
            values[2:4] = [views.accuracy(many), [[r["text"], r["label"] or "", r["default"], r["in_context_only"],
                                                    r["with_memory"]] for r in many["rows"]]]
        values[4] = result
        yield views.status("ok", f"Done: {n:,} demonstrations in memory, {min(k, n)} in context."), *values, session

    running = w.run.click(
        classify, [w.choice, w.upload, w.template, w.k, w.text, w.test_file, w.bundled_test, page.session,
                   page.settings.chunk_size, page.settings.capacity, page.settings.top_k],
        outputs, api_name="classify", show_progress="hidden", **ui.heavy())

    def stopped(session, request: gr.Request):
        session = ui.open(session, request)
        handlers.wait_idle(session)
        return views.status("warn", "Stopped."), session

    w.stop.click(stopped, [page.session], [w.status, page.session], cancels=[running], api_visibility="private",
                 show_progress="hidden", concurrency_limit=None)
