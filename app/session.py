"""One browser (or API client) session's memory, and the registry that frees it when the session closes."""
from __future__ import annotations

import shutil
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from longmem_core import MemoryBank
from longmem_core.classify.icl import DemonstrationMemory
from longmem_core.classify.icl_modes import ModeClassifier
from longmem_core.model.scoring import PromptCache


@dataclass
class Classifier:
    """What classifying with one demonstration set reads once, for one (k, seed, top-k): the modes' shared parts
    (keys, label centroids, the random prompt and its content-free scores) and that prompt read with memory."""

    key: tuple[int, int, int | None]  # (k, seed, top_k) it was built for
    modes: ModeClassifier
    memory_cache: PromptCache | None  # the k random demonstrations read with memory (the paper's mode); None if k=0


@dataclass
class Demonstrations:
    """The classification memory: a demonstration set read into its own bank."""

    key: str  # which set, file content and template it was built from
    name: str
    template: str
    labels: list[str]
    bank: MemoryBank
    memory: DemonstrationMemory
    classifier: Classifier | None = None  # built on the first text, kept while k, seed and top-k stay the same


@dataclass
class Session:
    """Everything one user has: never shared, never global (it lives in a ``gr.State``)."""

    bank: MemoryBank | None = None  # the documents read so far
    heat: dict[int, float] = field(default_factory=dict)  # chunk id -> memory attention it got, summed over questions
    last_retrieved: list[int] = field(default_factory=list)  # chunk ids shown for the latest answer
    last_answer: dict | None = None  # the latest answer as shown (its retrieved chunks), until memory is cleared
    turns: list[dict] = field(default_factory=list)  # {"question", "answer", "backbone_answer"} per chat turn
    demonstrations: Demonstrations | None = None
    busy: threading.Lock = field(default_factory=threading.Lock, repr=False)  # held while memory is written
    saved: list[Path] = field(default_factory=list)  # the latest saved bank's folder (its .zip until downloaded)
    closed: bool = False

    def forget_documents(self) -> None:
        self.bank, self.heat, self.last_retrieved, self.turns, self.last_answer = None, {}, [], [], None

    def drop_saved(self) -> None:
        """Delete the saved bank file and every copy of it served for download (they hold the documents' text)."""
        for path in self.saved:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
                try:
                    path.parent.rmdir()  # a download folder of its own, now empty
                except OSError:
                    pass
        self.saved = []

    def free(self) -> None:
        """Drop all memory and the saved bank file (the session closed or expired)."""
        self.forget_documents()
        self.demonstrations = None
        self.drop_saved()
        self.closed = True


class SessionRegistry:
    """Open sessions by Gradio session id, held weakly, so that closing a tab frees its memory at once
    (Gradio itself drops a closed session's state only after an hour)."""

    def __init__(self) -> None:
        self._open: weakref.WeakValueDictionary[str, Session] = weakref.WeakValueDictionary()
        self._lock = threading.Lock()

    def open(self, session: Session | None, session_id: str | None) -> Session:
        """The caller's session (a new one if it has none yet), registered under its id."""
        if session is None or session.closed:
            session = Session()
        if session_id:
            with self._lock:
                self._open[session_id] = session
        return session

    def close(self, session_id: str | None) -> bool:
        """Free the memory of the session with this id; False if none was open."""
        with self._lock:
            session = self._open.pop(session_id, None) if session_id else None
        if session is None:
            return False
        session.free()
        return True

    def __len__(self) -> int:
        return len(self._open)

    def ids(self) -> list[str]:
        return list(self._open.keys())
