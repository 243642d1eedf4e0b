"""Reading documents (txt, md, pdf) and demonstration sets into plain text, with clear errors."""
from __future__ import annotations

import codecs
import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".text")
PDF_SUFFIXES = (".pdf",)
MAX_CONTROL_SHARE = 0.01  # a "text" file with more control characters than this is treated as binary
BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),  # UTF-32 first: its LE mark
        (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))  # starts with UTF-16 LE's


class DocumentError(ValueError):
    """A file cannot be read as a document; the message says why, in one line."""


@dataclass
class Document:
    name: str
    text: str
    pages: list[int] | None = None  # character offset in ``text`` where each page starts (a PDF), else None
    page_labels: list[str] | None = None  # each page's printed label ("iv", "38"; a PDF), else None


def read_document(path: str | os.PathLike, max_bytes: int | None = None) -> Document:
    """Read a .txt/.md (UTF-8) or .pdf file into text. Raises DocumentError for anything unreadable."""
    path = Path(path)
    if not path.exists():
        raise DocumentError(f"{path}: no such file")
    if not path.is_file():
        raise DocumentError(f"{path}: not a file")
    size = path.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise DocumentError(f"{path.name}: {size / 1e6:.1f} MB is over the limit of {max_bytes / 1e6:.1f} MB")
    suffix = path.suffix.lower()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DocumentError(f"{path}: cannot read ({exc.strerror})") from exc
    pages = labels = None
    if suffix in PDF_SUFFIXES:
        text, pages, labels = pdf_pages(data, path.name)
    elif suffix in TEXT_SUFFIXES:
        text = decode_text(data, path.name)
    else:
        raise DocumentError(f"{path.name}: unsupported file type {suffix or '(none)'}; use .txt, .md or .pdf")
    if not text.strip():
        raise DocumentError(f"{path.name}: the document is empty")
    return Document(name=path.name, text=text, pages=pages, page_labels=labels)


def decode_text(data: bytes, name: str) -> str:
    """UTF-8 text, or UTF-16/32 text that starts with its byte-order mark (the BOM is dropped, line ends
    normalised); binary data is refused."""
    bom, encoding = next(((b, e) for b, e in BOMS if data.startswith(b)), (b"", "utf-8-sig"))
    if not bom and b"\x00" in data[:65536]:  # UTF-16/32 without a BOM is refused as binary too
        raise DocumentError(f"{name}: looks like a binary file, not text")
    try:
        text = data[len(bom):].decode(encoding)
    except UnicodeDecodeError as exc:
        if bom:  # bytes that only start like a byte-order mark
            raise DocumentError(f"{name}: looks like a binary file, not text (not {encoding.upper()} after its "
                                "byte-order mark)") from exc
        raise DocumentError(f"{name}: not UTF-8 text (bad byte at offset {exc.start})") from exc
    sample = text[:65536]
    control = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\n\r\t\f")
    if sample and control / len(sample) > MAX_CONTROL_SHARE:
        raise DocumentError(f"{name}: looks like a binary file, not text")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def pdf_text(data: bytes, name: str) -> str:
    """The text layer of a PDF, pages separated by blank lines."""
    return pdf_pages(data, name)[0]


def pdf_pages(data: bytes, name: str) -> tuple[str, list[int], list[str]]:
    """The text layer of a PDF (``pdf.read_pdf``), pages separated by blank lines, the character offset where each
    page starts, and each page's printed label."""
    from .pdf import PdfError, read_pdf
    try:
        pdf = read_pdf(data)
    except PdfError as exc:
        raise DocumentError(f"{name}: {exc}") from exc
    text = "\n\n".join(pdf.pages)
    if not text.strip():
        raise DocumentError(f"{name}: the PDF has no text layer (scanned images?)")
    starts = [0]
    for page in pdf.pages[:-1]:
        starts.append(starts[-1] + len(page) + 2)  # the page and the blank line after it
    return text, starts, pdf.labels


