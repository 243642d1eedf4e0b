"""Answers copied from what was read: candidate spans of the best read-back sentence, scored by the backbone."""
import dataclasses

from longmem_core.answer import answer, settings, spans
from longmem_core.model.search import stop_words
from longmem_core.answer.sentences import Sentence

STOP = frozenset(stop_words())
SOURCE = "Intro. To get the numbers back, use as.numeric(as.character(f)) where f is the factor. The end."


def test_word_cores_keep_balanced_brackets_and_drop_edge_punctuation():
    for word, core in [("as.numeric(as.character(f)).", "as.numeric(as.character(f))"), ("(the", "the"),
                       ("default),", "default"), ("\u201cDoc-Start\u201d.", "Doc-Start"), ("3.0", "3.0")]:
        a, b = spans._core(word)
        assert word[a:b] == core, word


def test_candidates_are_exact_spans_of_the_sentence_not_only_question_words():
    text = "To get the numbers back, use as.numeric(as.character(f)) where f is the factor."
    s = Sentence(0, SOURCE.index(text), SOURCE.index(text) + len(text), text, 1.0)
    rows = list(spans._rows([s], "How do I get the numbers back from a factor?", STOP, lambda _: SOURCE))
    found = {SOURCE[a:b] for _, _, ends in rows for _, a, b in ends}
    assert "as.numeric(as.character(f))" in found and "use as.numeric(as.character(f))" in found
    assert "numbers" not in found and "factor" not in found  # only the question's words: no answer
    assert not any(f.endswith((" the", " where", ".")) for f in found)  # no span ends on a stop word or a stop


def test_the_quote_modes_answer_is_copied_exactly_and_quoted(make_model):
    model = make_model("tiny", capacity=2048)
    bank = model.new_bank()
    model.memorize(SOURCE, bank, source="faq.txt")
    a = answer.answer(model, bank, "How do I get the numbers back?", mode="quote")
    assert a.quote is not None and a.text in SOURCE and a.text in a.quote.text  # a span of its own quote
    assert a.quote.text in " ".join(SOURCE.split()) and a.quote.source == "faq.txt"
    assert (a.text == a.quote.text) != a.short  # the sure span, or else the whole quoted sentence


def _scored(*scores: float) -> list[spans.Span]:
    s = Sentence(0, 0, len(SOURCE), SOURCE, 1.0)
    return [spans.Span(s, f"span{i}", i, i + 1, score) for i, score in enumerate(scores)]


def test_the_span_answers_alone_only_when_the_backbone_is_sure_of_it(monkeypatch):
    margin = settings.SPANS.sure_margin
    for scores, sure in [((-1.0, -1.0 - margin), True), ((-1.0, -0.9 - margin, -9.0), False), ((-4.0,), True)]:
        monkeypatch.setattr(spans, "score_spans", lambda *a, s=scores: _scored(*s))
        best, got = spans.answer_span(None, [], [], "q", STOP, lambda _: SOURCE)
        assert best.text == "span0" and got is sure, scores
    monkeypatch.setattr(spans, "score_spans", lambda *a: [])
    assert spans.answer_span(None, [], [], "q", STOP, lambda _: SOURCE) == (None, False)
    monkeypatch.setattr(settings, "SPANS", dataclasses.replace(settings.SPANS, sure_margin=float("inf")))
    monkeypatch.setattr(spans, "score_spans", lambda *a: _scored(0.0, -50.0))
    assert spans.answer_span(None, [], [], "q", STOP, lambda _: SOURCE)[1] is False  # inf: always the sentence


def test_an_unsure_answer_is_its_whole_quoted_sentence(make_model, monkeypatch):
    model = make_model("tiny", capacity=2048)
    bank = model.new_bank()
    model.memorize(SOURCE, bank, source="faq.txt")
    q = "How do I get the numbers back?"
    for margin, short in ((float("inf"), False), (0.0, True)):
        monkeypatch.setattr(settings, "SPANS", dataclasses.replace(settings.SPANS, sure_margin=margin))
        a = answer.answer(model, bank, q, mode="quote")
        assert a.short is short and a.quote is not None
        assert (a.text == a.quote.text) if not short else (a.text in a.quote.text and len(a.text.split()) <= 8)


