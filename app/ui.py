"""Placeholder page until the full app lands (issue: the LongMem Studio app)."""
from __future__ import annotations


def build_demo(model=None):
    import gradio as gr
    with gr.Blocks(title="LongMem Studio") as demo:
        gr.Markdown("# LongMem Studio\nThe app is under construction. Meanwhile use the CLI: "
                    "`python -m longmem_core memorize FILE --bank DIR`, then `ask` and `retrieve`.")
    return demo
