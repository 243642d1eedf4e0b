"""The classify package's tuned defaults: the settings of the modes beyond the paper, and how ``auto`` chooses
between them. One frozen dataclass per concern, one default instance each that the code reads at call time
(``tuning.py`` says how a field is written). Change one with ``dataclasses.replace``::

    settings.MODE = dataclasses.replace(settings.MODE, neighbours=7)
"""
from __future__ import annotations

from dataclasses import dataclass

from ..tuning import tuned


@dataclass(frozen=True)
class ModeSettings:
    """The classification modes of ``icl_modes.py`` (the k-NN vote, label centroids, their mix)."""

    neighbours: int = tuned(
        5, "demonstrations that vote in ``knn``", "icl_modes.md")
    centroid_temperature: float = tuned(
        0.05, "``centroid``: label distribution softmax(cosine to each label's mean key / this), chosen on tuning "
              "data", "icl_modes.md")
    mix_weight: float = tuned(
        0.25, "``centroid_context``: this share of ``centroid`` and the rest ``context_cal``, chosen on tuning data",
        "icl_modes.md")


@dataclass(frozen=True)
class SelectionSettings:
    """How ``auto`` learns its combination of the modes on demonstrations held out of memory (``icl_select.py``,
    ``icl_combine.py``)."""

    candidates: tuple[str, ...] = tuned(
        ("centroid_context", "centroid", "context_cal", "knn", "context"),
        "the single modes whose held-out accuracy is shown beside the combination's (memory and kate cannot be "
        "scored fairly or fast)", "icl_auto.md")
    fallback: str = tuned(
        "centroid_context", "used when nothing can be held out to learn from: the best mode on sentiment",
        "icl_modes.md")
    max_held_out: int = tuned(
        24, "held out, each read as a test text; on the tuning sets 24 did about as well as 40 (0.582 against 0.583) in "
            "0.6 of the time", "icl_auto.md")
    few_demonstrations: int = tuned(
        30, "below this many demonstrations, the choice is said to rest on few examples ...", "icl_auto.md")
    few_held_out: int = tuned(
        20, "... and below this many held-out texts", "icl_auto.md")


MODE = ModeSettings()
SELECTION = SelectionSettings()
