"""The long-PDF question set (issue 29: ``data/qa/pdf/long_chapters.jsonl``): its shape, and that it asks about
both ends of both manuals, so a run on it speaks to the issue's first-and-last-chapter target."""
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ROOT / "data" / "qa" / "pdf" / "long_chapters.jsonl"


def rows() -> list[dict]:
    return [json.loads(line) for line in QUESTIONS.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_every_question_has_its_answers_page_and_evidence():
    for r in rows():
        assert r["doc"] in {"biblatex.pdf", "memman.pdf"} and r["part"] in {"first", "last", "appendix"}
        assert r["question"].endswith("?") and r["answers"] and all(a.strip() for a in r["answers"])
        assert isinstance(r["page_index"], int) and str(r["page_label"]).strip()
        evidence = " ".join(r["evidence"].split()).lower()
        assert any(" ".join(a.split()).lower() in evidence for a in r["answers"]), r["question"]


def test_both_ends_of_both_manuals_are_asked_about():
    parts = Counter((r["doc"], r["part"]) for r in rows())
    for doc in ("biblatex.pdf", "memman.pdf"):
        assert parts[(doc, "first")] >= 5 and parts[(doc, "last")] >= 5


def test_the_bench_reads_the_set_for_one_pdf():
    sys.path.insert(0, str(ROOT / "scripts"))
    from bench_long_pdf import read_questions
    asked = read_questions(QUESTIONS, "memman.pdf")
    assert [q["part"] for q in asked][:6] == ["first"] * 6 and all(q["answers"] for q in asked)
    assert asked[0]["where"].startswith("first chapter (1 Starting off, page ")


def test_a_quote_cites_a_page_by_its_whole_label():
    sys.path.insert(0, str(ROOT / "scripts"))
    from bench_long_pdf import cites_page
    assert cites_page("memman.pdf, page 3, under \u201c1.2 TYPE SIZE OPTIONS\u201d", "3")
    assert cites_page("\u2014 memman.pdf, page 381", "381") and not cites_page("memman.pdf, page 381", "38")
    assert not cites_page(None, "3") and not cites_page("memman.pdf, page 3", None)
