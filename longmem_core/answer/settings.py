"""The answer package's tuned defaults: what the answer modes search and open with, how passages are read back and
cut to sentences, how the quote mode's span is chosen, how the copy path mixes, when a question is a follow-up. One
frozen dataclass per concern, one default instance each that the code reads at call time (``tuning.py`` says how a
field is written). Change one with ``dataclasses.replace``::

    settings.SENTENCES = dataclasses.replace(settings.SENTENCES, min_share=0.75)
"""
from __future__ import annotations

from dataclasses import dataclass

from ..tuning import tuned


@dataclass(frozen=True)
class AnswerSettings:
    """What every answer mode shares (``answer.py``): how many chunks it asks the search for, what its copy path
    copies from, and the words a read-back answer opens with."""

    search_top: int = tuned(
        6, "chunks asked of the search and listed beside an answer: what eval-qa, eval-niah and eval-passkey measure "
           "with (8 and 6 differed by one answer)", "qa.md")
    copy_from: str = tuned(
        "read", "the copy path copies only the text read back (not all memory): 14 of 18 tuning answers against 13, "
                "no unrelated book text copied", "qa.md")
    answer_opening: str = tuned(
        "According to what I read,", "a read-back answer opens with these words: 16 of 18 tuning answers against 11 "
                                     "with none (else it talks about 'the passage')", "qa.md")
    span_opening: str = tuned(
        " the answer is", "what the quote mode's answer span is scored after, following answer_opening", "qa.md")


@dataclass(frozen=True)
class ReadBackSettings:
    """How the passages around the chunks found are read back into the prompt (``read_back.py``)."""

    passage_chars: int = tuned(
        600, "characters a passage aims at around its chunk: a tight passage the small backbone copies from "
             "(docs/DESIGN.md section 2)", "qa.md")
    context_tokens: int = tuned(
        1_500, "tokens of read-back passages allowed in a prompt", "qa.md")


@dataclass(frozen=True)
class SentenceSettings:
    """Which sentences of the read-back passages are kept for the question (``sentences.py``)."""

    sentences: int = tuned(
        6, "sentences kept at most (keeping only the top 3 scored 8.5 of 12 needle trials at 16k against 10.25)",
        "niah.md")
    sentence_tokens: int = tuned(
        320, "tokens of kept sentences allowed in the prompt: a short prompt the small backbone copies from",
        "niah.md")
    neighbours: int = tuned(
        0, "sentences after each kept one kept with it (each with the next one scored 9.25 of 12 needle trials "
           "against 10.25)", "niah.md")
    before: int = tuned(
        0, "sentences before each kept one kept with it: 1 did not help the pass-key trials the mode missed",
        "niah.md")
    min_share: float = tuned(
        0.5, "a sentence is kept only at this share of the best one's score: 10.25 of 12 needle trials at 16k "
             "against 8.0 at 0 (0.75 the same)", "niah.md")
    drop_dominated: bool = tuned(
        True, "skip a sentence whose question words a kept one holds with more (another needle's key no longer "
              "crowds out the asked one)", "niah.md")
    max_sentence_chars: int = tuned(
        300, "a longer sentence (a run-on, a table) is cut into pieces of at most this many characters, each scored; "
             "a kept piece brings the next", "niah.md")
    title_words: int = tuned(
        4, "a sentence of fewer words is a label or a heading: the sentence after it is kept with it", "qa_pdf.md")
    min_prose: float = tuned(
        0.3, "a sentence with fewer plain words than this share is code or a table ...", "qa_pdf.md")
    code_weight: float = tuned(
        0.5, "... and its score is multiplied by this: 7 tuning PDFs, best sentence holds the answer 92 of 140, 91 "
             "without", "qa_pdf.md")
    number_bonus: float = tuned(
        0.5, "a question asking for a quantity ('how long', 'what size') scores sentences holding a digit 1 + this "
             "times: with code_weight 95 of 140", "qa_pdf.md")
    length_norm: float = tuned(
        0.3, "BM25's b over sentences: the usual 0.75 halved the score of a fact that ran on from the sentence "
             "before", "niah.md")