def test_a_headings_number_is_no_answer():
    text = "3.5 devscripts\nThe debsign command signs a package with your key."
    s = Sentence(0, 0, len(text), text, 1.0)
    found = {text[a:b] for _, _, ends in spans._rows([s], "Which command signs a package?", STOP, lambda _: text)
             for _, a, b in ends}
    assert "debsign" in found
    assert not any(f.startswith(("3.5", "devscripts")) for f in found)  # nothing on the heading's line


def _found(text: str, question: str) -> dict[str, str]:
    """Candidate spans of ``text`` (one sentence) as the LM reads them (row text) -> as copied from the source."""
    s = Sentence(0, 0, len(text), text, 1.0)
    out = {}
    for _, row, ends in spans._rows([s], question, STOP, lambda _: text):
        for end, a, b in ends:
            out[row[:end]] = text[a:b]
    return out


def test_an_answer_across_a_line_break_is_read_as_one_line():
    found = _found("It makes spider plots (also known as radar\ncharts).", "What are spider plots also known as?")
    assert found["radar charts"] == "radar\ncharts"  # the LM reads a space; the source keeps its line break


def test_a_span_closes_the_bracket_it_opens():
    found = _found("Use the \u201c3.0 (quilt)\u201d format, unless told otherwise.", "Which format?")
    assert "3.0 (quilt)" in found and "3.0 (quilt" not in found
    assert "3.0" in found  # a span that opens no bracket stays as it was


def test_a_number_that_opens_a_sentence_mid_line_can_answer():
    text = "Remember it. 12345 is the pass key. 2.5 litres were used."
    s = Sentence(0, 13, len(text), text[13:], 1.0)
    found = {text[a:b] for _, _, ends in spans._rows([s], "What is the pass key?", STOP, lambda _: text)
             for _, a, b in ends}
    assert "12345" in found and "2.5" in found  # not headings: they do not open a line


def test_a_cross_reference_is_no_answer():
    found = _found("The status is that of the last command, unless the pipefail option is enabled (see Section 4.3.1 "
                   "[The Set Builtin], page 71).", "Which option makes a pipeline report a failing command?")
    assert "pipefail" in found
    assert not [f for f in found if "Section" in f or "4.3.1" in f or "71" in f or "Builtin" in f]
    found = _found("Version 4.3.1 added it; see Chapter 7 for jobs.", "Which version added it?")
    assert "4.3.1" in found and "7" not in found  # a version is no cross-reference; a chapter's number is one


def test_an_anchored_sentence_offers_its_spans_beside_the_best_scored(make_model):
    """A sentence the memory's own search anchored is a candidate though BM25 scores it below the best."""
    model = make_model("tiny")
    text = "The harbour was quiet. Orla Brennagh kept a terrier."
    best = Sentence(0, 0, 22, text[:22], 2.0)
    other = Sentence(0, 23, len(text), text[23:], 0.0)
    got = lambda: {sp.text for sp in spans.score_spans(model, model.chat_ids("Who owned a dog?"), [best, other],  # noqa: E731
                                                       "Who owned a dog?", STOP, lambda _: text)}
    assert not any("Orla" in t for t in got())
    other.anchored = True
    assert "Orla Brennagh" in got()


def test_a_best_sentence_that_offers_no_span_is_passed_over_for_the_next(make_model):
    """A heading scored best by BM25 offers no answer; the best sentence that offers one is the candidate, not none."""
    model = make_model("tiny")
    text = "1.3 Sample Function Description\nThe optional input y defaults to 19 if not supplied."
    heading = Sentence(0, 0, 31, text[:31], 3.0)
    body = Sentence(0, 32, len(text), text[32:], 1.0)
    question = "In the sample function description, what does the optional input default to?"
    got = {sp.text for sp in spans.score_spans(model, model.chat_ids(question), [heading, body], question, STOP,
                                               lambda _: text)}
    assert "19" in got
