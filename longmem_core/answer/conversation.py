"""A conversation with memory: questions asked one after another, each answered as well as if asked first.

Earlier turns reach the prompt only in modes that read nothing back (``answer.Mode.reads_history``): with text
read back, the small backbone given earlier answers repeats them instead of reading. A follow-up that leans on the
question before it ("And who else?", "What does it default to?") reaches the *search* instead: its words are looked
for together with the previous question's (``search_text``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import answer as answers, settings
from ..memory.memory_bank import MemoryBank
from ..model.model import LongMemModel
from ..model.search import stop_words

_WORD = re.compile(r"[^\W_]+")
# words by which a question leans on the one before it
REFERRING = frozenset("it its it's that this these those they them their he she him his her else also then there "
                      "same other another".split())


def is_follow_up(question: str, stop: frozenset[str]) -> bool:
    """Does ``question`` lean on the question before it: a referring word, and few words of its own (at most
    ``settings.CONVERSATION.follow_up_words``)?"""
    words = [w.lower() for w in _WORD.findall(question)]
    own = [w for w in words if w not in stop and w not in REFERRING]
    return any(w in REFERRING for w in words) and len(own) <= settings.CONVERSATION.follow_up_words


def search_text(question: str, previous: str | None, stop: frozenset[str]) -> str | None:
    """What the search looks for: None (the question itself) unless it is a follow-up of ``previous``, then both."""
    if previous and is_follow_up(question, stop):
        return f"{previous} {question}"
    return None


@dataclass
class Conversation:
    """The turns so far; ``ask`` answers the next question as the app does."""

    turns: list[dict] = field(default_factory=list)  # {"question", "answer"} oldest first
    history_turns: int = 2  # earlier turns put in the prompt of a mode that ``reads_history``

    def history(self) -> list[dict]:
        out: list[dict] = []
        for t in self.turns[-self.history_turns:] if self.history_turns > 0 else []:
            out += [{"role": "user", "content": t["question"]}, {"role": "assistant", "content": t["answer"]}]
        return out

    def search_text(self, question: str) -> str | None:
        """What the search looks for when ``question`` is asked next (``search_text``)."""
        previous = self.turns[-1]["question"] if self.turns else None
        return search_text(question, previous, frozenset(stop_words()))

    def ask(self, model: LongMemModel, bank: MemoryBank | None, question: str, *, mode: str = answers.DEFAULT_MODE,
            max_new_tokens: int = 64, search_top: int | None = None) -> answers.Answer:
        out = answers.answer(model, bank, question, mode=mode, max_new_tokens=max_new_tokens, search_top=search_top,
                             history=self.history(), search_text=self.search_text(question))
        self.turns.append({"question": question, "answer": out.text})
        return out
