"""The tuned defaults (issue 28): every field of every settings dataclass says why it has its value and links to
the results claim page that measured it; the library and the app cite no dated notes, probes or outside files."""
from __future__ import annotations

import dataclasses
import importlib
import re
from pathlib import Path

import pytest

from longmem_core.tuning import RESULTS_DETAILS, describe, tuned

ROOT = Path(__file__).resolve().parents[1]
SETTINGS_MODULES = sorted(f"longmem_core.{p.parent.name}.settings"
                          for p in (ROOT / "longmem_core").glob("*/settings.py"))


def settings_classes():
    """(module, class) for every dataclass defined in a package's settings.py."""
    found = []
    for name in SETTINGS_MODULES:
        module = importlib.import_module(name)
        found += [(module, c) for c in vars(module).values()
                  if isinstance(c, type) and dataclasses.is_dataclass(c) and c.__module__ == name]
    return found


def test_the_settings_modules_are_found():
    assert {"longmem_core.model.settings", "longmem_core.memory.settings", "longmem_core.documents.settings",
            "longmem_core.answer.settings", "longmem_core.classify.settings",
            "longmem_core.evals.settings"} <= set(SETTINGS_MODULES)
    assert len(settings_classes()) >= 15


@pytest.mark.parametrize("module, cls", settings_classes(), ids=lambda x: getattr(x, "__name__", str(x)))
def test_every_field_has_a_reason_and_a_result_page(module, cls):
    assert cls.__dataclass_params__.frozen, f"{cls.__name__} must be frozen"
    assert cls.__doc__ and not cls.__doc__.startswith(cls.__name__ + "("), f"{cls.__name__} needs a docstring"
    for name, value, reason, result in describe(cls):
        assert reason.strip() and "\n" not in reason and len(reason) <= 160, f"{cls.__name__}.{name}: one-line reason"
        assert result.startswith(RESULTS_DETAILS + "/") and (ROOT / result).is_file(), \
            f"{cls.__name__}.{name}: {result!r} is not a claim page under {RESULTS_DETAILS}/"
        assert not re.search(r"20\d\d-\d\d-\d\d", reason), f"{cls.__name__}.{name}: no dates in a reason"
        assert not isinstance(value, (list, dict, set)), f"{cls.__name__}.{name}: mutable default"
    defaults = [v for v in vars(module).values() if isinstance(v, cls)]
    assert len(defaults) == 1 and defaults[0] == cls(), f"{module.__name__} holds one default {cls.__name__}()"


def test_a_setting_is_changed_by_replace_and_read_at_call_time(monkeypatch):
    from longmem_core.model import search, settings
    monkeypatch.setattr(settings, "SEARCH", dataclasses.replace(settings.SEARCH, spread_tokens=128))

    class Bank:
        chunk_size = 4
    assert search.spread_gap(Bank()) == 32
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.SEARCH.spread_tokens = 1  # type: ignore[misc]


def test_tuned_puts_reason_and_page_in_the_metadata():
    @dataclasses.dataclass(frozen=True)
    class Example:
        """An example."""
        n: int = tuned(3, "three was best", "qa.md")
    assert describe(Example()) == [("n", 3, "three was best", f"{RESULTS_DETAILS}/qa.md")]


CITATIONS = re.compile(r"experiments/|20[0-9]{2}-[0-9]{2}-[0-9]{2}|(?<![\w/])DESIGN\.md")
PENDING: tuple[str, ...] = ()  # none left


def test_runtime_and_app_code_cite_no_dated_notes_probes_or_outside_files():
    files = [p for p in [*(ROOT / "longmem_core").rglob("*.py"), *(ROOT / "app").rglob("*.py"), ROOT / "app.py"]
             if p.is_file() and not str(p.relative_to(ROOT)).startswith(PENDING)]
    found = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}" for p in files
             for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if CITATIONS.search(line)]
    assert not found, "cite docs/results/ or docs/DESIGN.md instead:\n" + "\n".join(found)
