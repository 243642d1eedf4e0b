"""How a tuned default is written: a frozen dataclass field with its reason and the result it came from.

Every number or choice the library picked by measuring lives in a small frozen dataclass per concern (the
``settings.py`` of its package: ``model/settings.py``, ``memory/settings.py``, ``documents/settings.py``,
``answer/settings.py``, ``classify/settings.py``, ``evals/settings.py``), declared with ``tuned``: the value, one
line saying why, and the results claim page (``docs/results/<claim>.md``) that measured it. Each of those modules
holds one default instance per dataclass that the code reads at call time, so a caller (or a test) changes a
setting with ``dataclasses.replace`` on that instance. Plain structural constants (file formats, names, input
limits) stay beside the code that uses them.
"""
from __future__ import annotations

import dataclasses
from typing import Any

RESULTS_DETAILS = "docs/results"  # where the claim pages live, relative to the repository root


def tuned(default: Any, reason: str, result: str) -> Any:
    """A dataclass field holding ``default``, with ``reason`` (one line) and ``result`` (a claim page name under
    ``docs/results/``, e.g. ``"qa.md"``) in its metadata. Mutable defaults (lists) are not allowed: use a
    tuple or frozenset."""
    return dataclasses.field(default=default, metadata={"reason": reason, "result": f"{RESULTS_DETAILS}/{result}"})


def describe(settings: Any) -> list[tuple[str, Any, str, str]]:
    """(name, value, reason, result page) for every field of a settings instance or class."""
    values = settings if not isinstance(settings, type) else None
    return [(f.name, getattr(values, f.name) if values is not None else f.default, f.metadata.get("reason", ""),
             f.metadata.get("result", "")) for f in dataclasses.fields(settings)]
