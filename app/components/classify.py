"""The Classify tab: few-shot classification with demonstrations in memory and k in context."""
from __future__ import annotations

from contextlib import closing

import gradio as gr

from .. import handlers, views
from ..background import Done, stream
from .common import Ui, user_errors

RESULT_COLUMNS = ["text", "label", "with memory", "in context only"]


def render(ui: Ui) -> None:
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
            k = gr.Slider(0, 40, value=s.k, step=1, label="k: demonstrations in context (paper: 20)")
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
            probabilities = gr.Label(label="Label scores with memory (probability among the labels)",
                                     num_top_classes=6)
            explanation = gr.HTML()
            accuracy = gr.HTML()
            table = gr.Dataframe(headers=RESULT_COLUMNS, label="Test file: predictions", wrap=True,
                                 interactive=False, max_height=360, column_widths=["58%", "14%", "14%", "14%"])
            with gr.Accordion("Result as JSON", open=False):
                result_json = gr.JSON(show_label=False)
    ui.add(demo_choice=choice, demo_upload=upload, demo_template=template, k=k, classify_text=text,
           test_file=test_file, bundled_test=bundled_test, classify=run, stop_classify=stop, classify_status=status,
           probabilities=probabilities, explanation=explanation, accuracy=accuracy, results=table,
           classify_json=result_json)


def listen(ui: Ui) -> None:
    model, s = ui.model, ui.settings
    ui["demo_upload"].upload(lambda: handlers.UPLOADED_SET, None, ui["demo_choice"], api_visibility="private",
                             queue=False)

    @user_errors(status=(0, 7))
    def classify(choice, upload=None, template=None, k=s.k, text=None, test_file=None, bundled_test=False, session=None,
                 chunk_size=None, capacity=None, top_k=None, request: gr.Request = None):
        """Classify a text and/or a test file with demonstrations in memory, against in-context only."""
        session = ui.open(session, request)
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
        skip = [gr.skip()] * 5
        n = len(demos.examples)
        reading = stream(lambda report: handlers.load_demonstrations(
            model, session, demos, chunk_size=chunk_size, capacity=capacity, progress=lambda d, t: report((d, t))))
        with closing(reading):  # closed early when the run is cancelled: the work then stops
            for event in reading:
                if not isinstance(event, Done):
                    done, total = event
                    yield views.progress_bar(done / max(total, 1), f"Reading {n:,} demonstrations into memory",
                                             f"{done:,} / {total:,} tokens"), *skip, session
        result: dict = {"demonstrations": demos.name, "text": None, "file": None}
        outputs = [None, "", "", [], result]  # label scores, explanation, accuracy, table, JSON
        if (text or "").strip():
            yield views.progress_bar(0.5, "Classifying the text", "with memory, then in context only"), *skip, session
            one = handlers.classify_text(model, session, text, k=k, seed=s.seed, top=s.top,
                                         top_k=int(top_k) if top_k else None)
            result["text"] = one
            outputs[0:2] = [one["probabilities"], views.classification(one)]
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
                                                 f"{done} / {total} texts (each twice: with memory, in context only)"), \
                            *skip, session
            result["file"] = many
            outputs[2:4] = [views.accuracy(many), [[r["text"], r["label"] or "", r["with_memory"], r["in_context_only"]]
                                                   for r in many["rows"]]]
        outputs[4] = result
        yield views.status("ok", f"Done: {n:,} demonstrations in memory, {min(k, n)} in context."), *outputs, session

    running = ui["classify"].click(
        classify, [ui["demo_choice"], ui["demo_upload"], ui["demo_template"], ui["k"], ui["classify_text"],
                   ui["test_file"], ui["bundled_test"], ui["session"], ui["chunk_size"], ui["capacity"], ui["top_k"]],
        [ui["classify_status"], ui["probabilities"], ui["explanation"], ui["accuracy"], ui["results"],
         ui["classify_json"], ui["session"]], api_name="classify", show_progress="hidden", **ui.heavy())

    def stopped(session, request: gr.Request):
        session = ui.open(session, request)
        handlers.wait_idle(session)
        return views.status("warn", "Stopped."), session

    ui["stop_classify"].click(stopped, [ui["session"]], [ui["classify_status"], ui["session"]], cancels=[running],
                              api_visibility="private", show_progress="hidden", concurrency_limit=None)
