"""PDFs with a real text layer, written by hand (no PDF writer needed): one page of lines (``make_pdf``), or
many pages (``make_pages_pdf``) of text wrapped into lines (``wrap``) and cut into pages (``paginate``).

Text is written in Helvetica with the WinAnsi encoding (cp1252), so book punctuation such as curly quotes and
dashes survives the round trip through a PDF reader; a character outside cp1252 becomes "?"."""
from __future__ import annotations

import textwrap

PAGE_WIDTH, PAGE_HEIGHT = 612, 792  # US Letter, in points
MARGIN = 72  # points from the left and top edges to the first line


def escape(line: str) -> str:
    """A line as a PDF literal string's body (backslash and parentheses escaped)."""
    return line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def page_content(lines: list[str], font_size: int = 12, leading: int = 14) -> bytes:
    """The content stream of one page: each line on its own baseline, top to bottom."""
    body = " ".join(f"({escape(line)}) '" for line in lines)
    text = f"BT /F1 {font_size} Tf {MARGIN} {PAGE_HEIGHT - MARGIN} Td {leading} TL {body} ET"
    return text.encode("cp1252", errors="replace")


def make_pages_pdf(pages: list[list[str]], font_size: int = 12, leading: int = 14) -> bytes:
    """A PDF of ``pages`` (each a list of lines) with a text layer a reader extracts line by line.

    Objects: 1 catalog, 2 page tree, 3 the font, then per page its page object and its content stream."""
    pages = pages or [[]]
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(len(pages)))
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    for i, lines in enumerate(pages):
        content = page_content(lines, font_size, leading)
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {PAGE_WIDTH} {PAGE_HEIGHT}] "
                       f"/Contents {5 + 2 * i} 0 R /Resources << /Font << /F1 3 0 R >> >> >>".encode())
        objects.append(f"<< /Length {len(content)} >>\nstream\n".encode() + content + b"\nendstream")
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, obj in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + obj + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def make_pdf(lines: list[str]) -> bytes:
    """A one-page PDF of ``lines``."""
    return make_pages_pdf([lines])


def wrap(text: str, width: int = 80) -> list[str]:
    """``text`` as lines of at most ``width`` characters: each paragraph (blank-line separated) wrapped on its
    own, an empty line between paragraphs."""
    lines: list[str] = []
    for paragraph in text.split("\n\n"):
        words = " ".join(paragraph.split())
        if words:
            lines += textwrap.wrap(words, width, break_on_hyphens=False) + [""]
    return lines[:-1]


def paginate(lines: list[str], per_page: int = 46) -> list[list[str]]:
    """``lines`` cut into pages of ``per_page`` lines (a page break every ``per_page`` lines)."""
    return [lines[i:i + per_page] for i in range(0, len(lines), per_page)] or [[]]


def label_pages(data: bytes, roman: int) -> bytes:
    """``data`` (a PDF) with page labels as a book prints them: the first ``roman`` pages i, ii, ..., the rest
    1, 2, ... (pypdf writes the labels)."""
    import io

    from pypdf import PdfReader, PdfWriter
    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(data)).pages:
        writer.add_page(page)
    n = len(writer.pages)
    if roman:
        writer.set_page_label(0, roman - 1, style="/r")
    if roman < n:
        writer.set_page_label(roman, n - 1, style="/D")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
