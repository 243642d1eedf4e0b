"""Examples for retrieval training: banks of cached book segments and, per query token, the chunks it should find.

* **Long-range induction.** A query token t whose preceding two tokens (t-1, t) also occur, rarely, in the bank at
  (p-1, p) should retrieve the chunk holding p + 1: what followed them last time. That is how a question
  "... the door code is" finds the chunk with the code after "the door code is" in memory.
* **Facts in long text.** A short fact (``facts.py``) is inserted at a random depth into book text; the last token
  of a question about it should retrieve the chunks holding the answer.
* **Questions about a book's own sentences.** A real sentence of a training book (``data/train/book_questions.jsonl``),
  read in a window of its own text, and a question about it in other words; the question's last token should
  retrieve the sentence's chunks. Nothing is planted, so nothing can be found for looking planted. Kind ``book``.
* **Facts asked in other words.** A hand-written sentence (``data/train/paraphrase_train.jsonl``) is inserted the same
  way and asked in other words ("Which chemist parted with his store?" for "The apothecary ... sold his shop"); the
  question's last token should retrieve any chunk of the sentence (its meaning gathers towards its end, where the
  causal keys have read it all, while the answer, often a name, may open it). Kind ``paraphrase``.
"""
from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..model.segments import segment_tokens
from .facts import PLACEMENTS, Fact, chat_question_ids, distractor, insert_fact, make_fact
from ..documents.records import has_answers, has_strings, read_records
from .corpus import book_ids
from .features import Segment, load_store, save_store, search_features


@dataclass
class SearchExample:
    """A bank (segment indices of a store) and a query segment with, per query token, its positive chunks."""

    bank: list[int]
    query: int  # index of the query segment in the store (never in ``bank``)
    targets: dict[int, list[int]] = field(default_factory=dict)  # query position -> positive chunk indices in the bank
    kind: str = "induction"


