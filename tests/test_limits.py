"""One limit per kind of input (longmem_core/limits.py), enforced where each kind enters the library (issue 27)."""
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from longmem_core.classify import icl
from longmem_core import limits
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

    def logits(hidden):  # [B, T, W], or [positions, W] where only chosen positions are scored
        shapes.append(hidden.numel() // hidden.shape[-1])  # positions turned into logits
        return plain(hidden)
    monkeypatch.setattr(tiny_model.backbone, "logits", logits)
    context = icl.context_text(icl.SENTIMENT_TEMPLATE, DEMOS)
    cache = tiny_model.cache_prompt(context)
    scored = icl.classify(tiny_model, "a lovely film", ["negative", "positive"], context=context, cache=cache)
    plain_scores = icl.classify(tiny_model, "a lovely film", ["negative", "positive"], context=context)
    assert shapes[0] == 0  # caching the context: no logits at all
    label_tokens = sum(len(tiny_model.tokenizer(w, add_special_tokens=False)["input_ids"])
                       for w in (" negative", " positive"))
    assert all(n <= label_tokens for n in shapes[1:])  # only where a label's token is scored
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
    from longmem_core.model.generation import generate
    with pytest.raises(limits.InputError, match=message):
        generate(tiny_model, tiny_model.encode("hello there"), **options)


@pytest.mark.parametrize("cached", [False, True])
def test_a_prompt_read_in_blocks_scores_and_traces_as_in_one_pass(make_model, monkeypatch, cached):
    """Case 1: a long classification prompt is read in blocks of PROMPT_BLOCK tokens, once for all labels, so the
    memory layer's retrieved keys (~0.3 MB a token on the default model) never pile up for the whole prompt."""
    from longmem_core.model import scoring
    model = make_model()
    bank = model.new_bank(capacity=4096)
    memory = icl.memorize_demonstrations(model, DEMOS * 6, bank)
    context = icl.context_text(icl.SENTIMENT_TEMPLATE, DEMOS * 3)
    labels = ["negative", "positive", "neutral"]

    def run(block: int):
        monkeypatch.setattr(scoring, "PROMPT_BLOCK", block)
        widths = []
        plain = type(model).forward

        def forward(self, input_ids, *args, **kwargs):
            widths.append(tuple(input_ids.shape))
            return plain(self, input_ids, *args, **kwargs)
        monkeypatch.setattr(type(model), "forward", forward)
        cache = model.cache_prompt(context, bank) if cached else None
        prediction = icl.classify(model, "a warm and funny film " * 3, labels, context=context, bank=bank, top=5,
                                  cache=cache)
        monkeypatch.setattr(type(model), "forward", plain)
        return prediction, widths
    whole, _ = run(100_000)
    blocks, widths = run(5)
    assert blocks.scores == pytest.approx(whole.scores, abs=1e-4)
    assert [r.info.chunk_id for r in blocks.retrieved] == [r.info.chunk_id for r in whole.retrieved]
    assert [r.score for r in blocks.retrieved] == pytest.approx([r.score for r in whole.retrieved], abs=1e-4)
    longest = max(len(model.tokenizer(" " + w, add_special_tokens=False)["input_ids"]) for w in labels)
    assert {b for b, _ in widths} == {1} and max(t for _, t in widths) <= max(5, 1 + longest)  # one row at a time
    assert memory.covering(0, 1) == [0]


def test_a_prompt_over_its_token_limit_is_refused_before_it_is_read(tiny_model, monkeypatch):
    """k long demonstrations in context make one long prompt (40 of 1,000 characters: ~8,300 tokens, 2.5 GB at
    peak on the default model): refused with what to change."""
    monkeypatch.setattr(limits, "MAX_PROMPT_TOKENS", 200)
    context = icl.context_text(icl.SENTIMENT_TEMPLATE, DEMOS * 10)
    n = len(tiny_model.encode(context))
    with pytest.raises(TooLongError, match=f"^The prompt is {n:,} tokens long; the limit is 200. Put fewer or shorter"):
        tiny_model.cache_prompt(context)
    with pytest.raises(TooLongError, match="the limit is 200"):
        icl.classify(tiny_model, "a fine film", ["negative", "positive"], context=context)
    icl.classify(tiny_model, "a fine film", ["negative", "positive"], context=icl.context_text(
        icl.SENTIMENT_TEMPLATE, DEMOS[:1]))
