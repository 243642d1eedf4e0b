"""Check the hand-written paraphrase training pairs (``data/train/paraphrase_train.jsonl``).

Standard library only. Each line is ``{"id", "kind", "fact", "question", "answers", "link"}``; the checks:

* valid JSON per line, the required keys, string fields, 1-3 answers, unique ids of the form ``<kind>-t<N>``;
* the 8 kinds, and how many pairs each has;
* ``fact``: 8-25 words; ``question``: ends with "?";
* every answer is a whole-word, case-sensitive substring of its fact and does not occur (whole word,
  case-insensitively) in its question;
* the question shares no content word with the fact (content word: any word not in ``STOP`` below), and
  outside kind ``form`` no word stem either: two content words of 5+ letters with the same first 5 letters, or
  a 4-letter content word that begins the other word ("sing" / "singer");
* no fact or question repeated, no surname repeated (the last word of each run of 2+ capitalised words in a
  fact, e.g. "Aldous Pennick"), no link ("a = b") used more than twice.

    python3 scripts/data/check_paraphrase_train.py [path]

Prints each problem with the pair's id and exits 1 if there is any, else prints the counts and exits 0.
"""
from __future__ import annotations

import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

DEFAULT = Path(__file__).resolve().parents[2] / "data" / "train" / "paraphrase_train.jsonl"
KINDS = ("synonym", "description", "category", "form", "number", "landmark", "time", "negation")
KEYS = ("id", "kind", "fact", "question", "answers", "link")

# Function words: articles, pronouns, auxiliaries, prepositions, conjunctions, question words, determiners,
# and a few particles of names ("de", "la", "van"...). Every other word counts as a content word.
STOP = set("""
a an the this that these those such
i me my mine myself we us our ours ourselves you your yours yourself he him his himself she her hers herself
it its itself they them their theirs themselves one's
who whom whose which what where when why how whoever whatever whenever wherever whichever
is are was were be been being am do does did doing have has had having
will would shall should can could may might must ought
of in on at by for with from to into onto upon about above below over under beneath beside besides between
among amongst through throughout during without within after before against across along alongside around round behind
beyond near off out up down till until since as than via per toward towards amid amidst aboard past
and or but nor so if then else yet because though although while whilst whether either neither
not no yes also too very there here any some each every all both other another own same
more most much many few less least
ever even just away like
s t d ll re ve o
de la le les du des da di del della van von der den ter af y
""".split())

# Last words of capitalised runs that are not surnames (feasts and days: "Christmas Day", "Midsummer Eve").
NOT_SURNAMES = set("day eve sunday monday tuesday wednesday thursday friday saturday".split())

WORD = re.compile(r"[^\W\d_]+|\d+")
CAPRUN = re.compile(r"[A-Z][\w'’-]*(?:\s+(?:(?:de|la|le|du|van|von|der|den|ter|af|di|da)\s+)*[A-Z][\w'’-]*)+")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def content(text: str) -> set[str]:
    return {w for w in words(text) if w not in STOP and len(w) > 1}


def same_stem(a: str, b: str) -> bool:
    if a == b:
        return True
    if len(a) >= 5 and len(b) >= 5:
        return a[:5] == b[:5]
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return len(short) == 4 and long_.startswith(short)


def whole_word(needle: str, hay: str, flags: int = 0) -> bool:
    return re.search(r"(?<!\w)" + re.escape(needle) + r"(?!\w)", hay, flags) is not None


def surnames(fact: str) -> list[str]:
    out = []
    for run in CAPRUN.findall(fact):
        last = re.split(r"\s+", run)[-1]
        last = re.sub(r"(['’]s|['’])$", "", last)
        if last.lower() not in NOT_SURNAMES:
            out.append(last.lower())
    return out


def check(path: Path) -> int:
    problems: list[str] = []
    pairs: list[dict] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(f"line {n}: invalid JSON ({e})")
            continue
        if not isinstance(obj, dict) or any(k not in obj for k in KEYS):
            problems.append(f"line {n}: missing keys {[k for k in KEYS if k not in obj]}")
            continue
        pairs.append(obj)

    ids = Counter(p["id"] for p in pairs)
    problems += [f"{i}: id used {c} times" for i, c in ids.items() if c > 1]
    for field in ("fact", "question"):
        seen = Counter(p[field].strip().lower() for p in pairs if isinstance(p[field], str))
        problems += [f"{field} repeated {c} times: {t[:60]}" for t, c in seen.items() if c > 1]

    surname_ids: dict[str, list[str]] = defaultdict(list)
    links: dict[str, list[str]] = defaultdict(list)
    for p in pairs:
        pid, kind, fact, q, answers, link = (p[k] for k in KEYS)
        if not all(isinstance(x, str) for x in (pid, kind, fact, q, link)):
            problems.append(f"{pid}: id, kind, fact, question and link must be strings")
            continue
        if kind not in KINDS:
            problems.append(f"{pid}: unknown kind {kind!r}")
        if not re.fullmatch(re.escape(kind) + r"-t\d+", pid):
            problems.append(f"{pid}: id should be '{kind}-t<N>'")
        nw = len(fact.split())
        if not 8 <= nw <= 25:
            problems.append(f"{pid}: fact has {nw} words (8-25)")
        if not q.strip().endswith("?"):
            problems.append(f"{pid}: question does not end with '?'")
        if not link.strip():
            problems.append(f"{pid}: empty link")
        if not isinstance(answers, list) or not 1 <= len(answers) <= 3 or not all(isinstance(a, str) and a for a in answers):
            problems.append(f"{pid}: answers must be a list of 1-3 non-empty strings")
        else:
            for a in answers:
                if not whole_word(a, fact):
                    problems.append(f"{pid}: answer {a!r} is not a whole-word substring of the fact")
                if whole_word(a, q, re.IGNORECASE):
                    problems.append(f"{pid}: answer {a!r} appears in the question")
        fw, qw = content(fact), content(q)
        shared = sorted(fw & qw)
        if shared:
            problems.append(f"{pid}: question shares content words {shared}")
        if kind != "form":
            stems = sorted({f"{x}~{y}" for x in qw for y in fw if x != y and same_stem(x, y)})
            if stems:
                problems.append(f"{pid}: question shares word stems {stems}")
        for s in surnames(fact):
            surname_ids[s].append(pid)
        for part in link.split(","):
            if "=" in part:
                a, b = (x.strip().lower() for x in part.split("=", 1))
                links[" = ".join(sorted((a, b)))].append(pid)

    for s, where in surname_ids.items():
        if len(set(where)) > 1:
            problems.append(f"surname {s!r} in several pairs: {sorted(set(where))}")
    for l, where in links.items():
        if len(where) > 2:
            problems.append(f"link {l!r} used {len(where)} times: {where}")

    kinds = Counter(p["kind"] for p in pairs)
    missing = [k for k in KINDS if k not in kinds]
    if missing:
        problems.append(f"kinds with no pair: {missing}")

    for line in problems:
        print(line)
    print(f"{len(pairs)} pairs; " + ", ".join(f"{k} {kinds.get(k, 0)}" for k in KINDS))
    print(f"{len(problems)} problem(s)" if problems else "OK")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(check(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT))
