"""Training text: .txt files (or folders of them), tokenized whole."""
from __future__ import annotations

from pathlib import Path


def text_files(paths: list[str]) -> list[Path]:
    """The .txt files named, folders expanded (sorted); an error for a missing path or no file at all."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(p.glob("*.txt")))
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    if not files:
        raise FileNotFoundError(f"no .txt files in {paths}")
    return files


def book_ids(tokenizer, path: str | Path) -> list[int]:
    """The token ids of a whole text file (no special tokens)."""
    return tokenizer(Path(path).read_text(encoding="utf-8"), add_special_tokens=False)["input_ids"]
