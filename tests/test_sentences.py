"""Sentence read-back: passages cut into sentences, the best for the question kept in document order."""
import dataclasses

import pytest

from longmem_core.answer import sentences, settings
from longmem_core.memory.memory_bank import ChunkInfo
from longmem_core.model.model import Retrieved
from longmem_core.answer.read_back import Passage, ReadBack

SOURCE = ("It was a dark night. The ship sailed north. The captain's name was Ahab Morrow. "
          "Nobody slept. The cook sang songs. In the morning the harbour of Tarn came into view.")


def words(s: str) -> int:
    return len(s.split())


def passage(start: int, end: int, score: float = 1.0, chunks=()) -> Passage:
    return Passage(0, "book", start, end, SOURCE[start:end], score, list(chunks))


def test_split_gives_every_sentence_with_its_span_in_the_source():
    p = passage(0, len(SOURCE))
    got = sentences.split([p])
    assert [s.text for s in got][:3] == ["It was a dark night.", "The ship sailed north.",
                                         "The captain's name was Ahab Morrow."]
    assert all(SOURCE[s.char_start:s.char_end].strip() == s.text for s in got)


def test_narrow_keeps_the_sentences_that_share_words_with_the_question_in_document_order():
    p = passage(0, len(SOURCE))
    found = ReadBack([p], "unused", [])
    out = sentences.narrow(found, "What was the name of the captain?", words, top=1)
    assert out.context == "The captain's name was Ahab Morrow."
    two = sentences.narrow(found, "Which harbour did the captain see?", words, top=2)
    lines = two.context.split("\n")
    assert lines == ["The captain's name was Ahab Morrow.",
                     "In the morning the harbour of Tarn came into view."]


def test_neighbours_join_the_following_sentence_on_one_line():
    found = ReadBack([passage(0, len(SOURCE))], "unused", [])
    out = sentences.narrow(found, "captain's name", words, top=1, neighbours=1)
    assert out.context == "The captain's name was Ahab Morrow. Nobody slept."


def test_budget_and_no_shared_word():
    found = ReadBack([passage(0, len(SOURCE))], "the passages as read", [])
    assert sentences.narrow(found, "zebra xylophone", words) is found  # nothing to go on: read everything
    out = sentences.narrow(found, "captain harbour ship", words, top=6, budget=6)
    assert all(words(line) <= 7 for line in out.context.split("\n"))  # the 4-word sentence fits, longer ones not


def test_chunks_behind_are_those_overlapping_kept_sentences():
    at = SOURCE.index("The captain")
    near = Retrieved(ChunkInfo(chunk_id=3, source="book", token_start=0, token_end=1, char_start=at, char_end=at + 10, text=SOURCE[at:at + 10]), 0.9)
    far = Retrieved(ChunkInfo(chunk_id=1, source="book", token_start=0, token_end=1, char_start=0, char_end=5, text=SOURCE[:5]), 0.5)
    found = ReadBack([passage(0, len(SOURCE), chunks=[near, far])], "unused", [near, far])
    out = sentences.narrow(found, "captain's name", words, top=1)
    assert [r.info.chunk_id for r in out.chunks] == [3]


def test_min_share_drops_sentences_far_below_the_best():
    found = ReadBack([passage(0, len(SOURCE))], "unused", [])
    q = "What was the captain's name on the ship?"
    everything = sentences.narrow(found, q, words, top=6, min_share=0.0).context
    best_only = sentences.narrow(found, q, words, top=6, min_share=0.9).context
    assert "The ship sailed north." in everything  # "ship" only: far below the best
    assert best_only == "The captain's name was Ahab Morrow."


def test_a_long_sentence_is_cut_into_pieces_not_truncated():
    text = ("word " * 100) + "The pass key is 4821."
    p = Passage(0, "book", 0, len(text), text, 1.0, [])
    got = sentences.split([p])
    assert len(got) > 1 and all(len(s.text) <= settings.SENTENCES.max_sentence_chars for s in got)
    assert "The pass key is 4821." in got[-1].text
    assert sentences.narrow(ReadBack([p], "", []), "What is the pass key?", words).context.endswith("4821.")


def test_a_replaced_setting_is_read_at_call_time(monkeypatch):
    text = ("word " * 100) + "The pass key is 4821."
    p = Passage(0, "book", 0, len(text), text, 1.0, [])
    monkeypatch.setattr(settings, "SENTENCES", dataclasses.replace(settings.SENTENCES, max_sentence_chars=50))
    got = sentences.split([p])
    assert len(got) > 8 and all(len(s.text) <= 50 for s in got)


