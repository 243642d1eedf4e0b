"""Where the library finds the files it ships: the default SideNet checkpoint and the default book.

In the checkout they live in ``assets/`` at the repository root (the app and the tests read them there too);
``pip install .`` copies the ones the library reads into the installed package as ``longmem_core/_assets/``
(pyproject.toml). Evaluation data (``data/``), the bench's results files and the app stay in the checkout.
"""
from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
_INSTALLED_ASSETS = PACKAGE / "_assets"
ASSETS = _INSTALLED_ASSETS if _INSTALLED_ASSETS.is_dir() else PACKAGE.parent / "assets"
DEFAULT_BOOK = ASSETS / "the_time_machine.txt"  # the text the commands and evaluations read when given none
