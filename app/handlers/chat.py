"""The Chat tab's handlers: answer a question with the session's memory, streaming, and show where it looked."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Iterator

from longmem_core import LongMemModel, MemoryBank
from longmem_core.answer import answer as answer_modes
from longmem_core.answer import settings as answer_settings
from longmem_core.answer.conversation import Conversation

from ..session import Session
from .common import AppError, busy, check_question, retrieval_width

CONTEXT_CHARS = 160  # characters of surrounding text returned with a retrieved chunk


@dataclass
class ChatResult:
    """One answer, filled in as it streams."""

    question: str
    answer: str = ""
    backbone_answer: str | None = None  # the backbone alone, when compared
    mode: str = answer_modes.DEFAULT_MODE  # how memory answered (longmem_core.answer.MODES)
    retrieved: list[dict] = field(default_factory=list)  # Retrieved.to_dict() of the chunks used or attended to most
    context: str = ""  # exactly the text read back into the prompt (read-back modes)
    quote: dict | None = None  # the sentence the answer rests on, with its source, page label and section (quote mode)
    short: bool = False  # quote mode: the answer is a span of the quote; False there: the quoted sentence is the answer
    memory_share: float = 0.0  # mean share of the memory layer's output that came from memory
    memory_tokens: int = 0  # tokens in memory when the question was asked
    seconds: float = 0.0
    done: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def chat(model: LongMemModel, session: Session, question: str, *, compare: bool = False,
         search_top: int | None = None,
         max_new_tokens: int = 128, temperature: float = 0.0, history_turns: int = 2,
         top_k: int | None = None, max_chars: int | None = None,
         mode: str = answer_modes.DEFAULT_MODE) -> Iterator[ChatResult]:
    """Answer ``question`` with the session's memory in ``mode`` (``longmem_core.answer``), streaming: yields the
    growing ChatResult, the last one with ``done`` set, the chunks used listed and the retrieval heat of the
    session updated. ``search_top``: chunks the search finds and reads back (fusion: those listed; default the
    library's ``settings.ANSWER.search_top``). Earlier turns reach
    the prompt only in modes that read nothing back; a follow-up reaches the search (``conversation.py``). A
    question over ``max_chars`` characters is refused before the model sees it."""
    if mode not in answer_modes.MODES:
        raise AppError(f"Unknown answer mode {mode!r}: choose one of {', '.join(answer_modes.MODES)}.")
    question = check_question(question, max_chars)
    if not question:
        raise AppError("Type a question first.")
    search_top = answer_settings.ANSWER.search_top if search_top is None else search_top
    with busy(session):
        bank = session.bank if session.bank is not None and len(session.bank) else None
        talk = Conversation(session.turns, history_turns)
        history = talk.history()
        result, t0 = ChatResult(question, mode=mode, memory_tokens=len(bank) if bank else 0), time.perf_counter()
        prepared = answer_modes.prepare(model, bank, question, mode, history, search_top=search_top,
                                        search_text=talk.search_text(question))
        result.context = prepared.context
        gen = answer_modes.stream(model, prepared, max_new_tokens=max_new_tokens, temperature=temperature,
                                  top_k=retrieval_width(top_k, bank))
        answering = answer_modes.Answering(model, prepared, gen)
        result.answer = answering.text  # a read-back answer's first words (already in the prompt), where shown
        for piece in answering:
            result.answer += piece
            yield result
        result.answer, cited = answering.finish()
        result.quote = cited.to_dict() if cited else None
        result.short = answering.short
        if bank is not None:
            result.memory_share = gen.memory_share
            spec = answer_modes.MODE_SPECS[mode]
            chunks = spec.used_chunks(model, prepared, gen, search_top)  # fusion: what the memory layer attended to most
            result.retrieved = [context_of(bank, r.to_dict()) for r in chunks]
            mass = spec.chunk_weights(gen, chunks)
            total = sum(mass.values()) or 1.0
            for cid, weight in mass.items():
                session.heat[cid] = session.heat.get(cid, 0.0) + weight / total
            session.last_retrieved = [r["chunk_id"] for r in result.retrieved]
        if compare:
            result.backbone_answer = ""
            yield result
            alone = model.generate(model.chat_ids(question, history), None, max_new_tokens=max_new_tokens,
                                   temperature=temperature, backbone_only=True)
            for piece in alone:
                result.backbone_answer += piece
                yield result
            result.backbone_answer = alone.text
        result.seconds = time.perf_counter() - t0
        result.done = True
        session.turns.append({"question": question, "answer": result.answer,
                              "backbone_answer": result.backbone_answer, "quote": result.quote, "short": result.short})
    yield result


def context_of(bank: MemoryBank, chunk: dict, chars: int = CONTEXT_CHARS) -> dict:
    """The text around a retrieved chunk (``before``/``after``), cut at word boundaries."""
    ids = bank.chunk_ids
    pos = int(chunk["chunk_id"] - ids[0]) if len(ids) else -1
    if not 0 <= pos < len(ids) or chunk["char_start"] < 0:
        return {**chunk, "before": "", "after": ""}
    text = bank.sources[int(bank.chunk_source[pos])]["text"]
    start, end = chunk["char_start"], chunk["char_end"]
    before = text[max(0, start - chars):start]
    after = text[end:end + chars]
    if start - chars > 0 and " " in before:
        before = before[before.index(" ") + 1:]
    if end + chars < len(text) and " " in after:
        after = after[:after.rindex(" ")]
    return {**chunk, "before": before, "after": after}


def new_conversation(session: Session) -> None:
    """Forget the chat turns (memory and retrieval heat stay)."""
    session.turns = []
