"""Conversations: earlier turns reach the prompt only where nothing is read back; follow-ups reach the search."""
from longmem_core.answer import answer
from longmem_core.answer.conversation import Conversation, is_follow_up, search_text
from longmem_core.model.search import stop_words

STOP = frozenset(stop_words())


def test_follow_ups_are_short_questions_that_refer_back():
    assert is_follow_up("And who else?", STOP)
    assert is_follow_up("What does it default to?", STOP)
    assert not is_follow_up("Summarize what CRAN is.", STOP)  # no referring word: a question of its own
    assert not is_follow_up("Which file does hyperref read at load time for site-wide settings?", STOP)
    assert search_text("And who else?", "Who wrote the package?", STOP) == "Who wrote the package? And who else?"
    assert search_text("What is CRAN?", "Who wrote the package?", STOP) is None


def test_modes_that_read_back_see_no_earlier_turns(make_model):
    model = make_model("tiny", capacity=1024)
    bank = model.new_bank()
    model.memorize("The harbour master's boat is green. The lighthouse was built in 1887.", bank, source="s")
    talk = Conversation()
    first = talk.ask(model, bank, "What colour is the boat?", mode="quote", max_new_tokens=4)
    assert talk.turns == [{"question": "What colour is the boat?", "answer": first.text}]
    q = "When was the lighthouse built?"
    # the quote mode's prompt is the same as if the question were asked first; the backbone's carries the turn
    assert (answer.prepare(model, bank, q, "quote", talk.history()).prompt_ids
            == answer.prepare(model, bank, q, "quote").prompt_ids)
    assert (answer.prepare(model, bank, q, "backbone", talk.history()).prompt_ids
            != answer.prepare(model, bank, q, "backbone").prompt_ids)
