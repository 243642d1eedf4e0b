"""A chunk a search or an attention pass lists: its exact text and place, the weight that ranked it, and which search
found it."""
from __future__ import annotations

from dataclasses import dataclass

from ..memory.memory_bank import ChunkInfo


@dataclass
class Retrieved:
    """One retrieved chunk, with its exact text and how much weight it got."""

    info: ChunkInfo
    score: float
    found_by: str = ""  # the search that listed it, where one is named: "memory" (the model's own search, keys and
    # SideNet queries), "hybrid" (that search fused with BM25), "bm25", "meaning" (the meaning search, meaning.py)

    def to_dict(self) -> dict:
        i = self.info
        return {"chunk_id": i.chunk_id, "source": i.source, "char_start": i.char_start, "char_end": i.char_end,
                "text": i.text, "score": round(self.score, 6), "token_start": i.token_start, "token_end": i.token_end,
                "page": i.page, "page_label": i.page_label, "found_by": self.found_by}