def test_question_words_do_not_count_as_shared_words():
    found = ReadBack([passage(0, len(SOURCE))], "unused", [])
    assert sentences.narrow(found, "What was it?", words) is found  # "what", "was", "it": nothing to go on


def test_a_kept_piece_brings_the_next_piece_of_its_sentence():
    # a run-on sentence cut between the key (which shares the question's words) and its value (which shares none)
    text = ("word " * 45) + "and one of the special magic numbers for quiet-lake is: " + ("x " * 60) + "4591245 and more"
    p = Passage(0, "book", 0, len(text), text, 1.0, [])
    got = sentences.split([p])
    key = next(i for i, s in enumerate(got) if "quiet-lake" in s.text)
    assert "4591245" not in got[key].text and len({s.whole for s in got}) == 1
    out = sentences.narrow(ReadBack([p], "", []), "What are the special magic numbers for quiet-lake?", words)
    assert "quiet-lake" in out.context and "4591245" in out.context


def test_a_sentence_whose_question_words_a_kept_one_holds_with_more_is_dropped():
    text = ("One of the special magic numbers for tidy-saddle is: 1543656. The weather was fine. "
            "One of the special magic numbers for quiet-lake is: 4591245. "
            "One of the special magic numbers for quiet-lake is: 7000001.")
    p = Passage(0, "book", 0, len(text), text, 1.0, [])
    q = "What are all the special magic numbers for quiet-lake mentioned in the provided text?"
    kept = sentences.narrow(ReadBack([p], "", []), q, words, min_share=0.0).context
    assert "4591245" in kept and "7000001" in kept  # two values of the asked key: the same words, both kept
    assert "1543656" not in kept  # another key's needle: only the shared words
    both = sentences.narrow(ReadBack([p], "", []), q, words, min_share=0.0, drop_dominated=False).context
    assert "1543656" in both


def test_running_headers_and_contents_lines_are_never_read_back():
    # four pages of a manual: a running header on each, a contents line, and the answer under a heading
    pages_text = ["CHAPTER 2. EMAIL SETUP\nContents\n2.1 Email setup . . . . . . . . 7",
                  "CHAPTER 2. EMAIL SETUP\n2.1 Email setup\nSet the email address in the DEBEMAIL variable.",
                  "CHAPTER 2. EMAIL SETUP\nThe address is also read by other tools.",
                  "CHAPTER 2. EMAIL SETUP\nNothing else."]
    text = "\n\n".join(pages_text)
    pages = [0]
    for t in pages_text[:-1]:
        pages.append(pages[-1] + len(t) + 2)
    p = Passage(0, "manual.pdf", 0, len(text), text, 1.0)
    found = ReadBack([p], "unused", [])
    question = "Which variable is the email setup?"
    plain = sentences.narrow(found, question, words, top=3)
    assert "EMAIL SETUP" in plain.context  # a reader of the text alone quotes the running header's words
    out = sentences.narrow(found, question, words, top=3,
                           sources=[{"name": "manual.pdf", "text": text, "pages": pages}])
    assert "DEBEMAIL" in out.context
    assert "EMAIL SETUP" not in out.context and ". . ." not in out.context


def test_a_heading_brings_the_sentence_under_it():
    text = "Intro text here.\n\n2.10 What is CRAN?\nCRAN is a network of servers that store R packages.\n\nOther."
    p = Passage(0, "faq.pdf", 0, len(text), text, 1.0)
    out = sentences.narrow(ReadBack([p], "unused", []), "What is CRAN?", words, top=1)
    assert "network of servers" in out.context


def chunk_at(text: str, found_by: str, score: float) -> Retrieved:
    i = SOURCE.index(text)
    return Retrieved(ChunkInfo(0, "book", 0, 4, i, i + len(text), text), score, found_by)


