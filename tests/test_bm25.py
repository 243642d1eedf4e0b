"""The BM25 baseline: ranking by shared words, passages and chunk units over the exact source text."""
import pytest

from conftest import BOOK
from longmem_core.evals.bm25 import BM25, Unit, chunk_units, passage_span, passage_units


def units(*texts):
    return [Unit(i, i + 1, t) for i, t in enumerate(texts)]


def test_ranks_the_unit_with_the_rare_word_first():
    bm = BM25(units("the cat sat on the mat", "a quiet badger sleeps in the hollow", "the cat and the dog"))
    assert bm.search("Where does the badger sleep?", 2)[0].text.startswith("a quiet badger")
    assert len(bm.search("cat", 5)) == 2  # units without a shared word are not returned


def test_stop_words_or_unknown_words_return_nothing():
    bm = BM25(units("the cat sat", "a dog ran"))
    assert bm.search("the of and", 3) == [] and bm.search("zebra", 3) == []
    with pytest.raises(ValueError):
        BM25([])


@pytest.mark.parametrize("size", [1, 50, 400])
def test_passages_cover_the_text_at_word_boundaries(size):
    text = BOOK.read_text(encoding="utf-8")[:5000]
    ps = passage_units(text, size)
    assert " ".join(p.text for p in ps).split() == text.split()  # every word, in order, once
    for p in ps:
        assert text[p.char_start:p.char_end] == p.text
        assert p.char_end == len(text) or text[p.char_end].isspace()
        assert p.char_end - p.char_start >= min(size, len(text) - p.char_start)


def test_passage_span_widens_to_whole_words():
    text = "alpha beta gamma delta epsilon"
    assert passage_span(text, 12, 14, 3) == (6, 22)  # 'mm' of gamma, +-3 chars -> 'beta gamma delta'
    assert passage_span(text, 0, 3, 100) == (0, len(text))


def test_chunk_units_are_the_banks_chunks(make_model, book_text):
    model = make_model("tiny", capacity=4096)
    bank = model.new_bank()
    text = book_text[:600]
    model.memorize(text, bank, source="book")
    us = chunk_units(bank, "book")
    assert len(us) == bank.n_chunks and all(text[u.char_start:u.char_end] == u.text for u in us)
    assert chunk_units(bank, "other") == []
