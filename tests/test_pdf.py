"""Reading PDFs: page labels as printed, line-end hyphens joined only where the document spells the word whole."""
import io

from pypdf import PdfReader, PdfWriter

from longmem_core.documents.data import read_document
from longmem_core.documents.pdf import _clean, join_hyphens
from pdf_util import make_pdf


def _labelled_pdf(path, pages: list[list[str]]):
    """A PDF whose first two pages are labelled i, ii and the rest 1, 2, ..."""
    writer = PdfWriter()
    for lines in pages:
        writer.add_page(PdfReader(io.BytesIO(make_pdf(lines))).pages[0])
    writer.set_page_label(0, 1, style="/r")
    writer.set_page_label(2, len(pages) - 1, style="/D")
    with open(path, "wb") as f:
        writer.write(f)


def test_page_labels_are_the_printed_ones(tmp_path):
    p = tmp_path / "manual.pdf"
    _labelled_pdf(p, [["Title page"], ["Contents"], ["Chapter one text."], ["The pass key is 4071."]])
    doc = read_document(p)
    assert doc.page_labels == ["i", "ii", "1", "2"]
    assert doc.text[doc.pages[3]:].startswith("The pass key is 4071.")


def test_pdf_without_labels_numbers_its_pages(tmp_path):
    p = tmp_path / "plain.pdf"
    p.write_bytes(make_pdf(["One page."]))
    assert read_document(p).page_labels == ["1"]


def test_line_end_hyphens_join_only_words_the_document_spells_whole():
    pages = ["The Soft-\nware is free. Software matters.", "Do not over-\nstrain others."]
    assert join_hyphens(pages) == ["The Software is free. Software matters.", "Do not over-strain others."]


def test_soft_hyphens_keep_the_hyphen_of_a_compound_the_document_spells_with_one():
    # PDFium marks every line-end break "\ufffe", a compound broken at its own hyphen too ("S-Plus")
    raw = ["notes on S and S\ufffe\nPlus, and a hyphen\ufffe\nated word.", "The S-Plus system is hyphenated."]
    assert join_hyphens([_clean(p) for p in raw]) == ["notes on S and S-Plus, and a hyphenated word.",
                                                        "The S-Plus system is hyphenated."]
    # with no hyphenated spelling elsewhere the break is joined, as PDFium marked it
    assert join_hyphens([_clean("a non\ufffenumeric value")]) == ["a nonnumeric value"]


def test_page_labels_reach_retrieved_chunks(tmp_path, make_model):
    p = tmp_path / "manual.pdf"
    _labelled_pdf(p, [["Title page"], ["Contents"], ["Chapter one text."], ["The pass key is 4071."]])
    doc = read_document(p)
    model = make_model("tiny", capacity=1024)
    bank = model.new_bank()
    model.memorize(doc.text, bank, source=doc.name, pages=doc.pages, page_labels=doc.page_labels)
    last = bank.chunk_info(bank.first_id + bank.n_chunks - 1)
    assert (last.page, last.page_label) == (4, "2")
    first = bank.chunk_info(bank.first_id)
    assert (first.page, first.page_label) == (1, "i")


def test_latex_protect_leaked_around_a_placeholder_reads_as_its_angle_brackets():
    raw = "protrusion true, false, protect <font set nameprotect > * true"
    assert _clean(raw) == "protrusion true, false, \u27e8font set name\u27e9 * true"
    assert _clean("We protect our data.") == "We protect our data."
