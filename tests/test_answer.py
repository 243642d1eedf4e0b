import re

import pytest

from longmem_core.answer import answer, neural_cache, settings

TEXT = ("The lighthouse keeper lived alone on the rock. Every night he lit the lamp. "
        "The pass key is 4821. Remember it. Ships passed safely through the strait. ") * 2


@pytest.fixture()
def memory(make_model):
    model = make_model("tiny")
    bank = model.new_bank(capacity=4096)
    cache = neural_cache.new_cache(model)
    neural_cache.memorize(model, TEXT, bank, cache, source="story")
    return model, bank


@pytest.mark.parametrize("mode", answer.MODES)
def test_every_mode_answers_and_says_what_it_read(memory, mode):
    model, bank = memory
    a = answer.answer(model, bank, "What is the pass key?", mode=mode, max_new_tokens=4, search_top=4)
    assert a.mode == mode and isinstance(a.text, str)
    if answer.MODE_SPECS[mode].read_back:
        assert a.context and a.chunks and len(a.chunks) <= 4
        for r in a.chunks:  # every chunk used lies inside a passage that was read back
            assert r.info.text and r.info.text.strip() in a.context or r.info.text in TEXT
        if answer.MODE_SPECS[mode].sentences:  # one line per run of kept sentences, each from the text
            lines = a.context.split("\n")  # no label on the lines: a file's name was taken for content
            assert all(s in TEXT for line in lines for s in re.split(r"(?<=[.!?]) ", line))
            assert "The pass key is 4821." in a.context and len(a.context) < len(TEXT)
        else:
            assert all(p in TEXT for p in (a.context.split("] ", 1)[1].split("\n\n[story] ")))
    elif mode == "fusion":
        assert a.context == "" and a.chunks
    elif mode == "cache":  # lists the search's chunks for the question
        assert a.context == "" and 0 < len(a.chunks) <= 4
    else:
        assert a.context == "" and a.chunks == []


def test_prepare_builds_the_prompt_the_mode_needs(memory):
    model, bank = memory
    q = "What is the pass key?"
    plain = answer.prepare(model, bank, q, "backbone")
    assert plain.prompt_ids == model.chat_ids(q) and plain.bank is None and plain.cache is None
    assert answer.prepare(model, bank, q, "fusion").bank is bank
    rb = answer.prepare(model, bank, q, "read_back")
    assert rb.bank is None and rb.context and len(rb.prompt_ids) > len(plain.prompt_ids)
    assert model.tokenizer.decode(rb.prompt_ids).count(rb.context.splitlines()[0][:20]) == 1
    assert answer.prepare(model, bank, q, "read_back_fusion").bank is bank
    assert answer.prepare(model, bank, q, "cache").cache is neural_cache.cache_for(bank)
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    assert answer.prepare(model, bank, q, "backbone", history).prompt_ids == model.chat_ids(q, history)


def test_the_copy_path_of_a_read_back_mode_copies_only_what_was_read(memory):
    model, bank = memory
    q = "What is the pass key?"
    for mode in ("sentences_hybrid_cache", "read_back_hybrid_cache", "read_back_cache"):
        read = answer.prepare(model, bank, q, mode)
        ids = model.tokenizer(read.context, add_special_tokens=False)["input_ids"]
        assert read.context and len(read.cache) == len(ids) - 1  # the context's tokens, nothing else
        assert read.cache.dim == 0 and read.cache is not neural_cache.cache_for(bank)
        assert answer.prepare(model, bank, q, mode, copy_from="memory").cache is neural_cache.cache_for(bank)
    assert answer.prepare(model, bank, q, "cache", copy_from="read").cache is neural_cache.cache_for(bank)
    with pytest.raises(ValueError, match="copy_from"):
        answer.prepare(model, bank, q, "sentences_hybrid_cache", copy_from="everywhere")


def test_stream_yields_the_answer_text(memory):
    model, bank = memory
    prepared = answer.prepare(model, bank, "Who lit the lamp?", "read_back")
    gen = answer.stream(model, prepared, max_new_tokens=5)
    assert "".join(gen) == gen.text
    assert prepared.opening == settings.ANSWER.answer_opening  # a read-back answer opens with it, in the prompt
    full = answer.answer(model, bank, "Who lit the lamp?", mode="read_back", max_new_tokens=5).text
    assert full == prepared.opening + gen.text
    assert model.tokenizer.decode(prepared.prompt_ids).endswith(settings.ANSWER.answer_opening)


