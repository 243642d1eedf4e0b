"""Check the hand-written book question pairs (``data/train/book_questions.jsonl``).

Standard library only. Each line is ``{"id", "book", "sentence", "question", "answers"}``; the checks:

* valid JSON per line, the required keys, string fields, unique ids;
* ``book`` is one of the five training books below;
* ``sentence`` has 10-60 words and occurs exactly once (``str.count``) in ``<books>/<book>``, and no sentence is
  used twice;
* ``question`` ends with "?";
* ``answers``: 1-3 strings of 1-6 words, each a substring of the sentence and absent from the question
  (case- and accent-insensitive);
* the question shares at most one content word with the sentence (content word: a word of 3+ letters that is not
  in ``FUNCTION`` below, compared without case or accents; character names count as content words).

    python3 scripts/data/check_book_questions.py [--books DIR] [path]
    python3 scripts/data/check_book_questions.py --natural [--books DIR] [path]

With ``--natural`` the file is ``data/train/book_questions_natural.jsonl`` (questions asked the way a reader asks a
quiz question, so they may share words with the sentence). The checks then differ as follows: each line also needs
``"kind": "natural"``; ids are ``nat-<book>-<N>`` (``dracula``, ``moby-dick``, ``war-and-peace``, ``middlemarch``,
``two-cities``; N >= 1) and the prefix must match ``book``; the sentence has 8-60 words; the question may share
content words with the sentence but not more than 60% of the sentence's content words; and no sentence may equal,
contain or be contained in a sentence of ``book_questions.jsonl``. All other checks are the same.

``--books`` defaults to ``shared/data/books`` next to the repository (``<repo>/../shared/data/books``). If that
folder is missing, the check says so and exits 0 (skipped). Prints each problem with the pair's id and exits 1 if
there is any, else prints the counts per book and exits 0.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import unicodedata
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO / "data" / "train" / "book_questions.jsonl"
NATURAL_DATA = REPO / "data" / "train" / "book_questions_natural.jsonl"
DEFAULT_BOOKS = REPO.parent / "shared" / "data" / "books"
BOOKS = ("dracula.txt", "moby_dick.txt", "war_and_peace.txt", "middlemarch.txt", "a_tale_of_two_cities.txt")
KEYS = ("id", "book", "sentence", "question", "answers")
MAX_SHARED = 1
# --natural: id prefixes per book, sentence length, and the largest share of the sentence's content words that the
# question may repeat.
NATURAL_PREFIX = {"dracula": "dracula.txt", "moby-dick": "moby_dick.txt", "war-and-peace": "war_and_peace.txt",
                  "middlemarch": "middlemarch.txt", "two-cities": "a_tale_of_two_cities.txt"}
NATURAL_ID = re.compile(r"^nat-(" + "|".join(re.escape(k) for k in NATURAL_PREFIX) + r")-([1-9][0-9]*)$")
NATURAL_WORDS = (8, 60)
NATURAL_MAX_SHARE = 0.6

# Function words: articles, pronouns, auxiliaries, prepositions, conjunctions, question words, determiners,
# quantifiers and a few particles. Every other word of 3+ letters counts as a content word.
FUNCTION = set("""
a an the this that these those such
i me my mine myself we us our ours ourselves you your yours yourself yourselves he him his himself she her hers
herself it its itself they them their theirs themselves thee thou thy thine ye
who whom whose which what where when why how whoever whatever whenever wherever whichever
is are was were be been being am do does did doing done have has had having
will would shall should can could may might must ought shalt wilt hath doth art
of in on at by for with from to into onto upon about above below over under beneath beside besides between
among amongst through throughout during without within after before against across along alongside around round
behind beyond near off out up down till until since as than via per toward towards amid amidst past
and or but nor so if then else yet because though although while whilst whether either neither
not no yes also too very there here any some each every all both other another own same
more most much many few less least ever even just like only
s t d ll re ve o
""".split())

WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*|\d+")


def fold(text: str) -> str:
    """Lower case, accents dropped ("Kurágin" -> "kuragin"), curly apostrophes made straight."""
    text = unicodedata.normalize("NFKD", text)
    return "".join(c for c in text if not unicodedata.combining(c)).lower().replace("’", "'")


def words(text: str) -> list[str]:
    return WORD.findall(fold(text))


def content(text: str) -> set[str]:
    out = set()
    for w in words(text):
        w = re.sub(r"'s$", "", w)
        if len(w) >= 3 and w not in FUNCTION:
            out.add(w)
    return out


def check(path: Path, books: Path, natural: bool = False) -> int:
    if not books.is_dir():
        print(f"skipped: books folder {books} not found")
        return 0
    texts: dict[str, str] = {}
    for name in BOOKS:
        p = books / name
        if p.is_file():
            texts[name] = p.read_text(encoding="utf-8")
    problems: list[str] = []
    ids: Counter[str] = Counter()
    per_book: Counter[str] = Counter()
    seen_sentences: dict[str, str] = {}
    old_sentences: list[str] = []
    if natural and DEFAULT_DATA.is_file():
        for line in DEFAULT_DATA.read_text(encoding="utf-8").splitlines():
            try:
                old = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(old, dict) and isinstance(old.get("sentence"), str):
                old_sentences.append(old["sentence"])
    keys = KEYS + ("kind",) if natural else KEYS
    n = 0
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        n += 1
        try:
            pair = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {lineno}: invalid JSON ({exc})")
            continue
        pid = pair.get("id", f"line {lineno}") if isinstance(pair, dict) else f"line {lineno}"
        if not isinstance(pair, dict) or any(k not in pair for k in keys):
            problems.append(f"{pid}: missing keys {[k for k in keys if not isinstance(pair, dict) or k not in pair]}")
            continue
        if any(not isinstance(pair[k], str) for k in keys if k != "answers"):
            problems.append(f"{pid}: id, book, sentence and question must be strings")
            continue
        ids[pid] += 1
        book, sentence, question, answers = pair["book"], pair["sentence"], pair["question"], pair["answers"]
        if book not in BOOKS:
            problems.append(f"{pid}: book {book!r} is not one of the five training books")
            continue
        per_book[book] += 1
        if natural:
            if pair["kind"] != "natural":
                problems.append(f"{pid}: kind {pair['kind']!r} is not 'natural'")
            m = NATURAL_ID.match(pid)
            if not m:
                problems.append(f"{pid}: id is not of the form nat-<book>-<N>")
            elif NATURAL_PREFIX[m.group(1)] != book:
                problems.append(f"{pid}: id prefix {m.group(1)!r} does not match book {book!r}")
            for old in old_sentences:
                if old == sentence or old in sentence or sentence in old:
                    problems.append(f"{pid}: sentence reuses a sentence of {DEFAULT_DATA.name}")
                    break
        lo, hi = NATURAL_WORDS if natural else (10, 60)
        nwords = len(sentence.split())
        if not lo <= nwords <= hi:
            problems.append(f"{pid}: sentence has {nwords} words ({lo}-{hi})")
        if book not in texts:
            problems.append(f"{pid}: {books / book} not found")
        else:
            count = texts[book].count(sentence)
            if count != 1:
                problems.append(f"{pid}: sentence occurs {count} times in {book} (must be exactly once)")
        if sentence in seen_sentences:
            problems.append(f"{pid}: same sentence as {seen_sentences[sentence]}")
        seen_sentences.setdefault(sentence, pid)
        if not question.rstrip().endswith("?"):
            problems.append(f"{pid}: question does not end with '?'")
        if not isinstance(answers, list) or not 1 <= len(answers) <= 3 or any(not isinstance(a, str) for a in answers):
            problems.append(f"{pid}: answers must be a list of 1-3 strings")
            continue
        for ans in answers:
            if not 1 <= len(ans.split()) <= 6:
                problems.append(f"{pid}: answer {ans!r} has {len(ans.split())} words (1-6)")
            if ans not in sentence:
                problems.append(f"{pid}: answer {ans!r} is not in the sentence")
            if fold(ans) in fold(question):
                problems.append(f"{pid}: answer {ans!r} occurs in the question")
        shared = sorted(content(question) & content(sentence))
        if natural:
            total = len(content(sentence))
            if total and len(shared) / total > NATURAL_MAX_SHARE:
                problems.append(f"{pid}: question shares {len(shared)} of the sentence's {total} content words "
                                f"(more than {NATURAL_MAX_SHARE:.0%}): {shared}")
        elif len(shared) > MAX_SHARED:
            problems.append(f"{pid}: question shares {len(shared)} content words with the sentence: {shared}")
    for pid, c in ids.items():
        if c > 1:
            problems.append(f"{pid}: id used {c} times")
    if problems:
        for p in problems:
            print(p)
        print(f"{len(problems)} problem(s) in {n} pairs")
        return 1
    for name in BOOKS:
        print(f"{name}: {per_book[name]}")
    print(f"total: {n} pairs, all checks passed")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("path", nargs="?", type=Path, default=None,
                    help=f"default: {DEFAULT_DATA.name}, or {NATURAL_DATA.name} with --natural")
    ap.add_argument("--books", type=Path, default=DEFAULT_BOOKS, help="folder with the book .txt files")
    ap.add_argument("--natural", action="store_true",
                    help="check natural quiz questions (kind, nat- ids, 8-60 words, at most 60%% shared words)")
    args = ap.parse_args()
    path = args.path if args.path is not None else (NATURAL_DATA if args.natural else DEFAULT_DATA)
    return check(path, args.books, args.natural)


if __name__ == "__main__":
    sys.exit(main())
