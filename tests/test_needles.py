"""The RULER-style needle generator: depths, needle counts, unique values, haystack length in tokens, scoring."""
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import BOOK
from longmem_core.evals import settings as eval_settings
from longmem_core.evals.needles import (NEEDLES_PER_TASK, TASKS, Haystack, even_depths, insert_needles, make_trial,
                                        Needle, spans_overlap, string_match_all)

ASKED = {"single": 1, "multikey": 1, "multivalue": 4, "multiquery": 2}


@pytest.fixture(scope="module")
def haystack(tiny_backbones):
    return Haystack(BOOK.read_text(encoding="utf-8"), tiny_backbones["tiny-llama"].tokenizer)


def test_even_depths_span_zero_to_one():
    assert even_depths(1) == [0.5]
    assert even_depths(2) == [0.0, 1.0]
    d = even_depths(5)
    assert d[0] == 0.0 and d[-1] == 1.0 and all(b - a == pytest.approx(0.25) for a, b in zip(d, d[1:]))


@pytest.mark.parametrize("task", TASKS)
def test_trial_layout(haystack, task):
    rng = random.Random(1)
    for depth in even_depths(4):
        t = make_trial(haystack, task, 1500, depth, rng)
        assert len(t.needles) == NEEDLES_PER_TASK[task] and len(t.asked) == ASKED[task]
        values = [n.value for n in t.needles]
        assert len(set(values)) == len(values) and all(re.fullmatch(r"[1-9]\d{6}", v) for v in values)
        keys = [n.key for n in t.needles]
        assert all(re.fullmatch(r"[a-z]+-[a-z]+", k) for k in keys)
        assert len(set(keys)) == (1 if task == "multivalue" else len(keys))
        assert t.expected == [t.needles[i].value for i in t.asked]
        for n in t.needles:  # each needle is in the document exactly once, where its span says
            assert t.document[n.char_start:n.char_end] == n.text and t.document.count(n.text) == 1
        assert all(t.needles[i].key in t.question for i in t.asked)
        assert not any(v in t.question for v in values)
        depths = sorted(n.depth for n in t.needles)  # spread evenly, the first at the trial's depth
        assert t.needles[0].depth == depth and len(set(depths)) == len(depths)


@settings(max_examples=25, deadline=None)
@given(length=st.integers(400, 4000), depth=st.floats(0, 1), task=st.sampled_from(TASKS), seed=st.integers(0, 99))
def test_length_in_tokens_and_depth(haystack, length, depth, task, seed):
    t = make_trial(haystack, task, length, depth, random.Random(seed))
    assert abs(haystack.count(t.document) - length) <= 2 * len(t.needles)  # needles meet text: a token or two
    first = t.needles[0]
    slack = (eval_settings.NEEDLES.snap_chars + sum(len(n.text) + 2 for n in t.needles)) / len(t.document)
    assert abs(first.char_start / len(t.document) - depth) <= slack
    if depth == 0:
        assert first.char_start == 0
    if depth == 1:
        assert first.char_end == len(t.document)


def test_needles_go_to_sentence_starts():
    filler = "The first sentence is here. A second one follows it. And a third.\n\nA new paragraph."
    n = Needle("rusty-lantern", "1234567", 0.45)
    doc = insert_needles(filler, [n])
    assert doc[n.char_start:n.char_end] == n.text
    assert doc[:n.char_start].endswith(". ") and doc[n.char_end:].startswith(" A second")


def test_too_short_text_is_refused(haystack):
    with pytest.raises(ValueError, match="does not fit"):
        make_trial(haystack, "single", len(haystack) + 100, 0.5, random.Random(0))
    with pytest.raises(ValueError, match="unknown task"):
        make_trial(haystack, "nope", 500, 0.5, random.Random(0))


def test_string_match_all_is_rulers_score():
    assert string_match_all("The numbers are 1234567 and 7654321.", ["1234567", "7654321"]) == 1.0
    assert string_match_all("only 1234567", ["1234567", "7654321", "1111111", "2222222"]) == 0.25
    assert string_match_all("ROUGH-CAT", ["rough-cat"]) == 1.0
    assert string_match_all("", ["1234567"]) == 0.0


def test_spans_overlap_is_half_open():
    assert spans_overlap(0, 5, 4, 9) and spans_overlap(4, 9, 0, 5) and spans_overlap(0, 10, 3, 4)
    assert not spans_overlap(0, 5, 5, 9) and not spans_overlap(5, 9, 0, 5)
