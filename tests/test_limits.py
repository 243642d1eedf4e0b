"""One limit per kind of input (longmem_core/limits.py), enforced where each kind enters the library (issue 27)."""
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from longmem_core import icl, limits
from longmem_core.limits import MAX_CHARS, TooLongError

DEMOS = [("a fine film", "positive"), ("a dull film", "negative"), ("warm and funny", "positive"),
         ("a tedious mess", "negative")]


def test_every_kind_of_text_has_its_limit_and_one_message():
    assert set(MAX_CHARS) == {"question", "text to classify", "demonstration"}
    for kind, limit in MAX_CHARS.items():
        assert limits.check_text("x" * limit, kind) == "x" * limit
        with pytest.raises(TooLongError, match=f"^The {kind} is {limit + 1:,} characters long; the limit is {limit:,}"):
            limits.check_text("x" * (limit + 1), kind)
    with pytest.raises(TooLongError, match="the limit is 10"):  # a front end may lower a kind's limit
        limits.check_text("x" * 11, "question", 10)


def test_a_test_text_over_its_limit_never_reaches_the_model(tiny_model, monkeypatch):
    """Issue 27, case 1: test texts and demonstrations had no limit (a 1 MB row would need ~100 GB of logits)."""
    def no_model(*args, **kwargs):
        raise AssertionError("the model ran")
    monkeypatch.setattr(type(tiny_model), "forward", no_model)
    long = "a " * MAX_CHARS["text to classify"]
    with pytest.raises(TooLongError, match="text to classify is 4,000 characters"):
        icl.classify(tiny_model, long, ["negative", "positive"], context="")
    with pytest.raises(TooLongError, match="text to classify"):
        icl.query_prompt(icl.SENTIMENT_TEMPLATE, long)


def test_a_demonstration_over_its_limit_is_refused_before_memorizing(tiny_model, monkeypatch):
    bank = tiny_model.new_bank(capacity=1024)
    long = ("x" * (MAX_CHARS["demonstration"] + 1), "positive")
    with pytest.raises(TooLongError, match="demonstration is 1,001 characters"):
        icl.memorize_demonstrations(tiny_model, DEMOS + [long], bank)
    assert len(bank) == 0
    with pytest.raises(TooLongError, match="demonstration"):
        icl.context_text(icl.SENTIMENT_TEMPLATE, [long])


def test_check_rows_names_the_file_and_row():
    rows = [("short", "a"), ("y" * 2001, "b")]
    with pytest.raises(TooLongError, match=r"^test.csv: row 2: the text to classify is 2,001 characters long"):
        limits.check_rows(rows, "text to classify", "test.csv")
    limits.check_rows(rows[:1], "demonstration", "demos.csv")


def test_scoring_computes_logits_only_where_labels_are_scored(tiny_model, monkeypatch):
    """The prompt's own positions are not turned into [T, V] logits (they were, for every text scored and every
    context cached): the cost of a long prompt no longer grows with the vocabulary."""
    shapes = []
    plain = tiny_model.backbone.logits

    def logits(hidden):
        shapes.append(tuple(hidden.shape[:2]))
        return plain(hidden)
    monkeypatch.setattr(tiny_model.backbone, "logits", logits)
    context = icl.context_text(icl.SENTIMENT_TEMPLATE, DEMOS)
    cache = tiny_model.cache_prompt(context)
    scored = icl.classify(tiny_model, "a lovely film", ["negative", "positive"], context=context, cache=cache)
    plain_scores = icl.classify(tiny_model, "a lovely film", ["negative", "positive"], context=context)
    assert shapes[0][1] == 0  # caching the context: no logits at all
    assert all(t <= 1 + max(len(tiny_model.tokenizer(w, add_special_tokens=False)["input_ids"])
                            for w in (" negative", " positive")) for _, t in shapes[1:])
    assert scored.scores == pytest.approx(plain_scores.scores, abs=1e-4)


@pytest.mark.parametrize("value", [None, "abc", "", float("nan"), float("inf"), -float("inf"), True, [1], {"a": 1},
                                   "nan", -1, 3])
def test_check_number_refuses_what_is_not_a_number_in_range(value):
    with pytest.raises(ValueError, match="temperature must be a number from 0 to 2"):
        limits.check_number(value, "temperature", 0, 2)


def test_check_number_accepts_numbers_and_their_digits():
    assert limits.check_number("0.5", "t", 0, 2) == 0.5 and limits.check_number(2, "t", 0, 2) == 2.0
    assert limits.check_number("7", "n", 1, 10, integer=True) == 7
    with pytest.raises(ValueError, match="whole number"):
        limits.check_number(2.5, "n", 1, 10, integer=True)


@given(st.one_of(st.none(), st.text(max_size=20), st.floats(allow_nan=True, allow_infinity=True), st.integers(),
                 st.booleans(), st.lists(st.integers(), max_size=2)))
def test_check_number_gives_a_finite_number_in_range_or_a_value_error(value):
    try:
        number = limits.check_number(value, "x", -5, 5)
    except ValueError as exc:
        assert str(exc).startswith("x must be a number from -5 to 5") and "\n" not in str(exc)
    else:
        assert math.isfinite(number) and -5 <= number <= 5 and isinstance(number, float)


def test_the_default_logits_are_unchanged(tiny_model):
    ids = torch.tensor([tiny_model.encode("a fine film")])
    full = tiny_model(ids).logits
    assert torch.allclose(tiny_model(ids, logits_from=2).logits, full[:, 2:], atol=1e-5)


@pytest.mark.parametrize("options,message", [
    ({"temperature": float("nan")}, "temperature must be a number from 0 to 100, not nan"),
    ({"max_new_tokens": 10 ** 9}, "max_new_tokens must be a whole number from 0 to"),
    ({"top_p": float("nan")}, "top_p must be a number from 0 to 1, not nan"),
])
def test_generation_refuses_nan_and_more_tokens_than_its_context(tiny_model, options, message):
    """Case 7 (a NaN temperature failed inside torch) and case 6 (a huge max_new_tokens cut the prompt to
    nothing): refused before anything runs, with an InputError the app and the CLI show as it is."""
    from longmem_core.generation import generate
    with pytest.raises(limits.InputError, match=message):
        generate(tiny_model, tiny_model.encode("hello there"), **options)
