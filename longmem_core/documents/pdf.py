"""Reading a PDF's text layer: words spaced as printed, line-end hyphens joined, and each page's printed label.

The text comes from PDFium (the ``pypdfium2`` wheel): it places spaces from the glyphs' positions, so a PDF
whose words are set apart by position rather than by space characters (common from LaTeX) reads as words, not
"Socialdynamicsof". A word PDFium marks as hyphenated at a line end is joined, unless the document spells it with
its hyphen elsewhere and never without ("S-Plus", "right-hand": TeX breaks a compound at its own hyphen, and PDFium
marks that break too); a plain hyphen at a line end is joined only where the document spells the joined word
elsewhere ("Soft-\\nware" becomes "Software", "over-\\nstrain" stays "over-strain"). Page labels are the numbers
printed on the pages ("iv", "38"), which readers cite.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from ..limits import MAX_LABEL_CHARS

# PDFium is not safe to call from two threads at once (the app reads uploads of several sessions)
_PDFIUM = threading.Lock()
_SOFT_HYPHENS = re.compile("[\ufffe\u0002\u00ad]\r?\n?")  # PDFium's mark of a word broken at a line end
_BROKEN = "\ue000"  # where a soft hyphen was, until ``join_hyphens`` decides (a private-use character)
_LINE_END_HYPHEN = re.compile(r"(\w+)-\n(\w+)")
_SOFT_BREAK = re.compile(rf"(\w+){_BROKEN}(\w+)")
_COMPOUND = re.compile(r"(?<![\w-])(\w+)-(\w+)(?![\w-])")  # "S-Plus" within a line
_WORDS = re.compile(r"\w+")
_UNMAPPED = re.compile("[\x01-\x08\x0b\x0e-\x1f\x7f-\x9f]")
# LaTeX's \protect leaked into a PDF's text for the angle brackets of a placeholder: "protect <font set nameprotect >"
# where the page shows "⟨font set name⟩" (the microtype manual, 177 times)
_LEAKED_ANGLES = re.compile(r"protect ?([<>])")


class PdfError(ValueError):
    """A PDF that cannot be read: encrypted, damaged, or not a PDF (the message says which)."""


@dataclass
class PdfText:
    pages: list[str]  # each page's text (line ends "\n", hyphens joined), stripped
    labels: list[str]  # each page's printed label (its number where the PDF gives none)


def read_pdf(data: bytes) -> PdfText:
    """The text and page labels of a PDF; PdfError when it cannot be read."""
    import pypdfium2 as pdfium
    with _PDFIUM:
        try:
            pdf = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as exc:
            if "password" in str(exc).lower():
                raise PdfError("the PDF is encrypted; remove the password first") from exc
            raise PdfError(f"not a readable PDF ({exc})".splitlines()[0]) from exc
        try:
            pages, labels = [], []
            for i in range(len(pdf)):
                page = pdf[i]
                text = page.get_textpage().get_text_range()
                pages.append(text)
                labels.append(_label(pdf, i))
        except Exception as exc:  # a damaged page can fail in many ways
            raise PdfError(f"not a readable PDF ({type(exc).__name__})") from exc
        finally:
            pdf.close()
    pages = [_clean(p) for p in pages]
    return PdfText(join_hyphens(pages), labels)


def _label(pdf, i: int) -> str:
    """Page ``i``'s printed label, or its 1-based number where the PDF has no labels."""
    try:
        label = pdf.get_page_label(i)
    except Exception:  # noqa: BLE001 - a damaged label tree: fall back to the number
        label = ""
    label = " ".join((label or "").split())[:MAX_LABEL_CHARS]
    return label or str(i + 1)


def _clean(text: str) -> str:
    """One page's raw text: "\\n" line ends, PDFium's soft-hyphen marks joined, no NUL or form feed, LaTeX's leaked
    "protect <name protect >" read as the "⟨name⟩" the page shows."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _SOFT_HYPHENS.sub(_BROKEN, text)
    text = _UNMAPPED.sub(" ", text)  # glyphs with no character (a bullet read as "\x88")
    text = _LEAKED_ANGLES.sub(lambda m: "\u27e8" if m.group(1) == "<" else "\u27e9", text)
    return text.replace("\x00", "").replace("\f", "\n").strip()


def join_hyphens(pages: list[str]) -> list[str]:
    """Pages with every line-end hyphen between two word pieces decided by how the document spells the word
    elsewhere. A plain hyphen is dropped where the joined word occurs (a hyphenation), else kept (a compound word).
    A hyphen PDFium marked soft is dropped unless the hyphenated form occurs and the joined one does not."""
    words = {w.lower() for p in pages for w in _WORDS.findall(p.replace(_BROKEN, " "))}
    compounds = {m.group(0).lower() for p in pages for m in _COMPOUND.finditer(p)}

    def join(m: re.Match) -> str:
        a, b = m.group(1), m.group(2)
        return f"{a}{b}" if (a + b).lower() in words else f"{a}-{b}"

    def soft(m: re.Match) -> str:
        a, b = m.group(1), m.group(2)
        keep = f"{a}-{b}".lower() in compounds and (a + b).lower() not in words
        return f"{a}-{b}" if keep else f"{a}{b}"
    return [_SOFT_BREAK.sub(soft, _LINE_END_HYPHEN.sub(join, p)).replace(_BROKEN, "") for p in pages]