def read_labelled(path: str | os.PathLike, text_column: str = "text", label_column: str = "label",
                  max_bytes: int | None = None, min_classes: int = 1) -> list[tuple[str, str]]:
    """(text, label) pairs from a CSV, TSV or JSONL file with text and label columns.

    Raises DocumentError (one line) for a missing, oversized, binary or malformed file, a missing column,
    a row without a text or label, or (``min_classes`` > 1) too few different labels (``check_labels``)."""
    path = Path(path)
    if not path.is_file():
        raise DocumentError(f"{path}: no such file")
    if max_bytes is not None and path.stat().st_size > max_bytes:
        raise DocumentError(f"{path.name}: {path.stat().st_size / 1e6:.1f} MB is over the limit of {max_bytes / 1e6:.1f} MB")
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".json", ".csv", ".tsv"):
        raise DocumentError(f"{path.name}: unsupported file type {suffix}; use .csv, .tsv or .jsonl")
    text = decode_text(path.read_bytes(), path.name)  # refuses binary and non-UTF-8 files
    try:
        if suffix in (".jsonl", ".json"):
            lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
            rows = [json.loads(line) for _, line in lines]
        else:
            rows = _csv_rows(text, "\t" if suffix == ".tsv" else ",", path.name)
    except (json.JSONDecodeError, csv.Error) as exc:
        raise DocumentError(f"{path.name}: malformed {suffix[1:].upper()} ({exc})".splitlines()[0]) from exc
    except RecursionError as exc:  # json nests arrays/objects by recursion
        raise DocumentError(f"{path.name}: malformed {suffix[1:].upper()} (values nested too deeply)") from exc
    if not rows or not all(isinstance(r, dict) for r in rows):
        raise DocumentError(f"{path.name}: no rows of named columns")
    missing = [c for c in (text_column, label_column) if c not in rows[0]]
    if missing:
        columns = " ".join(", ".join(map(str, rows[0])).split())[:200]  # one line, whatever the header holds
        raise DocumentError(f"{path.name}: no {' or '.join(repr(m) for m in missing)} column (columns: {columns})")
    pairs = []
    for n, r in enumerate(rows, 1):
        t, label = r.get(text_column), r.get(label_column)
        if t is None or label is None:
            raise DocumentError(f"{path.name}: row {n} has no {text_column if t is None else label_column}")
        nested = next((c for c, v in ((text_column, t), (label_column, label)) if isinstance(v, (dict, list))), None)
        if nested:  # str() would make labels like "{'neg': True}"
            where = f"line {lines[n - 1][0]}" if suffix in (".jsonl", ".json") else f"row {n}"
            raise DocumentError(f"{path.name}: {where}: {nested!r} is a nested value ({type(r[nested]).__name__}); "
                                "give a text or a number")
        pairs.append((str(t), str(label)))
    if min_classes > 1:
        check_labels(pairs, path.name, min_classes)
    return pairs


def check_labels(pairs: list[tuple[str, str]], name: str, min_classes: int = 2) -> None:
    """DocumentError unless the rows with a text and a label (neither blank) hold at least ``min_classes``
    different labels: a classifier needs classes to choose from (the one rule of the app and ``eval-icl``)."""
    labels = {label for text, label in pairs if text.strip() and label.strip()}
    if len(labels) < min_classes:
        raise DocumentError(f"{name}: demonstrations need at least {min_classes} different labels "
                            f"(found {len(labels)})")


def _csv_rows(text: str, delimiter: str, name: str) -> list[dict]:
    """Rows of a CSV/TSV text with a header line; a quote never closed is named as such (a lenient reader would
    swallow the rest of the file into one field)."""
    rows: list[dict] = []
    try:
        rows.extend(csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True))
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            raise DocumentError(f'{name}: unterminated quote: the " opened in row {len(rows) + 1} is never closed') from exc
        rows = list(csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter))  # other quirks: as before
    return rows