def test_only_read_back_answers_open_with_the_opening_and_a_callers_prefix_replaces_it(memory):
    model, bank = memory
    q = "Who lit the lamp?"
    assert answer.prepare(model, bank, q, "backbone").opening == ""
    assert answer.prepare(model, bank, q, "cache").opening == answer.prepare(model, bank, q, "fusion").opening == ""
    prefixed = answer.prepare(model, bank, q, "sentences_hybrid_cache", answer_prefix="The keeper is")
    assert prefixed.opening == "" and model.tokenizer.decode(prefixed.prompt_ids).endswith("The keeper is")
    assert answer.prepare(model, None, q, "read_back").opening == ""  # nothing read back: the plain prompt


def test_without_memory_every_mode_is_the_backbone(make_model):
    model = make_model("tiny")
    base = answer.answer(model, None, "hello?", mode="backbone", max_new_tokens=5).text
    for mode in answer.MODES:
        a = answer.answer(model, None, "hello?", mode=mode, max_new_tokens=5)
        assert a.text == base and a.chunks == [] and a.context == ""
        assert answer.answer(model, model.new_bank(), "hello?", mode=mode, max_new_tokens=5).text == base


def test_a_read_back_mode_can_read_back_from_another_search(memory, monkeypatch):
    """``search_with`` swaps the mode's search (an evaluation's yardstick) and nothing else; unknown names refused."""
    from longmem_core.model import search
    model, bank = memory
    called = []
    for name, fn in list(search.SEARCHES.items()):
        monkeypatch.setitem(search.SEARCHES, name, lambda *a, _n=name, _f=fn, **k: called.append(_n) or _f(*a, **k))
    q = "What is the pass key?"
    answer.prepare(model, bank, q, "quote")
    swapped = answer.prepare(model, bank, q, "quote", search_with="bm25")
    assert called == ["hybrid", "bm25"] and "4821" in swapped.context
    with pytest.raises(ValueError, match="unknown search"):
        answer.prepare(model, bank, q, "quote", search_with="psychic")


def test_unknown_modes_are_refused(make_model):
    with pytest.raises(ValueError, match="unknown answer mode"):
        answer.answer(make_model("tiny"), None, "x", mode="telepathy")
    assert answer.DEFAULT_MODE in answer.MODES


def test_cache_mode_copies_a_stated_fact(make_model):
    """On an exact repeat of stored text (here the question itself quotes it), the copy path continues it."""
    model = make_model("tiny")
    bank = model.new_bank(capacity=4096)
    neural_cache.memorize(model, "zq the code word is kappa", bank, neural_cache.new_cache(model), source="s")
    prepared = answer.prepare(model, bank, "x", "cache")
    prepared.prompt_ids = model.encode("the code word is")
    gen = answer.stream(model, prepared, max_new_tokens=6)
    assert "".join(gen).startswith(" kappa"[:len(gen.text)]) and gen.text.strip().startswith("kap")


def test_every_mode_is_a_composition_and_explained_in_the_app():
    assert all(name == s.name and s.note for name, s in answer.MODE_SPECS.items())  # each says what it did
    offered = [s for s in answer.MODE_SPECS.values() if s.in_app]
    assert [s.name for s in offered] == sorted(answer.APP_MODES, key=answer.MODES.index) and len(offered) <= 3
    assert all(s.label and s.description for s in offered) and answer.DEFAULT_MODE in answer.APP_MODES
    assert len(set(answer.MODE_SPECS.values())) == len(answer.MODES)  # no two names for one behaviour
    assert all(s.read_back in (None, "model", "hybrid") for s in answer.MODE_SPECS.values())


