"""Answer modes: how what memory holds becomes an answer.

Interface shared by the CLI (``ask --mode``), the app and the evaluations (``eval-niah``, ``eval-qa``):
``answer(model, bank, question, mode=...)`` returns an ``Answer`` with the text and the chunks the mode
listed or used (best first). For streaming: ``prepare(model, bank, question, mode)`` returns a ``Prepared``
(prompt ids, what was read back, the chunks) and ``stream(model, prepared)`` a ``Generation`` to iterate.

Modes:
- ``backbone``: the frozen backbone alone, local context only (no memory): the baseline.
- ``fusion``: the paper's memory-augmented attention layer reads the bank while generating.
- ``read_back`` (beyond the paper): the passages around the chunks ``search.rank_chunks`` finds are put into
  the backbone's prompt before the question (``read_back.py``); the backbone answers from its context.
- ``read_back_hybrid`` (beyond the paper): read-back of the chunks found by the model's search fused with BM25
  over the words around each chunk (``search.hybrid_chunks``, reciprocal-rank fusion).
- ``read_back_fusion``: the same prompt, and the memory layer reads the bank too.
- ``cache`` (training-free copy path): each next token from (1 - lam) p_LM + lam p_cache, where the cache
  proposes what followed stored states like the current one, and where the answer so far repeats stored
  text exactly, what followed it there (``neural_cache.py``). Uses the bank's token cache
  (``neural_cache.memorize``); without one, a tokens-only cache of the bank's source texts (exact copy only).
- ``read_back_cache``: the read-back prompt, generated with the cache mixed in.
- ``read_back_hybrid_cache``: the hybrid search's read-back prompt, generated with the cache mixed in.
- ``sentences_hybrid`` (beyond the paper): the hybrid read-back cut to the few sentences of its passages that
  share the most words with the question (``sentences.py``): a short prompt the small backbone copies from.
- ``sentences_hybrid_cache``: the same short prompt, generated with the cache mixed in.
- ``quote`` (beyond the paper; the default): ``sentences_hybrid_cache``'s search and sentences, but the answer is the
  read-back sentence holding the span the backbone finds most likely as the whole answer (``spans.py``), quoted
  exactly with its source, page label and section (``quote.py``), reading on into the next sentence where that one
  points back at it or bears on the question (``Answering.read_on``). The span alone answers only where
  ``settings.SPANS.sure_margin`` says the backbone is sure of it: never, by default.
  Where no sentence shares a word with the question, it says "I did not find this in what I read." A caller's
  answer prefix gets ``sentences_hybrid_cache``'s continuation.

In modes that read back and copy, the copy path copies only from the text read back
(``settings.ANSWER.copy_from``): what the answer copies is then what the app shows was read. The tuned defaults
(chunks searched, the answer's opening, read-back, sentence, span and copy-path settings) are in ``settings.py``.

A mode is four independent choices (``Mode``): which search's passages are read back (none, the model's, the
hybrid), whether only their best sentences are, whether the memory layer reads the bank (fusion), whether the
copy path is mixed in (cache).

All modes but ``fusion`` and ``read_back_fusion`` use no trained weights, so they work on any backbone.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from typing import Iterator

from . import neural_cache, quote, read_back, sentences, settings, spans
from ..model import search
from ..memory.memory_bank import MemoryBank
from ..model.model import Generation, LongMemModel, Retrieved


@dataclass(frozen=True)
class Mode:
    """An answer mode: four independent choices about memory, and what it says about itself. The app and the CLI
    only display what it says: its name, its plain name and line (``label``, ``description``: the modes the app
    offers, ``in_app``), what it did (``note``) and which chunks it used (``used_chunks``)."""

    read_back: str | None  # the search whose chunks' passages are read into the prompt, a key of
    # ``search.SEARCHES``: "model" (``search.rank_chunks``), "hybrid" (``search.hybrid_chunks``), "bm25"; or None
    fusion: bool  # the memory layer reads the bank while generating (the paper's path; needs trained weights)
    cache: bool  # the copy path (``neural_cache``) is mixed into each next-token distribution
    sentences: bool = False  # only the best sentences of the read-back passages are read (``sentences.py``)
    quote: bool = False  # the answer is copied from a sentence read back and shown with it quoted (``quote.py``)
    # What a mode says about itself (not part of what it does: two modes never differ by their words alone).
    name: str = field(default="", compare=False)  # its key in ``MODE_SPECS`` (``ask --mode``, the API's ``mode``)
    note: str = field(default="", compare=False)  # what it did with memory, said to the reader beside an answer
    label: str = field(default="", compare=False)  # its plain name in the app (modes the app offers)
    description: str = field(default="", compare=False)  # one line under the app's mode choice (modes it offers)

    @property
    def reads_history(self) -> bool:
        """Do earlier turns of a conversation go into the prompt? Not where text is read back: the small backbone
        then repeats an earlier answer instead of reading (a conversation's follow-up reaches the search instead,
        ``conversation.py``)."""
        return self.read_back is None

    @property
    def attends(self) -> bool:
        """Are the chunks it used those the memory layer attended to most while answering (the paper's memory layer
        alone)? Otherwise they are the chunks its search found: read back, or listed for the reader."""
        return self.fusion and self.read_back is None

    @property
    def in_app(self) -> bool:
        """Does the app offer this mode (``APP_MODES``)? Every mode stays on the CLI and the library."""
        return self.name in APP_MODES

    def used_chunks(self, model: LongMemModel, prepared: Prepared, gen: Generation, search_top: int) -> list[Retrieved]:
        """The chunks this mode used for a finished answer, best first: in ``fusion`` the ``search_top`` the memory
        layer attended to most, otherwise the chunks the search found (``prepared.chunks``)."""
        if self.attends and prepared.bank is not None:
            return model.retrieved_for(gen, prepared.bank, search_top)
        return prepared.chunks

    def chunk_weights(self, gen: Generation, used: list[Retrieved]) -> dict[int, float]:
        """How much this mode used each chunk (chunk id -> weight, not normalised): the memory layer's attention
        over every chunk (``fusion``), else the search scores of the chunks ``used``."""
        if self.attends:
            return gen.chunk_mass
        return {r.info.chunk_id: r.score for r in used}


_BM25 = "found by the model's search fused with word matching (BM25)"
_MODES = (
    Mode(None, False, False, name="backbone", note="the backbone alone answered; memory was not used",
         label="Backbone alone", description="the frozen language model without memory, to compare"),
    Mode(None, True, False, name="fusion", note="the paper's memory layer read memory while answering",
         label="Paper's memory layer (fusion)",
         description="the SideNet's memory-augmented attention reads memory while answering (the paper's method)"),
    Mode("model", False, False, name="read_back",
         note="the passages below were read back into the prompt before the question (beyond the paper)"),
    Mode("hybrid", False, False, name="read_back_hybrid",
         note=f"the passages around the chunks below, {_BM25}, were read back into the prompt before the question "
              "(beyond the paper)"),
    Mode("model", True, False, name="read_back_fusion",
         note="the passages below were read back into the prompt, and the memory layer read memory too "
              "(beyond the paper)"),
    Mode(None, False, True, name="cache",
         note="where the answer repeats text in memory word for word, it copies what followed there (a copy path, "
              "beyond the paper); the chunks below are what the search found for the question"),
    Mode("model", False, True, name="read_back_cache",
         note="the passages below were read back into the prompt, and the answer may copy what followed text in them "
              "(beyond the paper)"),
    Mode("hybrid", False, True, name="read_back_hybrid_cache",
         note=f"the passages around the chunks below, {_BM25}, were read back into the prompt, and the answer may "
              "copy what followed text in them (beyond the paper)"),
    Mode("hybrid", False, False, sentences=True, name="sentences_hybrid",
         note=f"the sentences shown, the ones that share the most words with the question among the passages "
              f"{_BM25}, were read back into the prompt before the question (beyond the paper)"),
    Mode("hybrid", False, True, sentences=True, name="sentences_hybrid_cache",
         note=f"the sentences shown, the ones that share the most words with the question among the passages "
              f"{_BM25}, were read back into the prompt, and the answer may copy what followed text in them "
              "(beyond the paper)"),
    Mode("hybrid", False, True, sentences=True, quote=True, name="quote",
         note="the answer is the sentence quoted below, copied word for word: the best of the sentences read back, "
              f"which share the most words with the question among the passages {_BM25} (beyond the paper)",
         label="Quote from memory",
         description="answers with a sentence it read, quoted exactly with its page (beyond the paper)"),
)
MODE_SPECS: dict[str, Mode] = {m.name: m for m in _MODES}
MODES: tuple[str, ...] = tuple(MODE_SPECS)
# Chosen on a tuning book (frankenstein; docs/results/niah.md). eval-niah at 16k with RULER's
# answer prefix, 12 trials: sentences_hybrid_cache 0.94 (single 1, multikey 1, multivalue 0.92, multiquery 0.83),
# sentences_hybrid about the same (1, 1, 0.92, -), read_back_hybrid_cache 0.69, cache 0.21 (the prefix breaks the
# copy path's exact match). Pass key through chat at 4k and 16k: sentences_hybrid_cache 8/8, sentences_hybrid 7/8
# (the backbone answered "a key that is used to open..." beside the key's sentence; the copy path copies it).
DEFAULT_MODE = "quote"  # sentences_hybrid_cache (chosen as above) answering with its quoted sentence or a sure span
# The modes the app offers, in its order (the default first; at most three, each with a label and a description).
APP_MODES: tuple[str, ...] = ("quote", "fusion", "backbone")
# Chunks asked of the search for read-back, and listed beside an answer: ``settings.ANSWER.search_top`` unless a
# caller passes ``search_top`` (the answer functions, the app's setting, ``ask --search-top``; their passages are
# then cut to the token budget). Not ``top_k``, the tokens the memory layer retrieves per query token and head.
# What the copy path copies from in modes that read back (``settings.ANSWER.copy_from``): "read" (only the text
# read into the prompt, tokens only) or "memory" (everything the bank holds). Modes without read-back always copy
# from memory.
COPY_SOURCES = ("read", "memory")
# A read-back answer opens with ``settings.ANSWER.answer_opening`` (beyond the paper; RULER's templates open the
# answer the same way): after "Read these passages...", the small backbone often talks about "the passage" instead
# of answering; made to open with these words it answers from what it read. The quote mode's span is scored after
# ``settings.ANSWER.span_opening`` (``spans.py``).


@dataclass
class Answer:
    mode: str
    text: str
    chunks: list[Retrieved] = field(default_factory=list)  # what the mode listed or used, best first
    context: str = ""  # exactly the text the mode read back into the prompt besides the question (read-back modes)
    quote: quote.Quote | None = None  # the sentence the answer rests on (``quote`` mode)
    short: bool = False  # ``quote`` mode: the answer is a span of the quote the backbone was sure of; False there: the
    # answer is the quoted sentence itself (``spans.answer_span``)
    complete: bool = True  # a generated answer ends a sentence (False: it stopped mid-sentence); a copied span is
    # whole; a quoted sentence answer is complete where it holds its whole sentence


@dataclass
class Prepared:
    """Everything a mode decided before generating: stream it with ``stream``."""

    mode: str
    prompt_ids: list[int]
    bank: MemoryBank | None  # the bank the memory layer reads while generating (None: no fusion)
    chunks: list[Retrieved]  # chunks read back (best first); cache modes without read-back: the chunks the
    # search ranks for the question, listed for the reader (the copy path itself does not use them)
    context: str  # exactly the text read back into the prompt
    cache: neural_cache.TokenCache | None = None  # the copy path's cache (cache modes only)
    opening: str = ""  # the answer's first words, already in the prompt (``settings.ANSWER``); part of the answer
    # (not in ``quote`` mode, whose answer is copied)
    sentences: list[sentences.Sentence] = field(default_factory=list)  # the sentences read back (sentence modes)
    memory: MemoryBank | None = None  # the bank searched (its sources hold the quotes)
    question: str = ""
    passages: list[read_back.Passage] = field(default_factory=list)  # the passages read (``sentences`` index them)
    prefixed: bool = False  # a caller's answer prefix is in the prompt (the answer continues it)


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown answer mode {mode!r}; choose one of {', '.join(MODES)}")


def prepare(model: LongMemModel, bank: MemoryBank | None, question: str, mode: str = DEFAULT_MODE,
            history: list[dict] | None = None, *, search_top: int | None = None, budget: int | None = None,
            chars: int | None = None, answer_prefix: str = "", copy_from: str | None = None,
            search_text: str | None = None, search_with: str | None = None) -> Prepared:
    """The prompt of ``question`` (after ``history``, where the mode ``reads_history``) in ``mode``. With no bank
    (or an empty one) every mode is the backbone's plain chat prompt. ``answer_prefix``: text the answer is made to
    begin with (put after the assistant's turn opens, as RULER's task templates do; the generation continues it).
    ``copy_from``: what the copy path of a mode that reads back copies from (``COPY_SOURCES``; default
    ``settings.ANSWER.copy_from``). ``search_top``, ``budget``, ``chars``: default ``settings.ANSWER.search_top``,
    ``settings.READ_BACK.context_tokens`` and ``settings.READ_BACK.passage_chars``. ``search_text``: what the search
    and the sentence choice look for (default: the question; a conversation's follow-up adds the question before it,
    ``conversation.search_text``). ``search_with``: in a mode that reads back, read back from this search instead
    of the mode's (a key of ``search.SEARCHES``; evaluations compare the searches with it)."""
    check_mode(mode)
    if search_with is not None and search_with not in search.SEARCHES:
        raise ValueError(f"unknown search {search_with!r}; choose one of {', '.join(search.SEARCHES)}")
    copy_from = copy_from or settings.ANSWER.copy_from
    search_top = settings.ANSWER.search_top if search_top is None else search_top
    if copy_from not in COPY_SOURCES:
        raise ValueError(f"copy_from must be one of {', '.join(COPY_SOURCES)}, got {copy_from!r}")
    has_memory = bank is not None and len(bank) > 0
    chunks: list[Retrieved] = []
    context = ""
    kept: list[sentences.Sentence] = []
    passages: list[read_back.Passage] = []
    spec = MODE_SPECS[mode]
    looked_for = search_text or question
    if spec.read_back and has_memory:
        find = search.SEARCHES[search_with or spec.read_back]
        found = read_back.read_back(model, bank, find(model, bank, looked_for, search_top), chars=chars, budget=budget)
        if spec.sentences:
            found = sentences.narrow(found, looked_for, read_back.token_counter(model), sources=bank.sources,
                                     anchors=search.anchor_count(model))
        chunks, context, kept, passages = found.chunks, found.context, found.sentences, found.passages
    elif spec.cache and has_memory:
        chunks = search.rank_chunks(model, bank, looked_for, search_top)
    prompt = model.chat_ids(read_back.read_back_prompt(context, question), history if spec.reads_history else None)
    opening = settings.ANSWER.answer_opening if context and not answer_prefix else ""  # a caller's prefix replaces it
    if answer_prefix or opening:
        prompt = prompt + model.tokenizer(answer_prefix or opening, add_special_tokens=False)["input_ids"]
    fusion_bank = bank if spec.fusion and has_memory else None
    cache = None
    copies = spec.cache and not (spec.quote and not answer_prefix)  # the quote mode copies by choosing a span
    if copies and has_memory:
        cache = (neural_cache.tokens_cache(model, [context]) if context and copy_from == "read"
                 else neural_cache.cache_from_sources(model, bank))
    return Prepared(mode, prompt, fusion_bank, chunks, context, cache, opening, kept, bank if has_memory else None,
                    question, passages, bool(answer_prefix))


