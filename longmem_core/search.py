"""Search: which memory chunks a query asks for, ranked by the score the search gave them.

Interface shared by the answer modes, the evaluations and the app (issue 13 makes it robust):
``rank_chunks(model, bank, query, top)`` returns the ``top`` chunks best first, each ``Retrieved`` with the
score that ranked it.
"""
from __future__ import annotations

from .memory_bank import MemoryBank
from .model import LongMemModel, Retrieved


def rank_chunks(model: LongMemModel, bank: MemoryBank, query: str, top: int = 6) -> list[Retrieved]:
    """The ``top`` chunks for ``query``, best first. For now: the memory layer's attention mass (model.retrieve)."""
    return model.retrieve(query, bank, top=top)
