"""The Settings tab: retrieval, memory and generation settings of this session, with the model's fixed ones."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from .. import handlers
from .common import Ui, checked_number, int_choice
from .page import Page, SettingsWidgets


def render(ui: Ui) -> SettingsWidgets:
    model, s = ui.model, ui.settings
    cfg = model.cfg
    with gr.Row():
        with gr.Column():
            gr.Markdown("#### Answers")
            top_k = int_choice(handlers.top_k_choices(model), value=cfg.top_k,
                              label="Tokens retrieved per query token and head (top-k, fusion modes)",
                              info="Retrieval takes whole chunks: rounded up to a multiple of the chunk size (paper: 64)")
            search_top = gr.Slider(1, 20, value=s.search_top, step=1, label="Chunks searched and read back per answer",
                                   info="The search finds this many chunks; the text around them is read (quote mode: "
                                        "its best sentences). The figures on the results page use 6.")
            max_new = gr.Slider(min(8, s.max_new_tokens), 512, value=s.max_new_tokens, step=8, label="Max new tokens per answer")
            temperature = gr.Slider(0, 1.5, value=s.temperature, step=0.05,
                                    label="Temperature (0 = always the most likely token)")
        with gr.Column():
            gr.Markdown("#### Memory (applies to a new, empty memory: clear it to change)")
            chunk_size = int_choice(handlers.chunk_size_choices(model), value=s.chunk_size or cfg.chunk_size,
                                   label="Tokens per chunk", info="Retrieval picks whole chunks (paper: 4)")
            capacity = gr.Number(value=s.new_bank_capacity, precision=0, minimum=64,
                                 maximum=s.max_bank_capacity, label="Memory capacity (tokens)",
                                 info="Memory grows as it reads, up to this; beyond it you are asked before anything "
                                      "is dropped (the paper: 65,536, the oldest dropped first)")
    gr.Markdown(
        f"**Fixed by the model:** backbone `{cfg.backbone}`, memory layer {model.memory_layer}, "
        f"SideNet {'checkpoint `' + Path(ui.checkpoint).name + '`' if ui.checkpoint else 'untrained'}.  \n"  # no server path
        f"**Server limits:** {s.max_upload_mb:g} MB per document or table, {s.max_bank_mb:g} MB per saved bank "
        f"(of at most {s.max_bank_capacity:,} tokens), questions of {s.max_question_chars:,} characters, "
        f"{s.max_demonstrations:,} demonstrations, {s.max_test_rows} test texts per file, {s.concurrency} model "
        "requests at once (others wait in a queue).")
    for widget in (search_top, max_new, capacity):  # an API client may send anything: refused with the widget's range
        checked_number(widget, integer=True)
    checked_number(temperature)
    return SettingsWidgets(top_k, search_top, max_new, temperature, chunk_size, capacity)


def listen(ui: Ui, page: Page) -> None:
    """Settings are read by the other tabs' events; nothing to wire here."""
