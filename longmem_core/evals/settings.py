"""The evaluations' tuned defaults: eval-ppl's neural cache and test-time adaptation, and where eval-niah's needles
go. One frozen dataclass per concern, one default instance each that the code reads at call time (``tuning.py`` says
how a field is written). Change one with ``dataclasses.replace``::

    settings.ADAPT = dataclasses.replace(settings.ADAPT, lr=3e-4)
"""
from __future__ import annotations

from dataclasses import dataclass

from ..tuning import tuned


@dataclass(frozen=True)
class PerplexityCacheSettings:
    """eval-ppl --cache's setting (``ppl_cache.py``), chosen with LongMem on the first 8,192 tokens of the tuning
    books frankenstein and the_time_machine (great_expectations was a training book of the checkpoint)."""

    lam: float = tuned(
        0.2, "cache weight, times the cache's confidence, chosen on the tuning books (the answer path's lambda_ppl "
             "is 0.05 ungated)", "perplexity.md")
    theta: float = tuned(
        40.0, "sharpness of the cache's softmax, the answer path's, kept: chosen with lam and layer on the tuning "
              "books", "perplexity.md")
    dim: int = tuned(
        1 << 16, "at or above the backbone's width: the states as they are, unprojected (576 for SmolLM2-135M)",
        "perplexity.md")
    gated: bool = tuned(
        True, "the cache weight scaled by the cache's confidence at each token, chosen with lam on the tuning books",
        "perplexity.md")
    layer: int | None = tuned(
        -4, "keys are hidden_states[-4], the third-last block's input: perplexity 0.3 points lower than keyed on the "
            "final normed state", "perplexity.md")


@dataclass(frozen=True)
class AdaptSettings:
    """eval-ppl --adapt's test-time training of the memory branch (``ppl_adapt.py``), chosen on the tuning books
    frankenstein and the_time_machine."""

    lr: float = tuned(
        1e-3, "learning rate of the AdamW step on each segment once scored (3e-4 and 2e-3 were slightly worse)",
        "perplexity.md")
    steps: int = tuned(
        1, "AdamW steps per segment (3 steps at 1e-3 were slightly worse)", "perplexity.md")
    memory_share: float = tuned(
        0.75, "the trained gates' memory share times this before adapting (they open to 0.92-1.00; 0.6 and 0.85 were "
              "slightly worse)", "perplexity.md")


@dataclass(frozen=True)
class NeedleSettings:
    """Where the needles of a haystack go (``needles.py``)."""

    snap_chars: int = tuned(
        600, "a needle goes to the sentence start nearest its depth within this many characters, else to a word "
             "start", "niah.md")


PERPLEXITY_CACHE = PerplexityCacheSettings()
ADAPT = AdaptSettings()
NEEDLES = NeedleSettings()
