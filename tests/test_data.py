import io

import pytest

from longmem_core import DocumentError, read_document, read_labelled
from pdf_util import make_pdf


def test_reads_utf8_text_and_normalises_line_ends(tmp_path):
    p = tmp_path / "a.txt"
    p.write_bytes("\ufeffHello\r\nworld – café\r\n".encode("utf-8"))
    doc = read_document(p)
    assert doc.name == "a.txt" and doc.text == "Hello\nworld – café\n"


def test_reads_markdown(tmp_path):
    p = tmp_path / "notes.md"
    p.write_text("# Title\n\nbody", encoding="utf-8")
    assert read_document(p).text.startswith("# Title")


def test_reads_pdf_text_layer(tmp_path):
    p = tmp_path / "book.pdf"
    p.write_bytes(make_pdf(["The pass key is 4071.", "Second line here."]))
    text = read_document(p).text
    assert "The pass key is 4071." in text and "Second line here." in text


@pytest.mark.parametrize("name,data,message", [
    ("empty.txt", b"", "empty"),
    ("blank.txt", b"  \n\n ", "empty"),
    ("binary.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
    ("latin1.txt", "café".encode("latin-1"), "not UTF-8"),
    ("image.png", b"\x89PNG", "unsupported file type"),
    ("corrupt.pdf", b"%PDF-1.4 this is not really a pdf", "not a readable PDF"),
    ("fake.pdf", b"just text", "not a readable PDF"),
])
def test_bad_files_get_one_clear_error(tmp_path, name, data, message):
    p = tmp_path / name
    p.write_bytes(data)
    with pytest.raises(DocumentError, match=message) as info:
        read_document(p)
    assert "\n" not in str(info.value)


def test_encrypted_pdf_is_refused(tmp_path):
    from pypdf import PdfReader, PdfWriter
    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(make_pdf(["secret"]))).pages:
        writer.add_page(page)
    writer.encrypt("pw")
    p = tmp_path / "locked.pdf"
    with open(p, "wb") as fh:
        writer.write(fh)
    with pytest.raises(DocumentError, match="encrypted"):
        read_document(p)


def test_pdf_without_text_layer_is_refused(tmp_path):
    p = tmp_path / "scan.pdf"
    p.write_bytes(make_pdf([]))
    with pytest.raises(DocumentError, match="no text layer"):
        read_document(p)


def test_missing_file_and_size_limit(tmp_path):
    with pytest.raises(DocumentError, match="no such file"):
        read_document(tmp_path / "nope.txt")
    p = tmp_path / "big.txt"
    p.write_text("x" * 2000)
    with pytest.raises(DocumentError, match="over the limit"):
        read_document(p, max_bytes=1000)


def test_labelled_sets(tmp_path):
    (tmp_path / "a.csv").write_text('text,label\n"good, fun",positive\nbad,negative\n', encoding="utf-8")
    (tmp_path / "a.tsv").write_text("text\tlabel\nok\tpositive\n", encoding="utf-8")
    (tmp_path / "a.jsonl").write_text('{"text": "x", "label": "y"}\n\n', encoding="utf-8")
    assert read_labelled(tmp_path / "a.csv") == [("good, fun", "positive"), ("bad", "negative")]
    assert read_labelled(tmp_path / "a.tsv") == [("ok", "positive")]
    assert read_labelled(tmp_path / "a.jsonl") == [("x", "y")]
    (tmp_path / "b.csv").write_text("sentence,score\nx,1\n", encoding="utf-8")
    with pytest.raises(DocumentError, match="'text' or 'label'|'label'"):
        read_labelled(tmp_path / "b.csv")


@pytest.mark.parametrize("name,data,message", [
    ("bin.csv", b"\x00\x01\x02text,label", "binary"),
    ("short.csv", b"text,label\nonly text\n", "row 1 has no label"),
    ("bad.jsonl", b'{"text": "a", "label": "b"}\n{oops\n', "malformed"),
    ("list.jsonl", b'["a", "b"]\n', "no rows"),
    ("big.csv", b"text,label\n" + b"x,y\n" * 100, "over the limit"),
])
def test_bad_labelled_files(tmp_path, name, data, message):
    p = tmp_path / name
    p.write_bytes(data)
    with pytest.raises(DocumentError, match=message):
        read_labelled(p, max_bytes=300)
