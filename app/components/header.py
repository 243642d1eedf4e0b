"""The page header: what the app is, and whether its SideNet is trained."""
from __future__ import annotations

from html import escape
from pathlib import Path

import gradio as gr

from .common import Ui


def trained_summary(parts: set[str]) -> str:
    """What a checkpoint trained (``LongMemModel.trained_parts``), in the banner's words (HTML)."""
    if parts & {"memory_layer", "side_layers"}:
        what = "Trained: the memory search and the layers that use what it finds, on language modelling over books."
    else:
        what = ("Trained: the memory search (it finds facts and passages read earlier). Not trained: the memory "
                "layer that would use what it finds (the <code>fusion</code> answer mode); the other answer modes "
                "read what it finds back to the backbone and need no training.")
    if "meaning" in parts:
        what += (" Also trained: a second search that finds sentences by meaning, from the values memory stores "
                 "(beyond the paper).")
    return what


def render(ui: Ui) -> None:
    """The title and the SideNet banner: what is trained and what is not (measured figures: docs/RESULTS.md)."""
    gr.Markdown("# LongMem Studio\nA frozen language model writes what it reads into a **memory bank**; a small "
                "**SideNet** retrieves from it while answering (Wang et al. 2023, *Augmenting Language Models with "
                "Long-Term Memory*). Fill memory, ask, and see what was retrieved.")
    if ui.checkpoint:
        what = trained_summary(ui.model.trained_parts())
        banner = (f'<div class="lm-banner lm-trained">SideNet: checkpoint <code>{escape(Path(ui.checkpoint).name)}</code>'
                  f' on backbone <code>{escape(ui.model.cfg.backbone)}</code>. {what} Measured effects: docs/RESULTS.md.</div>')
    else:
        banner = ('<div class="lm-banner"><b>Untrained SideNet.</b> No trained checkpoint was found, so memory is mixed '
                  'in with a fixed 0.5 gate and the memory search is not tuned (backbone '
                  f'<code>{escape(ui.model.cfg.backbone)}</code>); the read-back answer modes still put the passages '
                  'they find in front of the backbone. What was retrieved is shown exactly as it happened.</div>')
    gr.HTML(banner)


def listen(ui: Ui, page: object) -> None:
    """Nothing to wire."""
