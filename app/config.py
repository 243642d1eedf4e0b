"""The app's configuration: defaults for every user and the server's limits, overridable as keyword arguments
of ``build_demo``. (The Settings *tab*, where a user changes their own, is ``components/settings.py``.)"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from longmem_core.answer.settings import ANSWER


WHEN_FULL = {  # what reading does when the documents would not fit in memory: value -> what the page calls it
    "ask": "Ask me first (nothing is read)",
    "drop_oldest": "Drop the oldest (first in, first out)",
    "fit": "Keep memory, read only what fits",
}


@dataclass
class AppSettings:
    search_top: int = field(default_factory=lambda: ANSWER.search_top)  # chunks the search finds and reads back for
    # each answer (listed beside it); default the library's tuned one
    chunk_size: int | None = None  # tokens per memory chunk for a new bank; None: the model's (paper: 4)
    capacity: int | None = None  # memory bank size in tokens for a new bank; None: max_bank_capacity (the bank grows as it reads)
    when_full: str = "ask"  # reading more than the capacity: "ask" (nothing is read; the person is told what would be dropped), "drop_oldest" (FIFO, the paper's), "fit" (read only what fits)
    max_new_tokens: int = 128  # longest answer, in tokens
    temperature: float = 0.0  # 0: greedy decoding
    history_turns: int = 2  # earlier question/answer pairs put in the chat prompt
    k: int = 20  # demonstrations in context for classification (paper: 20)
    seed: int = 1  # which k demonstrations are sampled into context
    max_upload_mb: float = 20.0  # larger documents, demonstration sets and test files are refused with a message
    max_bank_mb: float = 200.0  # larger saved banks (.zip) are refused (a full 65,536-token bank of the default backbone is about 65 MB)
    max_bank_capacity: int = 1_048_576  # largest capacity (tokens) of a new or loaded bank: bounds what a bank file can make the server allocate
    max_question_chars: int = 2000  # longer questions (and texts to classify) are refused with a message
    max_demonstrations: int = 2000  # rows of a demonstration set read into memory (paper: 2,000)
    max_test_rows: int = 200  # rows of a test file classified at once
    concurrency: int = 2  # expensive requests (read, chat, classify, save, load) running at once across all sessions; others wait in the queue
    queue_size: int = 64  # waiting requests beyond this are refused ("queue full")
    session_ttl_s: float | None = None  # drop a session's memory this long after its last change (None: keep until the tab closes)

    def __post_init__(self) -> None:
        for name in ("search_top", "max_new_tokens", "max_demonstrations", "max_test_rows", "concurrency", "queue_size",
                     "max_bank_capacity", "max_question_chars"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.when_full not in WHEN_FULL:
            raise ValueError(f"when_full must be one of {', '.join(WHEN_FULL)}, got {self.when_full!r}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.max_upload_mb <= 0 or self.max_bank_mb <= 0:
            raise ValueError(f"upload limits must be > 0, got {self.max_upload_mb} and {self.max_bank_mb}")

    @property
    def new_bank_capacity(self) -> int:
        """Capacity in tokens of a new bank: ``capacity``, or by default ``max_bank_capacity``: storage is allocated
        as the bank fills, so a bank of a 250-page PDF holds all of it (a 65,536-token bank dropped its first half)."""
        return self.capacity or self.max_bank_capacity

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1e6)

    @property
    def max_bank_bytes(self) -> int:
        return int(self.max_bank_mb * 1e6)

    @property
    def max_file_size(self) -> int:
        """Bytes of the largest upload the server accepts at all (``launch(max_file_size=...)``): Gradio refuses
        a larger one before it is written to disk; the per-kind limits above are checked after."""
        return max(self.max_upload_bytes, self.max_bank_bytes)

    @classmethod
    def from_kwargs(cls, **kwargs) -> "AppSettings":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(f"unknown app settings: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return cls(**kwargs)
