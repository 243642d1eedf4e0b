"""The model package's tuned defaults: how the search lists chunks, how generation guards against repeating
itself, how the decode schedule is chosen. One frozen dataclass per concern, one default instance each that the
code reads at call time (``tuning.py`` says how a field is written). Change one with ``dataclasses.replace``::

    settings.SEARCH = dataclasses.replace(settings.SEARCH, memory_slots=2)
"""
from __future__ import annotations

from dataclasses import dataclass

from ..tuning import tuned


@dataclass(frozen=True)
class SearchSettings:
    """The search's listing and the hybrid search (the model's search fused with BM25, beyond the paper)."""

    spread_tokens: int = tuned(
        64, "chunks listed lie more than this many tokens apart in a source: more distinct passages hold the answer "
            "(128 measured the same)", "qa.md")
    rrf_k: int = tuned(
        60, "reciprocal-rank fusion constant of Cormack et al. 2009, kept as published", "qa.md")
    lexical_window: int = tuned(
        3, "chunks on each side of a chunk whose words BM25 scores with it (a 7-chunk window)", "qa.md")
    lexical_weight: float = tuned(
        2.0, "BM25's weight in the fusion (the model's search weighs 1): 2 found the most answers of 1, 2 and 4",
        "qa.md")
    memory_slots: int = tuned(
        0, "places of the hybrid listing kept for the model's own best chunks whatever BM25 says: off, as 1 and 2 "
           "answered no more facts asked in other words", "paraphrase.md")
    meaning_weight: float = tuned(
        1.0, "the meaning search's weight in the fusion, where the checkpoint trained it (meaning.py)", "paraphrase.md")
    meaning_slots: int = tuned(
        2, "places kept for the meaning search's best sentences whatever BM25 says: 2 found one more tuning fact than "
           "1, same tuning PDFs", "paraphrase.md")
    meaning_below: float = tuned(
        0.3, "the meaning search's places and read-back only where no passage holds this share of the question's "
             "words (above it, they took right answers away on PDFs)", "paraphrase.md")
    lexical_stop_words: str | None = tuned(
        None, "words BM25 drops: None is search.stop_words() (question words too), which read back more answers "
              "than bm25s's own list 'en'", "qa.md")


@dataclass(frozen=True)
class GenerationSettings:
    """The repetition guard every answer mode goes through."""

    guard_ngram: int = tuned(
        4, "no answer says the same this-many tokens twice unless copying stored text (0: no guard)", "qa.md")
    guard_ends: bool = tuned(
        True, "once the guard has blocked the model's first choice, the answer ends with that sentence", "qa.md")


@dataclass(frozen=True)
class DecodeScheduleSettings:
    """How the first decode steps choose between the SideNet beside the backbone (two threads) or after it."""

    warmup: int = tuned(
        1, "untimed steps of each schedule first (thread pool start, caches)", "generation.md")
    trials: int = tuned(
        6, "timed steps of each schedule before the faster median is kept (per-token times swing 20-30%)",
        "generation.md")


SEARCH = SearchSettings()
GENERATION = GenerationSettings()
DECODE_SCHEDULE = DecodeScheduleSettings()
