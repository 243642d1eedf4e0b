"""JSON-lines files of records (questions, fact/question pairs), read with line-numbered errors.

Shared by the evaluations (``eval_qa``, ``eval_paraphrase``) and training (``training/search_examples``), so neither
imports the other to read a file.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable


def read_records(path: str | Path, valid: Callable[[dict], bool], needs: str, noun: str) -> list[dict]:
    """The records of a JSON-lines file, each a dict ``valid`` accepts; a malformed line raises ValueError naming its
    line number (and, for a record ``valid`` refuses, the shape it ``needs``); so does a file with no ``noun``."""
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{n}: not JSON ({exc.msg})") from exc
        if not (isinstance(row, dict) and valid(row)):
            raise ValueError(f"{path}:{n}: needs {needs}")
        out.append(row)
    if not out:
        raise ValueError(f"{path}: no {noun}")
    return out


def has_strings(row: dict, keys: tuple[str, ...]) -> bool:
    """Does a record hold a non-empty string under each of ``keys``?"""
    return all(isinstance(row.get(k), str) and bool(row[k].strip()) for k in keys)


def has_answers(row: dict) -> bool:
    """Does a record hold a non-empty list of non-empty answer strings?"""
    return (isinstance(row.get("answers"), list) and bool(row["answers"])
            and all(isinstance(a, str) and a.strip() for a in row["answers"]))
