"""``train-meaning``: train the meaning search's two maps (model/meaning.py) on this project's own data.

Shape legend: F = G * D value features, S sentences of a document, N its questions.

Two kinds of documents, each memorized into a fresh bank exactly as the app memorizes, its sentences pooled from
what the bank stores (``meaning.sentence_values``), so training sees what searching sees:

- **facts asked in other words** (``--pairs``, e.g. ``data/train/paraphrase_train.jsonl``): ``facts_per_document``
  facts put in at sentence starts of a stretch of about ``document_tokens`` tokens of a training book (books dealt
  in turn); each fact's question must find that fact among every sentence of its document, the other facts
  included (so "looks planted" is no help);
- **questions about real sentences** (``--book-questions``, e.g. ``data/train/book_questions.jsonl``: the book's
  file name, the sentence, a question in other words): the sentence must be found in a stretch of
  ``window_chars`` characters of its book around it.

The loss is InfoNCE per document: a question's score for each sentence over ``temperature``, softmaxed over the
document's sentences. The score is the one the search uses (``meaning_pool``): the cosine of the means, or the
tokens' late interaction (``meaning.maxsim``), for which each document keeps its tokens' values. Only the two maps train; the backbone, the SideNet and the memory-query delta are frozen.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..documents.records import has_strings, read_records
from ..model import meaning

_SENTENCE_START = re.compile(r"(?<=[.!?])[\"'\u201d\u2019)]*\s+(?=[\"'\u201c\u2018(]*[A-Z])")


@dataclass
class MeaningDocument:
    sentences: torch.Tensor  # [S, F] mean value per sentence
    questions: torch.Tensor  # [N, F] mean value per question
    targets: torch.Tensor  # [N] the sentence each question asks about
    name: str
    tokens: torch.Tensor | None = None  # [T, F] every stored token's value ("tokens" pooling)
    token_sentence: torch.Tensor | None = None  # [T] its sentence
    question_tokens: list[torch.Tensor] | None = None  # N x [Lq, F]


def plant(text: str, facts: list[str], rng: random.Random) -> tuple[str, list[int]]:
    """``text`` with each fact put in at a sentence start drawn at random (the facts spread over the text, in a
    random order); -> (document, each fact's character start)."""
    starts = [0] + [m.end() for m in _SENTENCE_START.finditer(text)]
    slots = sorted(rng.sample(range(len(starts)), min(len(facts), len(starts))))
    order = list(range(len(slots)))
    rng.shuffle(order)
    pieces, at, pos, placed = [], [0] * len(slots), 0, 0
    for slot, i in zip(slots, order):
        cut = starts[slot]
        pieces.append(text[pos:cut])
        placed += cut - pos
        at[i] = placed
        pieces.append(facts[i] + " ")
        placed += len(facts[i]) + 1
        pos = cut
    pieces.append(text[pos:])
    return "".join(pieces), at


def stretch(text: str, chars: int, rng: random.Random) -> str:
    """About ``chars`` characters of ``text`` from a random paragraph start."""
    start = rng.randrange(0, max(1, len(text) - chars))
    para = text.find("\n\n", start)
    start = para + 2 if 0 <= para < start + chars // 4 else start
    return text[start:start + chars]


def document(model, text: str, questions: list[str], targets: list[tuple[int, int]], name: str) -> MeaningDocument:
    """Memorize ``text`` into a fresh bank; a question's target is the sentence (``meaning.chunk_sentences``) most of
    the chunks inside its character span [start, end) belong to. The tokens are kept where the model's
    ``meaning_pool`` is "tokens"."""
    n_tokens = len(model.tokenizer(text, add_special_tokens=False)["input_ids"])
    chunk = model.cfg.chunk_size
    bank = model.new_bank(capacity=max(chunk, -(-int(n_tokens * 1.25 + 64) // chunk) * chunk))
    model.memorize(text, bank, source=name)
    which = meaning.chunk_sentences(bank)  # [Nc]
    middle = bank.chunk_chars.sum(1) // 2  # [Nc]
    found = []
    for start, end in targets:
        inside = which[(middle >= start) & (middle < end)]
        found.append(int(np.bincount(inside).argmax()) if len(inside) else int(which[np.abs(middle - start).argmin()]))
    asked = [meaning.question_token_values(model, q) for q in questions]  # N x [Lq, F]
    doc = MeaningDocument(meaning.sentence_values(bank, which), torch.stack([q.mean(0) for q in asked]),
                          torch.tensor(found), name)
    if model.cfg.meaning_pool == "tokens":
        doc.tokens, doc.token_sentence = meaning.token_values(bank, which)
        doc.question_tokens = asked
    return doc


def read_book_questions(path: str | Path) -> list[dict]:
    """The questions about real sentences of a JSON-lines file; a malformed line raises ValueError naming it."""
    return read_records(path, lambda r: has_strings(r, ("book", "sentence", "question")),
                        "string fields 'book', 'sentence' and 'question'", "questions")


def pair_documents(model, books: list[str], pairs: list[dict], per_document: int, chars: int, seed: int,
                   log: Callable[[str], None]) -> list[MeaningDocument]:
    """The pairs' facts planted ``per_document`` at a time into stretches of the books (dealt in turn)."""
    rng = random.Random(seed)
    pairs = list(pairs)
    rng.shuffle(pairs)
    texts = {b: Path(b).read_text(encoding="utf-8") for b in books}
    docs = []
    for i in range(0, len(pairs), per_document):
        group = pairs[i:i + per_document]
        book = books[(i // per_document) % len(books)]
        text, at = plant(stretch(texts[book], chars, rng), [p["fact"] for p in group], rng)
        spans = [(a, a + len(p["fact"])) for a, p in zip(at, group)]
        docs.append(document(model, text, [p["question"] for p in group], spans, f"{Path(book).name}#{i}"))
        log(f"facts document {len(docs)}: {Path(book).name}, {len(group)} facts, {len(docs[-1].sentences)} sentences")
    return docs


def book_question_documents(model, books: list[str], rows: list[dict], chars: int,
                            log: Callable[[str], None]) -> list[MeaningDocument]:
    """The questions about real sentences, grouped into stretches of ``chars`` characters of their books (a row
    whose book is not among ``books`` is left out)."""
    by_name = {Path(b).name: b for b in books}
    docs = []
    for name in sorted({r["book"] for r in rows} & set(by_name)):
        text = Path(by_name[name]).read_text(encoding="utf-8")
        located = sorted((text.find(r["sentence"]), i, r) for i, r in enumerate(rows) if r["book"] == name)
        located = [x for x in located if x[0] >= 0]
        while located:
            start = max(0, located[0][0] - chars // 4)
            inside = [x for x in located if x[0] + len(x[2]["sentence"]) <= start + chars]
            located = located[len(inside):]
            docs.append(document(model, text[start:start + chars], [r["question"] for _, _, r in inside],
                                 [(at - start, at - start + len(r["sentence"])) for at, _, r in inside],
                                 f"{name}@{start}"))
            log(f"book-question document {len(docs)}: {name}, {len(inside)} questions")
    return docs


def similarities(projection: meaning.MeaningProjection, doc: MeaningDocument) -> torch.Tensor:
    """[N, S] each question's score for each sentence of its document, as ``meaning.meaning_scores`` scores them:
    the cosine of the means, or the tokens' late interaction (``meaning.maxsim``) where the document kept them."""
    if doc.tokens is None:
        centre = doc.sentences.mean(0)  # [F] centred on the document's mean sentence, as on a bank's
        q, s = projection(doc.questions - centre, doc.sentences - centre)  # [N, R], [S, R]
        return q @ s.T
    centre = doc.tokens.mean(0)  # [F] the document's mean token, as on a bank's
    unit = torch.nn.functional.normalize
    t = unit(projection.sentence(doc.tokens - centre), dim=-1)  # [T, R]
    S = len(doc.sentences)
    return torch.stack([meaning.maxsim(unit(projection.question(q - centre), dim=-1), t, doc.token_sentence, S)
                        for q in doc.question_tokens])


def loss(projection: meaning.MeaningProjection, doc: MeaningDocument, temperature: float) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(similarities(projection, doc) / temperature, doc.targets)


def ranks(projection: meaning.MeaningProjection, doc: MeaningDocument) -> list[int]:
    """The rank (1: first) of each question's target among the document's sentences."""
    with torch.no_grad():
        sim = similarities(projection, doc)  # [N, S]
        return [1 + int((sim[i] > sim[i, t]).sum()) for i, t in enumerate(doc.targets.tolist())]


def fit(projection: meaning.MeaningProjection, docs: list[MeaningDocument], *, steps: int, lr: float,
        weight_decay: float, temperature: float, seed: int, log: Callable[[str], None]) -> list[float]:
    """AdamW over the documents in a shuffled cycle, one document a step; -> the mean loss of each tenth."""
    rng = random.Random(seed)
    opt = torch.optim.AdamW(projection.parameters(), lr=lr, weight_decay=weight_decay)
    order: list[int] = []
    losses, tenth = [], []
    for step in range(steps):
        if not order:
            order = list(range(len(docs)))
            rng.shuffle(order)
        value = loss(projection, docs[order.pop()], temperature)
        opt.zero_grad()
        value.backward()
        opt.step()
        tenth.append(value.item())
        if len(tenth) == max(1, steps // 10):
            losses.append(sum(tenth) / len(tenth))
            log(f"step {step + 1}: loss {losses[-1]:.3f}")
            tenth = []
    return losses