def stream(model: LongMemModel, prepared: Prepared, *, max_new_tokens: int = 64, temperature: float = 0.0,
           lam: float | None = None, top_k: int | None = None) -> Generation:
    """The streaming generation of a prepared prompt (iterate it for text pieces). ``lam``: the copy path's weight
    (default ``settings.NEURAL_CACHE.lambda_answer``). ``top_k``: tokens the memory layer retrieves per query token
    and head in the fusion modes (default: the config's)."""
    if prepared.cache is not None:
        return neural_cache.generate(model, prepared.prompt_ids, prepared.cache, max_new_tokens=max_new_tokens,
                                     lam=lam, temperature=temperature)
    return model.generate(prepared.prompt_ids, prepared.bank, max_new_tokens=max_new_tokens,
                          temperature=temperature, backbone_only=prepared.bank is None,
                          top_k=top_k if prepared.bank is not None else None)


# a quoted sentence is widened to the whole sentence its piece belongs to (``settings.SENTENCES.max_sentence_chars``
# cuts run-ons into pieces to score them) up to this many characters: three pieces, not a whole table
MAX_QUOTE_CHARS = 900


class Answering:
    """A prepared answer being made: iterate for the pieces of the answer a reader sees, then ``finish``. In ``quote``
    mode the answer is a span copied from a sentence read back that the backbone is sure of, or else that whole
    sentence (``spans.answer_span``), or ``quote.NOT_FOUND`` where no sentence shares a word with the question."""

    def __init__(self, model: LongMemModel, prepared: Prepared, generation: Generation) -> None:
        self.model, self.prepared, self.generation = model, prepared, generation
        # quoting: an answer copied from a sentence read back (``spans.py``); not with no memory (the backbone's
        # answer), nor for a caller's prefix (generated as in sentences_hybrid_cache: eval-niah's RULER templates)
        self.quoting = MODE_SPECS[prepared.mode].quote and prepared.memory is not None and not prepared.prefixed
        self.text = "" if self.quoting else prepared.opening  # what the reader has seen so far
        self.complete = True
        self.span: spans.Span | None = None
        self.short = False  # the answer is a span the backbone was sure of, not its whole sentence
        self.cited: quote.Quote | None = None  # the span's sentence, quoted with its source, page and section

    def source(self, sentence: sentences.Sentence) -> dict:
        """The bank's source record a read-back sentence comes from."""
        p = self.prepared
        return p.memory.sources[p.passages[sentence.passage].source_index]

    def source_of(self, sentence: sentences.Sentence) -> str:
        """The source text a read-back sentence's span indexes."""
        return self.source(sentence)["text"]

    def read_on(self, quoted: sentences.Sentence) -> sentences.Sentence:
        """``quoted`` and the sentence after it, where that one opens by pointing back at it
        (``sentences.points_back``: "It needs a package for its own: vdmlisting.") or scores at least
        ``settings.SPANS.follow_share`` of it for the question (``sentences.reads_on``), and all fit
        ``MAX_QUOTE_CHARS`` (``sentences.following``); with ``settings.SPANS.read_before``, also the one before it
        where that would be read back itself (``sentences.preceding``). A sentence sharing the question's words often
        only introduces what the next one states ("...can be reexecuted by number. For example, history !5 ...")."""
        p = self.prepared
        text = self.source_of(quoted)
        skips = sentences.furniture_of(p.memory.sources, p.passages)  # per source read back
        skip = skips[p.passages[quoted.passage].source_index]

        def kept(other: sentences.Sentence | None, share: float | None = None) -> bool:
            return other is not None and sentences.reads_on(quoted, other, p.passages, p.question, skips, share)

        start, end = quoted.char_start, quoted.char_end
        nxt = sentences.following(quoted, text, skip, MAX_QUOTE_CHARS - (end - start))
        if nxt is not None and (sentences.points_back(nxt) or kept(nxt, settings.SPANS.follow_share)):
            end = nxt.char_end
        if settings.SPANS.read_before:
            prev = sentences.preceding(quoted, text, skip, MAX_QUOTE_CHARS - (end - start))
            if kept(prev):
                start = prev.char_start
        if (start, end) == (quoted.char_start, quoted.char_end):
            return quoted
        return sentences.spanning(quoted, text, start, end)

    def __iter__(self) -> Iterator[str]:
        p = self.prepared
        if self.quoting:
            if p.sentences:
                opening = settings.ANSWER.span_opening
                prompt = p.prompt_ids + self.model.tokenizer(opening, add_special_tokens=False)["input_ids"]
                self.span, self.short = spans.answer_span(self.model, prompt, p.sentences, p.question,
                                                          frozenset(search.stop_words()), self.source_of)
            if self.span is None:
                self.text = quote.NOT_FOUND
            else:  # the sure span, or else the sentence it sits in (all of it, not one piece), exactly as quoted
                whole = sentences.whole_sentence(self.span.sentence, self.source_of(self.span.sentence),
                                                 MAX_QUOTE_CHARS, at=self.span.char_start)
                if not self.short and not whole.is_piece and settings.SPANS.follow_on:
                    whole = self.read_on(whole)
                self.cited = quote.quote_of(whole, self.source(whole))
                self.text = self.span.text if self.short else self.cited.text
                self.complete = self.short or not whole.is_piece  # a quote cut mid-sentence counts as incomplete
            yield self.text
            return
        for piece in self.generation:
            self.text += piece
            yield piece
        self.text = p.opening + self.generation.text
        self.complete = quote.ends_sentence(self.generation.text) or not self.generation.text.strip()

    def finish(self) -> tuple[str, quote.Quote | None]:
        """The answer a reader sees and, in ``quote`` mode, the sentence it was copied from, or that is the answer
        (``short`` False); None: no answer was found, and the text says so."""
        return self.text, self.cited