@dataclass(frozen=True)
class SpanSettings:
    """Which spans of the read-back sentences the quote mode scores as the answer (``spans.py``)."""

    max_span_words: int = tuned(
        8, "longest answer span, in words", "qa_pdf.md")
    sentences: int = tuned(
        4, "the best-scored sentences read back whose spans are candidates, at most ...", "qa_pdf.md")
    sentence_share: float = tuned(
        1.0, "... and only those at this share of the best one's score: the best sentence alone answered 11 of 20 "
             "tuning-PDF questions, the 4 best 8", "qa_pdf.md")
    word_bonus: float = tuned(
        0.0, "added to a span's log-probability per word (a longer answer is otherwise always less likely): none",
        "qa_pdf.md")
    row_tokens: int = tuned(
        24, "tokens read at most per row: room for a span of max_span_words words and what closes it", "qa_pdf.md")
    sure_margin: float = tuned(
        float("inf"), "a span answers alone when it beats every other by this log-probability: never; the sentence "
                      "always (blind PDFs 24 of 40, margin 3: 20)", "qa_pdf.md")
    follow_on: bool = tuned(
        True, "a quoted sentence may read on into the next (follow_share says where): 3 tuning PDFs 52 of 60, 49 "
              "without", "qa_pdf.md")
    follow_share: float = tuned(
        0.25, "... reading on where the next sentence scores this share of the quoted one's, or points back ('It', "
              "'Second,'): 7 tuning PDFs 107 of 140, read-back rule 99", "qa_pdf.md")
    read_before: bool = tuned(
        False, "... and starts at the sentence before where that would be read back itself: tuning PDFs 52 of 60 "
               "either way, quotes longer: off", "qa_pdf.md")


@dataclass(frozen=True)
class NeuralCacheSettings:
    """The copy path (``neural_cache.py``): the state cache's keys and mix, and the exact copy beside it."""

    dim: int = tuned(
        128, "projected state width (RAM: 2 * dim + 8 bytes a token); 128 scored within 0.1 perplexity points of "
             "the full 576", "perplexity.md")
    theta: float = tuned(
        40.0, "sharpness of the cache's softmax over cosine similarities (docs/DESIGN.md section 2)",
        "perplexity.md")
    lambda_ppl: float = tuned(
        0.05, "cache weight for perplexity, ungated (chosen on a tuning book's first half)", "perplexity.md")
    lambda_answer: float = tuned(
        0.2, "cache weight for answers, times the cache's confidence: 0.5 derailed answers on a tuning book",
        "passkey.md")
    layer: int | None = tuned(
        None, "answers key the cache on the final normed state (None), the one that predicts the next token, not "
              "on H[layer]", "perplexity.md")
    gated: bool = tuned(
        True, "answers: the cache weight times the cache's confidence, so a cache with no clear precedent leaves "
              "the backbone alone", "perplexity.md")
    top_neighbours: int = tuned(
        1024, "stored states the softmax runs over: the rest carry about no weight at theta 40", "perplexity.md")
    max_match: int = tuned(
        16, "longest context suffix the exact copy looks for", "passkey.md")
    min_match: int = tuned(
        3, "an exact copy needs this many tokens repeated; its weight grows with each further one (the state cache "
           "alone read no pass key)", "passkey.md")


@dataclass(frozen=True)
class ConversationSettings:
    """When a question leans on the one before it (``conversation.py``)."""

    follow_up_words: int = tuned(
        3, "a question with at most this many words besides stop and referring words is a follow-up: its search "
           "adds the question before", "qa_pdf.md")


ANSWER = AnswerSettings()
READ_BACK = ReadBackSettings()
SENTENCES = SentenceSettings()
SPANS = SpanSettings()
NEURAL_CACHE = NeuralCacheSettings()
CONVERSATION = ConversationSettings()
