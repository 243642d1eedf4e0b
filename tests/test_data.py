import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from longmem_core import DocumentError, read_document, read_labelled
from longmem_core.documents.data import check_labels, decode_text
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
    ("deep.jsonl", b'{"text": ' + b"[" * 50_000 + b"]" * 50_000 + b', "label": "a"}\n', "nested too deeply"),
    ("deep.json", b"[" * 200 + b"]" * 200 + b"\n", "no rows"),
    ("quote.csv", b'text,label\n"good movie,positive\nbad,negative\n', 'unterminated quote: the " opened in row 1'),
    ("quote2.csv", b'text,label\nfine,positive\n"bad,negative\n', "opened in row 2 is never closed"),
    ("header.csv", b'"\n"\n ', "no 'text' or 'label' column"),  # a line break inside a column name
])
def test_bad_labelled_files(tmp_path, name, data, message):
    p = tmp_path / name
    p.write_bytes(data)
    with pytest.raises(DocumentError, match=message) as info:
        read_labelled(p, max_bytes=300 if name == "big.csv" else None)
    assert "\n" not in str(info.value)


def test_quoted_fields_keep_their_line_breaks_and_lenient_quotes_still_read(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text('text,label\n"two\nlines",positive\n"a"b,negative\n', encoding="utf-8")
    assert read_labelled(p) == [("two\nlines", "positive"), ("ab", "negative")]


def test_a_single_class_is_refused_by_the_shared_check(tmp_path):
    p = tmp_path / "one.csv"
    p.write_text("text,label\ngood,positive\nfine,positive\nblank, \n", encoding="utf-8")
    assert len(read_labelled(p)) == 3  # reading alone does not judge the classes
    with pytest.raises(DocumentError, match="at least 2 different labels"):
        read_labelled(p, min_classes=2)
    with pytest.raises(DocumentError, match="at least 2 different labels"):
        check_labels([("a", "x"), ("b", "x"), ("", "y")], "set")  # a label on a blank text does not count
    check_labels([("a", "x"), ("b", "y")], "set")


def _two_page_pdf(path, first: list[str], second: list[str]):
    from pypdf import PdfReader, PdfWriter
    writer = PdfWriter()
    for lines in (first, second):
        writer.add_page(PdfReader(io.BytesIO(make_pdf(lines))).pages[0])
    with open(path, "wb") as f:
        writer.write(f)


def test_pdf_pages_are_character_offsets_of_each_page(tmp_path):
    p = tmp_path / "two.pdf"
    _two_page_pdf(p, ["First page text."], ["Second page: the pass key is 4071."])
    doc = read_document(p)
    assert doc.pages is not None and len(doc.pages) == 2 and doc.pages[0] == 0
    assert doc.text[doc.pages[1]:].startswith("Second page")
    assert doc.text[:doc.pages[1]].strip() == "First page text."
    assert read_document(_write(tmp_path / "a.txt", b"plain")).pages is None


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


# -- property-based: any bytes either read or give one DocumentError line --

@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400))
def test_decode_text_returns_or_raises_document_error(data):
    try:
        text = decode_text(data, "f.txt")
    except DocumentError as exc:
        assert "\n" not in str(exc)
    else:
        assert "\r" not in text


_CELL = st.text(alphabet=st.sampled_from('ab,;"\t\n\r{}[]:\\ é'), max_size=12)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(suffix=st.sampled_from([".csv", ".tsv", ".jsonl"]), body=st.one_of(
    st.binary(max_size=300),
    st.lists(st.tuples(_CELL, _CELL), max_size=6).map(
        lambda rows: ("text,label\n" + "".join(f"{a},{b}\n" for a, b in rows)).encode()),
    st.lists(st.dictionaries(st.sampled_from(["text", "label", "x"]), _CELL, max_size=3), max_size=5).map(
        lambda rows: "\n".join(json.dumps(r) for r in rows).encode()),
))
def test_read_labelled_returns_pairs_or_raises_document_error(tmp_path, suffix, body):
    p = tmp_path / f"set{suffix}"
    p.write_bytes(body)
    try:
        pairs = read_labelled(p, min_classes=2)
    except DocumentError as exc:
        assert "\n" not in str(exc)
    else:
        assert pairs and all(isinstance(t, str) and isinstance(label, str) for t, label in pairs)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.binary(min_size=1, max_size=6)), min_size=1,
                      max_size=5),
       cut=st.none() | st.floats(0.1, 1))
def test_damaged_pdfs_read_or_raise_document_error(tmp_path, edits, cut):
    data = bytearray(make_pdf(["The pass key is 4071.", "Second line here."]))
    for where, patch in edits:
        at = int(where * len(data))
        data[at:at + len(patch)] = patch
    if cut is not None:
        data = data[:int(cut * len(data))]
    p = tmp_path / "x.pdf"
    p.write_bytes(bytes(data))
    try:
        doc = read_document(p)
    except DocumentError as exc:
        assert "\n" not in str(exc)
    else:
        assert doc.text.strip() and doc.pages and doc.pages[0] == 0
