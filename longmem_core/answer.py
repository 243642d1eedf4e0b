"""Answer modes: how what memory holds becomes an answer.

Interface shared by the CLI (``ask --mode``), the app and the evaluations (``eval-niah``, ``eval-qa``):
``answer(model, bank, question, mode=...)`` returns an ``Answer`` with the text and the chunks the mode
listed or used (best first). Modes so far:

- ``backbone``: the frozen backbone alone, local context only (no memory): the baseline.
- ``fusion``: the paper's memory-augmented attention layer reads the bank while generating.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .memory_bank import MemoryBank
from .model import LongMemModel, Retrieved

MODES: tuple[str, ...] = ("backbone", "fusion")
DEFAULT_MODE = "fusion"


@dataclass
class Answer:
    mode: str
    text: str
    chunks: list[Retrieved] = field(default_factory=list)  # what the mode listed or used, best first
    context: str = ""  # text the mode put into the prompt besides the question (empty for these modes)


def answer(model: LongMemModel, bank: MemoryBank | None, question: str, *, mode: str = DEFAULT_MODE,
           max_new_tokens: int = 64, top: int = 6) -> Answer:
    """Answer ``question`` greedily in ``mode``; ``top`` chunks are listed."""
    if mode not in MODES:
        raise ValueError(f"unknown answer mode {mode!r}; choose one of {', '.join(MODES)}")
    prompt = model.chat_ids(question)
    if mode == "backbone":
        gen = model.generate(prompt, None, max_new_tokens=max_new_tokens, backbone_only=True)
        for _ in gen:
            pass
        return Answer(mode, gen.text)
    gen = model.generate(prompt, bank, max_new_tokens=max_new_tokens)
    for _ in gen:
        pass
    chunks = model.retrieved_for(gen, bank, top=top) if bank is not None else []
    return Answer(mode, gen.text, chunks)
