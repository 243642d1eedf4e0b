"""eval-qa: the question files, answer matching, what counts as retrieved, rows per mode, the CLI."""
import json
import re

import pytest

from conftest import ASSETS, BOOK, ROOT
from longmem_core.answer import answer as answers
from longmem_core.evals import eval_qa
from longmem_core.memory.memory_bank import ChunkInfo
from longmem_core.model.model import Retrieved
from test_cli import run

SHIPPED = ASSETS / "qa_time_machine.jsonl"
SHIPPED_MAX_CHARS = 60_000  # every shipped answer is stated in the book's first 60,000 characters


def test_shipped_questions_are_answered_in_the_book():
    qs = eval_qa.read_questions(SHIPPED)
    assert len(qs) >= 10
    text = BOOK.read_text(encoding="utf-8")[:SHIPPED_MAX_CHARS]
    for q in qs:
        assert eval_qa.contains_any(text, q["answers"]), q


@pytest.mark.parametrize("path", sorted((ROOT / "data" / "qa").glob("*.jsonl")), ids=lambda p: p.name)
def test_question_sets_are_well_formed(path):
    qs = eval_qa.read_questions(path)
    assert all(q.get("book") and q.get("max_chars") for q in qs)  # each names its book and the prefix it needs
    assert len({q["question"] for q in qs}) == len(qs)


def books_dir():
    """The project's books (``$LONGMEM_BOOKS``, else ``../shared/data/books`` beside the repository), or None."""
    import os
    from pathlib import Path
    for d in (os.environ.get("LONGMEM_BOOKS"), ROOT.parent / "shared" / "data" / "books"):
        if d and Path(d).is_dir():
            return Path(d)
    return None


@pytest.mark.parametrize("path", sorted((ROOT / "data" / "qa").glob("*.jsonl")), ids=lambda p: p.name)
def test_question_set_answers_are_in_their_book(path):
    """Every answer (one of its strings) is stated in the first ``max_chars`` characters of its book."""
    books = books_dir()
    if books is None:
        pytest.skip("the books are not here (set LONGMEM_BOOKS)")
    for q in eval_qa.read_questions(path):
        text = (books / f"{q['book']}.txt").read_text(encoding="utf-8")[:q["max_chars"]]
        assert eval_qa.contains_any(text, q["answers"]), q


def test_bad_question_files(tmp_path):
    f = tmp_path / "q.jsonl"
    for body, msg in (('{"question": "q"}\n', ":1: needs"), ("not json\n", ":1: not JSON"),
                      ('{"question": "q", "answers": []}\n', "needs"), ("\n", "no questions")):
        f.write_text(body, encoding="utf-8")
        with pytest.raises(ValueError, match=msg):
            eval_qa.read_questions(f)


def test_contains_any_is_case_insensitive():
    assert eval_qa.contains_any("He married IRENE ADLER.", ["Irene Adler"])
    assert not eval_qa.contains_any("He married.", ["Irene", "Adler"])
    assert eval_qa.contains_any("we got six\nthousand dollars", ["six thousand"])  # a line break inside


def chunk(doc, start, end):
    return Retrieved(ChunkInfo(0, eval_qa.SOURCE, 0, 1, start, end, doc[start:end]), 1.0)


def test_retrieved_text_is_the_context_or_the_passages_around_chunks():
    doc = "one two three four five six seven eight nine ten"
    ans = answers.Answer("m", "x", [chunk(doc, 14, 18)])  # 'four'
    assert eval_qa.retrieved_text(doc, ans, 0) == "four"
    assert eval_qa.retrieved_text(doc, ans, 5) == "three four five"  # widened to whole words
    assert eval_qa.retrieved_text(doc, answers.Answer("m", "x", [chunk(doc, 14, 18)], context="ten"), 5) == "ten"
    other = Retrieved(ChunkInfo(0, "elsewhere", 0, 1, 0, 3, "one"), 1.0)
    assert eval_qa.retrieved_text(doc, answers.Answer("m", "x", [other]), 5) == ""