def answer(model: LongMemModel, bank: MemoryBank | None, question: str, *, mode: str = DEFAULT_MODE,
           max_new_tokens: int = 64, search_top: int | None = None, history: list[dict] | None = None,
           answer_prefix: str = "", search_text: str | None = None, search_with: str | None = None) -> Answer:
    """Answer ``question`` greedily in ``mode``. ``search_top``: chunks asked of the search (read-back modes, then
    cut to those whose passages fit the context budget) and listed (fusion: those attended to most); default
    ``settings.ANSWER.search_top``. ``answer_prefix``: see ``prepare``; ``Answer.text`` is what was generated after
    it (without a prefix, a read-back answer's text begins with its opening, ``settings.ANSWER.answer_opening``,
    except in ``quote`` mode)."""
    search_top = settings.ANSWER.search_top if search_top is None else search_top
    prepared = prepare(model, bank, question, mode, history, search_top=max(search_top, 1), answer_prefix=answer_prefix,
                       search_text=search_text, search_with=search_with)
    gen = stream(model, prepared, max_new_tokens=max_new_tokens)
    answering = Answering(model, prepared, gen)
    for _ in answering:
        pass
    text, cited = answering.finish()
    chunks = MODE_SPECS[mode].used_chunks(model, prepared, gen, search_top)
    return Answer(mode, text, chunks, prepared.context, cited, short=answering.short, complete=answering.complete)