def test_the_memory_searchs_best_chunk_keeps_its_sentence_whatever_its_words():
    """A fact asked in other words shares no word with the question: the sentence holding the model's own best
    chunk is read (and offered as an answer) beside the sentences BM25 chose; only with anchors asked for."""
    cook = chunk_at("sang songs", "memory", 0.9)
    ship = chunk_at("sailed north", "hybrid", 0.5)
    found = ReadBack([passage(0, len(SOURCE), chunks=[ship, cook])], "unused", [ship, cook])
    q = "Which crew member made music for the captain?"
    plain = sentences.narrow(found, q, words)
    assert plain.context == "The captain's name was Ahab Morrow."
    out = sentences.narrow(found, q, words, anchors=1)
    assert out.context.split("\n") == ["The captain's name was Ahab Morrow.", "The cook sang songs."]
    assert [s.anchored for s in out.sentences] == [False, True]
    alone = sentences.narrow(found, "Which crew member made music?", words, anchors=1)  # no shared word at all
    assert alone.context == "The cook sang songs."
    assert sentences.narrow(found, q, words, anchors=1, budget=6).context == "The captain's name was Ahab Morrow."


def test_a_piece_widens_to_its_whole_sentence():
    # a run-on sentence cut into pieces ("...retained by default is quite" | "small (30 lines).")
    text = "Short one. " + ("history " * 60) + "lines retained by default is quite small (30 lines). Next one."
    p = Passage(0, "manual", 0, len(text), text, 1.0, [])
    got = sentences.split([p])
    run = [s for s in got if s.whole == got[1].whole]
    assert len(run) >= 2 and all(s.is_piece for s in run) and not got[0].is_piece
    for piece in (run[0], run[-1]):
        whole = sentences.whole_sentence(piece, text, limit=10_000)
        assert (whole.char_start, whole.char_end) == (run[0].char_start, run[-1].char_end) and not whole.is_piece
        assert whole.text.startswith("history") and whole.text.endswith("small (30 lines).")
    assert sentences.whole_sentence(run[0], text, limit=10) is run[0]  # over the limit: the piece, still a piece
    assert sentences.whole_sentence(got[0], text, limit=10_000) is got[0]  # whole already


def test_a_spaced_ellipsis_does_not_end_a_sentence():
    text = "Each entry is in the range 0, 1, . . . , 9 and about 1 in 20 are singular. Next."
    p = Passage(0, "manual", 0, len(text), text, 1.0, [])
    assert [s.text for s in sentences.split([p])] == [
        "Each entry is in the range 0, 1, . . . , 9 and about 1 in 20 are singular.", "Next."]


def test_an_unspaced_ellipsis_going_on_in_lower_case_does_not_end_a_sentence():
    text = ("It is an error for the name in the syntax \u2018word () ...\u2019 to be an alias, unless the option is "
            "set. Wait... Then more.")
    p = Passage(0, "manual", 0, len(text), text, 1.0, [])
    assert [s.text for s in sentences.split([p])] == [
        "It is an error for the name in the syntax \u2018word () ...\u2019 to be an alias, unless the option is set.",
        "Wait...", "Then more."]


def test_following_is_the_next_whole_sentence_unless_a_heading_furniture_or_too_long():
    text = ("Commands can be run again by number. For example, history !5 runs command 5 again.\n"
            "3.2 Plotting\nPlots are drawn.")
    p = Passage(0, "manual", 0, len(text), text, 1.0, [])
    first, second, third = sentences.split([p])[:3]
    nxt = sentences.following(first, text, [], limit=500)
    assert nxt.text == "For example, history !5 runs command 5 again." and not nxt.is_piece
    assert (nxt.char_start, nxt.char_end) == (second.char_start, second.char_end)
    assert sentences.following(second, text, [], limit=500) is None  # a heading opens another section
    assert sentences.following(first, text, [], limit=20) is None  # it ends past the limit
    header = (text.index("For"), text.index("For") + 3)
    assert sentences.following(first, text, [header], limit=500) is None  # page furniture between them


def test_the_next_sentence_is_read_on_only_where_it_would_be_read_back_itself():
    text = ("The gnuplot history of an interactive session can be reexecuted by number. For example, history !5 "
            "reexecutes the fifth command of the history. Gnuplot supports many plots. Gnuplot has terminals.")
    p = Passage(0, "manual", 0, len(text), text, 1.0, [])
    first, second, third = sentences.split([p])[:3]
    question = "How do I rerun gnuplot command 5 from the history?"
    assert sentences.reads_on(first, sentences.following(first, text, [], 500), [p], question)
    assert not sentences.reads_on(second, sentences.following(second, text, [], 500), [p], question)  # "gnuplot"
    assert sentences.reads_on(second, sentences.following(second, text, [], 500), [p], question, share=0.1)


