"""How much a person can send, one limit per kind of input, and the one message every front end shows.

Each kind of text is checked where it enters the library: a question (``check_text`` in the app and the CLI), a
text to classify (``icl.query_prompt``), a demonstration (``icl.format_demonstration``), a file (its size, before
it is read). A prompt is read in one pass whose cost grows with its length, so these bound what one request can
make the process allocate. The app may lower the question limit (``AppSettings.max_question_chars``); rows of a
labelled file are checked with ``check_rows``, whose message names the row.
"""
from __future__ import annotations

import math
from typing import Sequence

MAX_CHARS = {  # characters of one text of each kind
    "question": 2000,
    "text to classify": 2000,  # a test text: read after k demonstrations, in one pass that scores every label
    "demonstration": 1000,  # a labelled example (the longest in the paper's data sets: 691)
}
MAX_PROMPT_TOKENS = 4096  # tokens of a prompt read for scoring (k demonstrations in context, or the text after them)
MAX_FILE_BYTES = 20_000_000  # a document, demonstration set or test file (the app's max_upload_mb default)
MAX_LABEL_CHARS = 32  # a page label longer than this is cut (labels are short: "iv", "A-12")
HINTS = {"question": " Put long text in a document and read it into memory instead."}


class InputError(ValueError):
    """Input a person sent that is over its limit or not what it should be; the message is one line, for the
    user as it is (the app shows it, the CLI prints it as its ``error:`` line)."""


class TooLongError(InputError):
    """A text or file over its limit."""


def check_text(text: str, kind: str, limit: int | None = None) -> str:
    """``text`` unchanged, or TooLongError when it is longer than ``limit`` (default: the kind's own)."""
    limit = MAX_CHARS[kind] if limit is None else limit
    if len(text) > limit:
        raise TooLongError(f"The {kind} is {len(text):,} characters long; the limit is {limit:,}."
                           + HINTS.get(kind, ""))
    return text


def check_prompt_tokens(n_tokens: int) -> None:
    """TooLongError when a prompt to score (``scoring.py``) is over MAX_PROMPT_TOKENS tokens: its caches and what
    reading it retrieves from memory grow with it (~0.4 GB per 4,096 tokens on the default model)."""
    if n_tokens > MAX_PROMPT_TOKENS:
        raise TooLongError(f"The prompt is {n_tokens:,} tokens long; the limit is {MAX_PROMPT_TOKENS:,}. Put fewer "
                           "or shorter demonstrations in context.")


def check_rows(rows: Sequence[tuple[str, object]], kind: str, name: str, limit: int | None = None) -> None:
    """TooLongError naming the file and the first row (from 1) whose text is over the kind's limit."""
    limit = MAX_CHARS[kind] if limit is None else limit
    for n, (text, _) in enumerate(rows, 1):
        if len(text) > limit:
            raise TooLongError(f"{name}: row {n}: the {kind} is {len(text):,} characters long; the limit is "
                               f"{limit:,}.")


def check_file_bytes(size: int, name: str, limit: int | None = MAX_FILE_BYTES) -> None:
    """TooLongError when a file of ``size`` bytes is over ``limit`` (None: no limit)."""
    if limit is not None and size > limit:
        raise TooLongError(f"{name}: {size / 1e6:.1f} MB is over the limit of {limit / 1e6:.1f} MB")


def check_number(value: object, name: str, low: float, high: float, *, integer: bool = False) -> float | int:
    """``value`` as a number within [low, high], or InputError saying what is expected: refuses strings that are
    not numbers, None, booleans, NaN and infinities (``float("nan")`` passes every comparison-based range check)."""
    kind = "a whole number" if integer else "a number"
    bounds, (low, high) = (low, high), (_shown(low), _shown(high))
    if isinstance(value, str):
        try:
            value = int(value) if value.strip().lstrip("+-").isdigit() else float(value.strip())
        except ValueError:
            raise InputError(f"{name} must be {kind} from {low} to {high}, not {value[:40]!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{name} must be {kind} from {low} to {high}, not {str(value)[:40]}")
    if not math.isfinite(value) or not bounds[0] <= value <= bounds[1] or (integer and value != int(value)):
        raise InputError(f"{name} must be {kind} from {low} to {high}, not {value!r:.40}")
    return int(value) if integer else float(value)


def _shown(x: float) -> str:
    """A bound as a person reads it: 1,048,576 and 1.5, not 1.04858e+06."""
    return f"{int(x):,}" if math.isfinite(x) and float(x).is_integer() else f"{x:g}"