def test_the_quote_mode_copies_by_its_span_and_continues_a_callers_prefix_with_the_copy_path(memory):
    model, bank = memory
    q = "What is the pass key?"
    assert answer.prepare(model, bank, q, "quote").cache is None  # no copy path to build: the span is the copy
    prefixed = answer.prepare(model, bank, q, "quote", answer_prefix="The pass key is")
    plain = answer.prepare(model, bank, q, "sentences_hybrid_cache", answer_prefix="The pass key is")
    assert prefixed.cache is not None and prefixed.prompt_ids == plain.prompt_ids
    a = answer.answer(model, bank, q, mode="quote", answer_prefix="The pass key is", max_new_tokens=4)
    b = answer.answer(model, bank, q, mode="sentences_hybrid_cache", answer_prefix="The pass key is", max_new_tokens=4)
    assert a.text == b.text and a.quote is None  # eval-niah's templates: sentences_hybrid_cache's continuation


def test_a_sentence_answer_quotes_its_whole_run_on_sentence_not_one_piece(make_model, monkeypatch):
    from longmem_core.answer import spans
    model = make_model("tiny")
    bank = model.new_bank(capacity=4096)
    text = ("The shell keeps a history. " + "history lines " * 30 +
            "and the number of history lines retained by default is quite small (30 lines). Ships sail.")
    model.memorize(text, bank, source="manual")
    seen = {}

    def first_piece_unsure(model, prompt, sentences, question, stop, source_of):
        piece = next(s for s in sentences if s.is_piece)  # the read-back holds a piece of the run-on sentence
        seen["piece"] = piece
        return spans.Span(piece, piece.text, piece.char_start, piece.char_end, 0.0), False
    monkeypatch.setattr(spans, "answer_span", first_piece_unsure)
    a = answer.answer(model, bank, "How many history lines are retained by default?", mode="quote")
    assert not a.short and a.complete and a.quote.text == a.text
    assert a.text.startswith("history lines") and a.text.endswith("quite small (30 lines).")
    assert len(a.text) > len(seen["piece"].text) and a.quote.char_start < seen["piece"].char_start


def _unsure_of(opening: str):
    """A stand-in for ``spans.answer_span``: the read-back sentence opening with ``opening``, not sure of any span."""
    from longmem_core.answer import spans

    def unsure(model, prompt, sentences, question, stop, source_of):
        intro = next(s for s in sentences if s.text.startswith(opening))
        return spans.Span(intro, intro.text, intro.char_start, intro.char_end, 0.0), False
    return unsure


def test_a_sentence_answer_reads_on_into_the_next_sentence_only_where_it_would_be_read_back(make_model, monkeypatch):
    import dataclasses
    from longmem_core.answer import settings, spans
    model = make_model("tiny")
    bank = model.new_bank(capacity=4096)
    text = ("Ships sail north. Previous commands in the history list can be rerun by number. For example, history !5 "
            "reruns the command numbered 5 in the history list. The harbour is quiet at night.")
    model.memorize(text, bank, source="manual")

    monkeypatch.setattr(spans, "answer_span", _unsure_of("Previous commands"))
    question = "How do I rerun command 5 from the history list?"
    a = answer.answer(model, bank, question, mode="quote")
    assert a.text == a.quote.text and a.complete and not a.short
    assert a.text == ("Previous commands in the history list can be rerun by number. For example, history !5 reruns "
                      "the command numbered 5 in the history list.")  # read on, not into "The harbour..."
    monkeypatch.setattr(settings, "SPANS", dataclasses.replace(settings.SPANS, follow_on=False))
    assert answer.answer(model, bank, question, mode="quote").text == \
        "Previous commands in the history list can be rerun by number."


def test_a_sentence_answer_reads_on_into_a_next_sentence_that_points_back_at_it(make_model, monkeypatch):
    from longmem_core.answer import spans
    model = make_model("tiny")
    bank = model.new_bank(capacity=4096)
    text = ("Ships sail north. The VDM language is not directly supported by the listings package. It needs a package "
            "for its own: vdmlisting. The harbour is quiet at night.")
    model.memorize(text, bank, source="manual")

    monkeypatch.setattr(spans, "answer_span", _unsure_of("The VDM"))
    a = answer.answer(model, bank, "What typesets VDM?", mode="quote")
    assert a.text == ("The VDM language is not directly supported by the listings package. It needs a package for its "
                      "own: vdmlisting.")  # "It needs..." shares no word with the question, but points back
