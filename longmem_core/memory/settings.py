"""The memory package's tuned defaults: when a bank's search turns approximate, and how its IVF index is trained.
One frozen dataclass, one default instance that the code reads at call time (``tuning.py`` says how a field is
written). Change it with ``dataclasses.replace``::

    settings.INDEX = dataclasses.replace(settings.INDEX, auto_approx_chunks=4096)
"""
from __future__ import annotations

from dataclasses import dataclass

from ..tuning import tuned


@dataclass(frozen=True)
class IndexSettings:
    """The bank's search index under the "auto" and "ivf" policies (``config.INDEX_KINDS``)."""

    auto_approx_chunks: int = tuned(
        32_768, "\"auto\": exact search below this many chunks (131,072 tokens of chunk size 4), IVF above, where "
                "the bench measures that IVF pays", "index.md")
    ivf_points_per_list: int = tuned(
        32, "an IVF index is trained once there are this many chunks per inverted list", "index.md")
    ivf_kmeans_iterations: int = tuned(
        10, "k-means iterations when (re)training an IVF index (faiss' IVF default)", "index.md")
    ivf_train_points_per_list: int = tuned(
        32, "k-means trains on at most this many sampled chunks per list: half the time, recall kept", "index.md")
    ivf_retrain_growth: int = tuned(
        4, "an IVF index is re-clustered when the bank has grown this many times since it was trained", "index.md")


INDEX = IndexSettings()
