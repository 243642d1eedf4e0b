from longmem_core.answer import read_back
from longmem_core.model.model import Retrieved

TEXT = ("The first sentence is here. The second one follows! Is this the third? "
        "Yes.\n\nA new paragraph starts. It has the pass key 12345 in it. Then it ends.")


def test_sentence_bounds_start_every_sentence_and_paragraph():
    b = read_back.sentence_bounds(TEXT)
    assert b[0] == 0 and b[-1] == len(TEXT)
    starts = [TEXT[i:i + 5] for i in b[:-1]]
    assert starts == ["The f", "The s", "Is th", "Yes.\n", "A new", "It ha", "Then "]


def test_expand_keeps_whole_sentences_around_the_span():
    at = TEXT.index("12345")
    lo, hi = read_back.expand(TEXT, at, at + 5, chars=10)
    assert TEXT[lo:hi] == "It has the pass key 12345 in it. "
    lo, hi = read_back.expand(TEXT, at, at + 5, chars=90)  # never more than asked: whole sentences within
    assert TEXT[lo:hi] == "It has the pass key 12345 in it. Then it ends."
    lo, hi = read_back.expand(TEXT, at, at + 5, chars=100)
    assert TEXT[lo:hi] == "A new paragraph starts. It has the pass key 12345 in it. Then it ends."
    assert read_back.expand(TEXT, 0, 3, chars=0) == (0, TEXT.index("The second"))
    assert read_back.expand(TEXT, 0, len(TEXT), chars=10) == (0, len(TEXT))


def _passage(src, a, b, score):
    return read_back.Passage(src, f"s{src}", a, b, TEXT[a:b], score)


def test_merge_joins_overlapping_passages_of_one_source_in_document_order():
    merged = read_back.merge([_passage(0, 30, 60, 0.1), _passage(0, 0, 35, 0.5), _passage(1, 0, 10, 0.9),
                              _passage(0, 80, 90, 0.2)], [TEXT, TEXT])
    assert [(p.source_index, p.char_start, p.char_end) for p in merged] == [(0, 0, 60), (0, 80, 90), (1, 0, 10)]
    assert merged[0].score == 0.5 and merged[0].text == TEXT[0:60]


def test_fit_budget_keeps_the_best_passages_that_fit_in_document_order():
    ps = [_passage(0, 0, 10, 0.1), _passage(0, 20, 40, 0.9), _passage(0, 50, 55, 0.5)]
    kept = read_back.fit_budget(ps, len, budget=26)
    assert [(p.char_start, p.score) for p in kept] == [(20, 0.9), (50, 0.5)]
    assert read_back.fit_budget(ps, len, budget=0) == []


def test_read_back_reads_the_passages_around_retrieved_chunks(tiny_model):
    bank = tiny_model.new_bank(capacity=4096)
    tiny_model.memorize(TEXT, bank, source="doc")
    at = TEXT.index("12345")
    target = next(int(cid) for cid, (a, b) in zip(bank.chunk_ids, bank.chunk_chars) if a <= at < b)
    info = bank.chunk_info(target)
    found = read_back.read_back(tiny_model, bank, [Retrieved(info, 0.7)], chars=20, budget=1000)
    assert len(found.passages) == 1 and found.chunks[0].info.chunk_id == target
    p = found.passages[0]
    assert p.text == TEXT[p.char_start:p.char_end] and p.char_start <= info.char_start < info.char_end <= p.char_end
    assert "It has the pass key 12345 in it." in found.context and found.context.startswith("[doc] ")
    none = read_back.read_back(tiny_model, bank, [Retrieved(info, 0.7)], budget=1)
    assert none.context == "" and none.chunks == []


def test_chunks_without_source_text_are_skipped(tiny_model):
    bank = tiny_model.new_bank(capacity=4096)
    tiny_model.memorize_ids(tiny_model.tokenizer("no source here")["input_ids"], bank)
    info = bank.chunk_info(int(bank.chunk_ids[0]))
    assert read_back.read_back(tiny_model, bank, [Retrieved(info, 1.0)]).passages == []


def test_prompt_puts_the_passages_before_the_question():
    assert read_back.read_back_prompt("", "Q?") == "Q?"
    prompt = read_back.read_back_prompt("some passage", "Q?")
    assert prompt.index("some passage") < prompt.index("Q?")


def test_a_title_or_an_initial_ends_no_sentence():
    text = "Mr. Hubble the wheelwright came. Then J. R. Smith left with Mrs. Joe. He said no. It rained."
    starts = [text[i:i + 6] for i in read_back.sentence_bounds(text)[:-1]]
    assert starts == ["Mr. Hu", "Then J", "He sai", "It rai"]
    text = "As Jones et al. (1990) show, some colours, e.g. red, i.e. warm ones, cf. Table 2. Next one."
    assert [text[i:i + 6] for i in read_back.sentence_bounds(text)[:-1]] == ["As Jon", "Next o"]


def test_a_numbered_abbreviation_before_a_number_ends_no_sentence():
    text = "As in TUGboat, Volume 19 (1998), No. 3 states. See Fig. 2 and pp. 3-5 there. He said no. It came."
    assert [text[i:i + 6] for i in read_back.sentence_bounds(text)[:-1]] == ["As in ", "See Fi", "He sai", "It cam"]