def chunk_offsets(store: list[Segment], bank: list[int], chunk_size: int) -> list[int]:
    """First chunk index of each bank segment in the bank, then the bank's chunk count."""
    offs, total = [], 0
    for s in bank:
        offs.append(total)
        total += -(-len(store[s].ids) // chunk_size)
    return offs + [total]


def induction_targets(store: list[Segment], bank: list[int], query: int, chunk_size: int,
                      max_count: int = 3, ahead: int = 1) -> dict[int, list[int]]:
    """Query position t -> chunks holding p + ahead, for every occurrence (p-1, p) in the bank of the query's
    bigram (t-1, t), when that bigram occurs at most ``max_count`` times in the bank."""
    offs = chunk_offsets(store, bank, chunk_size)
    where: dict[tuple[int, int], list[int]] = {}
    for j, s in enumerate(bank):
        ids = store[s].ids.tolist()
        for p in range(1, len(ids) - ahead):
            where.setdefault((ids[p - 1], ids[p]), []).append(offs[j] + (p + ahead) // chunk_size)
    q = store[query].ids.tolist()
    out = {}
    for t in range(1, len(q)):
        hits = where.get((q[t - 1], q[t]))
        if hits and len(hits) <= max_count:
            out[t] = sorted(set(hits))
    return out


DISTRACTOR_SHARE = 0.3  # training fact segments that also hold another key's fact (evaluation: none)
FACT_KINDS = ("fact", "paraphrase", "book")  # example kinds whose last query token has a sentence to find


def pair_fact(pair: dict) -> Fact:
    """A hand-written pair (``fact``, ``question``) as a planted fact whose target is the whole sentence."""
    text = " " + " ".join(pair["fact"].split())
    return Fact(text, pair["question"], text.strip())


def read_pair_file(path: str | Path, split: str | None = None) -> list[dict]:
    """The pairs of a JSON-lines file, only those of ``split`` when given."""
    pairs = read_records(path, lambda r: has_strings(r, ("fact", "question")), "string fields 'fact' and 'question'",
                         "pairs")
    return [p for p in pairs if split is None or p.get("split") == split]


def value_chunks(offset: int, value_pos: list[int], chunk_size: int) -> list[int]:
    return sorted({offset + p // chunk_size for p in value_pos})


def build_store(model, books: list[str], *, excerpt_segments: int, facts_per_book: int,
                evaluation: bool = False, seed: int = 0, pairs: list[dict] | None = None,
                log=print) -> tuple[list[Segment], list[dict]]:
    """Read an excerpt of ``excerpt_segments`` segments of every book, plus ``facts_per_book`` segments of the same
    book (random windows, random lengths) with a fact inserted, plus one question segment per fact; then, when
    ``pairs`` are given, each pair planted the same way in one of the books (dealt in turn), kind ``paraphrase``.

    Returns the store and a description of its groups (which segments form each book's excerpt, and for each fact
    the fact segment, value positions, question segment and kind)."""
    rng = random.Random(seed)
    pairs = list(pairs or [])
    dealt = {i: pairs[i::len(books)] for i in range(len(books))}
    seg = segment_tokens(model)
    store: list[Segment] = []
    groups = []
    for book_index, path in enumerate(books):
        t0 = time.perf_counter()
        ids = book_ids(model.tokenizer, path)
        name = Path(path).name
        span = seg * excerpt_segments
        start = 0 if evaluation else rng.randrange(0, max(1, len(ids) - span))
        pieces = [ids[start + i * seg:start + (i + 1) * seg] for i in range(excerpt_segments)]
        pieces = [p for p in pieces if len(p) >= 8]
        first = len(store)
        store += search_features(model, pieces, name)
        group = {"book": name, "excerpt": list(range(first, len(store))), "facts": []}
        planted = [(make_fact(rng, evaluation), "fact") for _ in range(facts_per_book)]
        planted += [(pair_fact(p), "paraphrase") for p in dealt[book_index]]
        for fact, kind in planted:
            room = seg - 40 if kind == "fact" else seg - 8 - 2 * len(model.tokenizer(fact.text, add_special_tokens=False)
                                                                      ["input_ids"])  # a sentence and a distractor fit
            length = rng.randint(min(96, seg // 2), max(min(96, seg // 2), room))
            s = rng.randrange(0, len(ids) - length)
            base = ids[s:s + length]
            placement = "break" if evaluation else rng.choice(PLACEMENTS)
            if not evaluation and rng.random() < DISTRACTOR_SHARE:  # another fact nearby, no target
                other = distractor(rng, fact) if kind == "fact" else pair_fact(rng.choice(
                    [p for p in pairs if p["fact"].strip() != fact.text.strip()] or pairs))
                base, _ = insert_fact(model.tokenizer, base, other, rng, rng.choice(PLACEMENTS))
            fact_ids, value_pos = insert_fact(model.tokenizer, base, fact, rng, placement)
            fact_ids, value_pos = fact_ids[:seg], [p for p in value_pos if p < seg]
            question = model.tokenizer(fact.question, add_special_tokens=False)["input_ids"]
            if rng.random() < 0.25 and not evaluation:  # some questions through the chat template, as the app asks
                question = chat_question_ids(model, fact.question)
            store += search_features(model, [fact_ids, question], name)
            group["facts"].append({"segment": len(store) - 2, "question": len(store) - 1, "value_pos": value_pos,
                                   "fact": asdict(fact), "kind": kind})
        groups.append(group)
        log(f"read {name}: {len(group['excerpt'])} segments + {len(planted)} facts in {time.perf_counter() - t0:.0f} s")
    return store, groups


def read_book_questions(path: str | Path) -> list[dict]:
    """The questions of a JSON-lines file, each with string fields ``book``, ``sentence`` and ``question``."""
    return read_records(path, lambda r: has_strings(r, ("book", "sentence", "question")) and has_answers(r),
                        "string fields 'book', 'sentence', 'question' and a list 'answers'", "questions")


def book_question_store(model, books: list[str], questions: list[dict], *, seed: int = 0,
                        log=print) -> tuple[list[Segment], dict[str, list[dict]]]:
    """Per question (``book``, ``sentence``, ``question``), a window of its book's own text of random length with
    the sentence at a random place (read as one segment), and the question (a quarter through the chat template).
    -> (their features, {book name: fact entries as ``build_store``'s, kind "book", indices into these features})."""
    rng = random.Random(seed)
    seg = segment_tokens(model)
    tok = lambda t: model.tokenizer(t, add_special_tokens=False)["input_ids"]  # noqa: E731
    names = {Path(b).name: b for b in books}
    texts = {q["book"]: Path(names[q["book"]]).read_text(encoding="utf-8") for q in questions if q["book"] in names}
    store: list[Segment] = []
    entries: dict[str, list[dict]] = {}
    t0 = time.perf_counter()
    for q in questions:
        if q["book"] not in texts:
            continue
        text = texts[q["book"]]
        at = text.find(q["sentence"])
        if at < 0:
            raise ValueError(f"{q.get('id', '?')}: its sentence is not in {q['book']}")
        sentence = tok(q["sentence"])[:seg // 2]
        room = seg - len(sentence)
        before_n = rng.randint(0, room)
        after_n = rng.randint(0, room - before_n)
        end = at + len(q["sentence"])
        before = tok(text[max(0, at - 8 * before_n):at])[-before_n:] if before_n else []
        after = tok(text[end:end + 8 * after_n])[:after_n]
        question = tok(q["question"]) if rng.random() >= 0.25 else chat_question_ids(model, q["question"])
        store += search_features(model, [before + sentence + after, question], q["book"])
        entries.setdefault(q["book"], []).append({
            "segment": len(store) - 2, "question": len(store) - 1,
            "value_pos": list(range(len(before), len(before) + len(sentence))),
            "fact": {"text": q["sentence"], "question": q["question"], "value": q["answers"][0]}, "kind": "book"})
    log(f"read {len(store) // 2} book questions in {time.perf_counter() - t0:.0f} s")
    return store, entries


def cached_book_questions(model, books: list[str], questions: list[dict], path: Path, seed: int,
                          log=print) -> tuple[list[Segment], dict[str, list[dict]]]:
    """``book_question_store``, kept at ``path`` and reused for the same books, questions and seed."""
    key = {"books": [Path(b).name for b in books], "questions": [[q["sentence"], q["question"]] for q in questions],
           "seed": seed}
    return _cached(model, path, key, lambda: book_question_store(model, books, questions, seed=seed, log=log), log)


def add_book_questions(store: list[Segment], groups: list[dict], part: list[Segment],
                       entries: dict[str, list[dict]], tokenizer, log=print) -> None:
    """Append ``book_question_store``'s features to ``store`` and its entries to the groups of their books, except a
    question whose sentence the book's excerpt also holds (its chunks there would count as wrong)."""
    offset, dropped = len(store), 0
    store += part
    for g in groups:
        excerpt = " ".join(" ".join(tokenizer.decode(store[s].ids.tolist()).split()) for s in g["excerpt"])
        for e in entries.get(g["book"], []):
            if " ".join(e["fact"]["text"].split()) in excerpt:
                dropped += 1
                continue
            g["facts"].append(dict(e, segment=e["segment"] + offset, question=e["question"] + offset))
    if dropped:
        log(f"{dropped} book questions left out: their sentence is in the book's excerpt")


def cached_store(model, books: list[str], path: Path, excerpt_segments: int, facts_per_book: int, evaluation: bool,
                 seed: int, log=print, pairs: list[dict] | None = None) -> tuple[list[Segment], list[dict]]:
    """``build_store``, kept at ``path`` and reused when the same books and settings ask for it again."""
    key = {"books": [str(b) for b in books], "excerpt_segments": excerpt_segments, "facts_per_book": facts_per_book,
           "evaluation": evaluation, "seed": seed}
    if pairs:  # keyed by content: an edited pair file is read again
        key["pairs"] = [[p["fact"], p["question"]] for p in pairs]
    return _cached(model, path, key, lambda: build_store(
        model, books, excerpt_segments=excerpt_segments, facts_per_book=facts_per_book, evaluation=evaluation,
        seed=seed, pairs=pairs, log=log), log)


def _cached(model, path: Path, key: dict, build, log) -> tuple:
    """What ``build()`` returns (features and their description), kept at ``path`` and reused while ``key`` and the
    model's backbone, memory layer and segment length are the same."""
    key = key | {"backbone": model._fingerprint, "memory_layer": model.memory_layer,
                 "segment_length": model.segment_length}
    saved = load_store(path, key)
    if saved is not None:
        log(f"using cached features {path}")
        return saved
    store, described = build()
    save_store(path, key, store, described)
    return store, described


def make_examples(store: list[Segment], groups: list[dict], chunk_size: int, *, seed: int = 0,
                  distractor_books: int = 1, induction_per_book: int | None = None,
                  fact_distractors: int = 0) -> list[SearchExample]:
    """Induction examples (a segment of a book's excerpt queries the rest of the excerpt, plus the excerpt of
    ``distractor_books`` other books) and fact examples (a question queries the excerpt, other books' excerpts
    and the fact segment; its last token's positives are the value's chunks, its other tokens get induction
    targets). ``fact_distractors``: other facts' segments of the same kind put in each fact example's bank too.
    Without them a planted sentence is the only one of its kind in the bank, and the search can learn to find
    whatever looks planted rather than what the question means."""
    rng = random.Random(seed)
    examples = []
    by_kind: dict[str, list[int]] = {}
    for g in groups:
        for f in g["facts"]:
            by_kind.setdefault(f.get("kind", "fact"), []).append(f["segment"])
    for gi, g in enumerate(groups):
        others = [h for j, h in enumerate(groups) if j != gi]
        queries = g["excerpt"] if induction_per_book is None else rng.sample(g["excerpt"], min(induction_per_book, len(g["excerpt"])))
        for q in queries:
            extra = [s for h in rng.sample(others, min(distractor_books, len(others))) for s in h["excerpt"]]
            bank = [s for s in g["excerpt"] if s != q] + extra
            rng.shuffle(bank)
            examples.append(SearchExample(bank=bank, query=q, targets=induction_targets(store, bank, q, chunk_size)))
        for f in g["facts"]:
            extra = [s for h in rng.sample(others, min(distractor_books, len(others))) for s in h["excerpt"]]
            bank = g["excerpt"] + extra
            kin = [x for x in by_kind[f.get("kind", "fact")] if x != f["segment"]]
            for x in rng.sample(kin, min(fact_distractors, len(kin))):
                bank.insert(rng.randrange(len(bank) + 1), x)
            bank.insert(rng.randrange(len(bank) + 1), f["segment"])
            targets = induction_targets(store, bank, f["question"], chunk_size)
            offs = chunk_offsets(store, bank, chunk_size)
            last = len(store[f["question"]].ids) - 1
            if f["value_pos"]:
                targets[last] = value_chunks(offs[bank.index(f["segment"])], f["value_pos"], chunk_size)
            examples.append(SearchExample(bank=bank, query=f["question"], targets=targets, kind=f.get("kind", "fact")))
    return [e for e in examples if e.targets]