def test_a_sentence_opening_with_a_word_pointing_back_goes_on_with_the_one_before():
    said = lambda text: sentences.Sentence(0, 0, len(text), text)  # noqa: E731
    assert sentences.points_back(said("It needs a package for its own: vdmlisting."))
    assert sentences.points_back(said("Second, it allows the use of arbitrary TeX code."))
    assert sentences.points_back(said("In that case, the input is saved in mpxerr.tex."))
    assert not sentences.points_back(said("Items are listed here.")) and not sentences.points_back(said("Itself."))


def test_a_list_running_into_prose_is_quoted_from_the_line_that_opens_the_sentence():
    colours = "\n".join(["palered", "lightred", "mediumred", "Cyan", "darkblue"] * 30)
    text = ("Named colors, in the module plain:\n" + colours + "\ncmyk(green)\nThe standard 140 RGB X11 colors can be "
            "imported with the command\nimport x11colors;\nNote that some colors (e.g. Green) disagree.\nNext.")
    p = Passage(0, "manual", 0, len(text), text, 1.0, [])
    got = sentences.split([p])
    at = text.index("import x11colors")
    piece = next(s for s in got if s.char_start <= at < s.char_end)
    assert piece.is_piece and piece.sentence_end - piece.sentence_start > 900
    whole = sentences.whole_sentence(piece, text, limit=900, at=at)
    assert whole.text == ("The standard 140 RGB X11 colors can be imported with the command import x11colors; "
                          "Note that some colors (e.g. Green) disagree.") and not whole.is_piece
    assert sentences.whole_sentence(piece, text, limit=900) is piece  # not told where the answer is: too long


def test_preceding_is_the_whole_sentence_right_before_unless_a_heading_furniture_or_too_long():
    text = ("2.1 Units\nTeX considers a point to be the 72.27th part of an inch. On the other hand, PostScript "
            "thinks a point is the 72nd part of an inch.")
    p = Passage(0, "guide", 0, len(text), text, 1.0, [])
    got = sentences.split([p])
    second = got[-1]
    prev = sentences.preceding(second, text, [], limit=500)
    assert prev.text.endswith("TeX considers a point to be the 72.27th part of an inch.")
    assert text[prev.char_end:second.char_start].strip() == "" and not prev.is_piece
    assert sentences.preceding(prev, text, [], limit=500) is None  # it opens with a heading: a new section
    assert sentences.preceding(second, text, [], limit=20) is None  # it starts before what was looked at
    paged = text.replace(" On the other", "\nGUIDE 12\nOn the other")
    header = (paged.index("GUIDE 12"), paged.index("GUIDE 12") + 8)
    after = next(s for s in sentences.split([Passage(0, "guide", 0, len(paged), paged, 1.0, [])], {0: [header]})
                 if s.text.startswith("On the other"))
    assert sentences.preceding(after, paged, [header], limit=500) is None  # page furniture between them


def test_a_question_asking_for_a_quantity_scores_sentences_holding_a_number_higher(monkeypatch):
    text = ("The whole test suite is run on every printer driver. The test suite takes about 12 hours. "
            "Drivers are tested one after another.")
    p = Passage(0, "manual", 0, len(text), text, 1.0, [])
    question = "How long does the whole test suite run?"
    assert sentences.asks_a_quantity(question) and not sentences.asks_a_quantity("What is the pass key?")
    with_bonus, bonus = sentences.split([p]), settings.SENTENCES.number_bonus
    sentences.score(with_bonus, question)
    monkeypatch.setattr(settings, "SENTENCES", dataclasses.replace(settings.SENTENCES, number_bonus=0.0))
    without = sentences.split([p])
    sentences.score(without, question)
    assert with_bonus[0].score == without[0].score > 0  # no digit
    assert with_bonus[1].score == pytest.approx((1 + bonus) * without[1].score) and without[1].score > 0 and bonus > 0


def test_a_sentence_of_code_weighs_less_than_prose():
    code = r"\num{0.001} \\ \num{0.0100} \\ \num{1200} \\ \sisetup{exponent-mode = scientific}%"
    assert sentences.prose_share(code) < settings.SENTENCES.min_prose
    assert sentences.prose_share("The separator between each unit is stored using an option.") == 1.0
    assert sentences.weight(code, False) == settings.SENTENCES.code_weight