def test_rows_per_mode(make_model, monkeypatch):
    """Every mode (a new one too) gets a row; an oracle mode that quotes the answer's passage scores 1."""
    doc = BOOK.read_text(encoding="utf-8")[:10_000]  # Newcomb at 4128, Hastings at 8797
    questions = [{"question": "Who expounded four-dimensional geometry in New York?", "answers": ["Newcomb"]},
                 {"question": "Which battle could one verify?", "answers": ["Hastings"]}]
    real = answers.answer

    def answer(model, bank, question, *, mode=answers.DEFAULT_MODE, max_new_tokens=64, search_top=6):
        if mode != "oracle":
            return real(model, bank, question, mode=mode, max_new_tokens=max_new_tokens, search_top=search_top)
        word = "Newcomb" if "New York" in question else "Hastings"
        i = doc.find(word)
        return answers.Answer(mode, f"It was {word}.", [], context=doc[max(0, i - 50):i + 50])
    monkeypatch.setattr(answers, "MODES", (*answers.MODES, "oracle"))
    monkeypatch.setattr(answers, "answer", answer)
    model = make_model("tiny", capacity=64)
    modes = eval_qa.parse_modes(None)
    seen = []
    rows, records = eval_qa.evaluate(model, doc, questions, modes, search_top=3, max_new_tokens=4, on_record=seen.append)
    assert seen == records  # each record handed out as soon as it is complete (--records-out)
    assert [r["mode"] for r in rows] == modes and all(r["n"] == 2 for r in rows)
    by = {r["mode"]: r for r in rows}
    assert by["oracle"]["accuracy"] == 1.0 and by["oracle"]["retrieval_recall"] == 1.0
    assert by["bm25"]["accuracy"] is None and by["bm25"]["retrieval_recall"] == 1.0  # rare words: BM25 finds them
    assert by["backbone"]["retrieval_recall"] == 0.0
    assert len(records) == 2 and set(records[0]["modes"]) == set(modes)


def test_cli_json(tmp_path):
    proc = run("eval-qa", "--text", str(BOOK), "--questions", str(SHIPPED), "--max-chars", "3000", "--limit", "2",
               "--max-new-tokens", "4", "--backbone", "tiny-llama", "--json")
    out = json.loads(proc.stdout)
    assert out["default_mode"] == answers.DEFAULT_MODE and out["chars"] == 3000
    assert {r["mode"] for r in out["rows"]} == {*answers.MODES, "bm25"}
    assert all(set(r) >= {"mode", "accuracy", "retrieval_recall", "n"} and r["n"] == 2 for r in out["rows"])
    assert re.match(r"python -m longmem_core eval-qa --text \S+ --questions \S+ --max-chars 3000", out["command"])
    proc = run("eval-qa", "--text", str(BOOK), "--questions", str(tmp_path / "none.jsonl"), "--backbone",
               "tiny-llama", check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("error:") and "Traceback" not in proc.stderr


def test_the_document_is_read_under_its_name_as_the_app_reads_it(make_model, monkeypatch):
    """Read-back lines carry the source's name: the command reads the document under its file's name, as the app
    does (evaluate's default, for a document given as a string, is SOURCE)."""
    doc = BOOK.read_text(encoding="utf-8")[:3_000]
    names = []
    real = answers.answer

    def answer(model, bank, question, **kw):
        names.append(bank.sources[0]["name"])
        return real(model, bank, question, **kw)
    monkeypatch.setattr(answers, "answer", answer)
    questions = [{"question": "Who explained?", "answers": ["Time Traveller"]}]
    eval_qa.evaluate(make_model("tiny", capacity=64), doc, questions, ["read_back"], search_top=2, max_new_tokens=2,
                     source="the_time_machine.txt")
    assert names == ["the_time_machine.txt"]
    eval_qa.evaluate(make_model("tiny", capacity=64), doc, questions, ["read_back"], search_top=2, max_new_tokens=2)
    assert names[-1] == eval_qa.SOURCE


def test_searches_run_a_read_back_mode_with_another_search(make_model, monkeypatch):
    """--searches model,bm25: the default mode also reads back from the memory's own search and from BM25 alone,
    in rows of their own, each with what it really searched."""
    doc = BOOK.read_text(encoding="utf-8")[:10_000]
    questions = [{"question": "Who expounded four-dimensional geometry in New York?", "answers": ["Newcomb"]}]
    used = []
    real = answers.answer

    def answer(model, bank, question, **kw):
        used.append((kw.get("mode"), kw.get("search_with")))
        return real(model, bank, question, **kw)
    monkeypatch.setattr(answers, "answer", answer)
    model = make_model("tiny", capacity=64)
    rows, records = eval_qa.evaluate(model, doc, questions, ["backbone", "quote"], search_top=3, max_new_tokens=4,
                                     searches=("model", "hybrid", "bm25"))
    names = [r["mode"] for r in rows]
    assert names == ["backbone", "quote", "quote[model]", "quote[bm25]"]  # its own search is not run twice
    assert ("quote", "bm25") in used and ("quote", "model") in used and ("backbone", "model") not in used
    assert records[0]["modes"]["quote[bm25]"]["retrieved"]  # BM25 alone finds the rare name's passage


def test_searches_refuses_an_unknown_search(tmp_path):
    proc = run("eval-qa", "--text", str(BOOK), "--questions", str(SHIPPED), "--searches", "model,vector",
               "--backbone", "tiny-llama", check=False)
    assert proc.returncode == 2 and "unknown search 'vector'" in proc.stderr
