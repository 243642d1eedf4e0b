"""Needles in a haystack of real text, RULER-style (our own generator; the task layout follows NVIDIA's RULER).

A *haystack* is a stretch of a book counted in the model's tokens. *Needles* are sentences
"One of the special magic numbers for {key} is: {value}." with an adjective-noun key and a 7-digit value,
put in at sentence boundaries. Tasks:

- ``single``: one needle, asked for.
- ``multikey``: four needles with different keys; one of them is asked for.
- ``multivalue``: one key with four values in four needles; all four must be returned.
- ``multiquery``: four needles with different keys; two keys are asked at once.

The trial's depth (0 = the first sentence, 1 = the end) places the first needle; the others are spread
evenly after it (wrapping round the end), so every needle of a task lies at its own depth.
"""
from __future__ import annotations

import bisect
import random
import re
from dataclasses import dataclass, field

from . import settings

TASKS: tuple[str, ...] = ("single", "multikey", "multivalue", "multiquery")
NEEDLES_PER_TASK = {"single": 1, "multikey": 4, "multivalue": 4, "multiquery": 4}
NEEDLE = "One of the special magic numbers for {key} is: {value}."

ADJECTIVES = (
    "amber", "ancient", "bitter", "bold", "brave", "brisk", "calm", "clever", "crimson", "curious", "damp", "dusty",
    "eager", "early", "faint", "fierce", "fragile", "gentle", "gloomy", "golden", "grumpy", "hollow", "humble",
    "icy", "jolly", "keen", "lazy", "little", "lively", "lonely", "loud", "lucky", "mellow", "misty", "modest",
    "narrow", "nimble", "noisy", "odd", "pale", "patient", "plain", "polite", "proud", "quiet", "rapid", "rough",
    "rusty", "shy", "silent", "silver", "sleepy", "smooth", "sour", "steady", "stormy", "sturdy", "swift", "tender",
    "tidy", "vivid", "wary", "wild", "witty", "wooden", "young", "zealous",
)
NOUNS = (
    "anchor", "apron", "badger", "barrel", "beacon", "beetle", "blanket", "bucket", "candle", "canyon", "carpet",
    "castle", "cellar", "chimney", "compass", "cradle", "dolphin", "donkey", "engine", "falcon", "feather", "fiddle",
    "garden", "glacier", "goblet", "hammer", "harbor", "helmet", "island", "kettle", "ladder", "lantern", "lemon",
    "meadow", "mirror", "needle", "orchard", "otter", "paddle", "parrot", "pebble", "pepper", "pillow", "puzzle",
    "rabbit", "ribbon", "saddle", "salmon", "scarf", "shovel", "spider", "squirrel", "statue", "teapot", "thimble",
    "tiger", "trumpet", "tunnel", "turnip", "violin", "wagon", "walrus", "whistle", "window", "wizard", "zebra",
)
_SENTENCE_START = re.compile(r"(?<=[.!?\"'\u201d)])\s+(?=\S)|\n\s*\n\s*(?=\S)")  # after a sentence or paragraph


@dataclass
class Needle:
    key: str
    value: str
    depth: float  # asked-for place, 0..1 of the haystack
    char_start: int = 0  # span in the finished document, [start, end)
    char_end: int = 0

    @property
    def text(self) -> str:
        return NEEDLE.format(key=self.key, value=self.value)


@dataclass
class Trial:
    """One generated example: the document to memorize, the question, and what a right answer contains."""

    task: str
    length: int  # asked-for document length in tokens
    depth: float  # the trial's depth (of the first needle)
    document: str
    needles: list[Needle]
    asked: list[int]  # indices into ``needles`` of the needles whose values the question asks for
    question: str
    expected: list[str] = field(default_factory=list)  # values a right answer contains
    answer_prefix: str = ""  # what RULER's template makes the answer begin with (``answer_prefix_for``)

    @property
    def asked_needles(self) -> list[Needle]:
        return [self.needles[i] for i in self.asked]


class Haystack:
    """A book's text tokenized once, so stretches of an exact token count can be cut from it."""

    def __init__(self, text: str, tokenizer) -> None:
        self.text = text
        self.tokenizer = tokenizer
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        self.offsets: list[tuple[int, int]] = [tuple(o) for o in enc["offset_mapping"]]

    def __len__(self) -> int:
        return len(self.offsets)

    def count(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def stretch(self, n_tokens: int, rng: random.Random) -> str:
        """``n_tokens`` consecutive tokens of the text from a random start (as text)."""
        if n_tokens < 1 or n_tokens > len(self):
            raise ValueError(f"the text has {len(self)} tokens; a haystack of {n_tokens} filler tokens does not fit")
        start = rng.randrange(0, len(self) - n_tokens + 1)
        return self.text[self.offsets[start][0]:self.offsets[start + n_tokens - 1][1]]


def even_depths(n: int) -> list[float]:
    """``n`` depths spread evenly from 0 to 1, ends included (one trial: the middle)."""
    return [0.5] if n == 1 else [i / (n - 1) for i in range(n)]


def random_keys(n: int, rng: random.Random) -> list[str]:
    """``n`` different adjective-noun keys ("rusty-lantern")."""
    pairs = rng.sample(range(len(ADJECTIVES) * len(NOUNS)), n)
    return [f"{ADJECTIVES[p // len(NOUNS)]}-{NOUNS[p % len(NOUNS)]}" for p in pairs]


def random_values(n: int, rng: random.Random) -> list[str]:
    """``n`` different 7-digit numbers, as strings."""
    return [str(v) for v in rng.sample(range(1_000_000, 10_000_000), n)]


def question_for(task: str, keys: list[str]) -> str:
    """The question of a task about the asked keys (RULER's wording, asked after the document)."""
    if task == "multivalue":
        return f"What are all the special magic numbers for {keys[0]} mentioned in the provided text?"
    if len(keys) > 1:
        return f"What are all the special magic numbers for {', '.join(keys[:-1])} and {keys[-1]} mentioned in the provided text?"
    return f"What is the special magic number for {keys[0]} mentioned in the provided text?"


def answer_prefix_for(task: str, keys: list[str]) -> str:
    """The start RULER's niah templates give the answer (their ``answer_prefix``), in the question's wording:
    the model continues it with the value(s)."""
    if task == "multivalue":
        return f"The special magic numbers for {keys[0]} mentioned in the provided text are"
    if len(keys) > 1:
        return f"The special magic numbers for {', '.join(keys[:-1])} and {keys[-1]} mentioned in the provided text are"
    return f"The special magic number for {keys[0]} mentioned in the provided text is"


def sentence_starts(text: str) -> list[int]:
    """Character positions where a sentence or paragraph begins (0 included), ascending (hard line breaks
    inside a paragraph are not sentence starts)."""
    return [0] + [m.end() for m in _SENTENCE_START.finditer(text)]


def insertion_point(text: str, starts: list[int], depth: float) -> int:
    """Where a needle at ``depth`` goes: the sentence start nearest ``depth * len(text)``; if none lies within
    ``settings.NEEDLES.snap_chars``, the nearest word start; the very end for depth 1."""
    target = round(depth * len(text))
    if depth >= 1.0:
        return len(text)
    i = bisect.bisect_left(starts, target)
    near = [starts[j] for j in (i - 1, i) if 0 <= j < len(starts)]
    best = min(near, key=lambda s: abs(s - target)) if near else None
    if best is not None and abs(best - target) <= settings.NEEDLES.snap_chars:
        return best
    space = text.rfind(" ", 0, target)
    return space + 1 if space >= 0 else 0


def insert_needles(filler: str, needles: list[Needle]) -> str:
    """The filler with every needle put in at its depth; sets each needle's character span."""
    starts = sentence_starts(filler)
    points = sorted(((insertion_point(filler, starts, n.depth), i) for i, n in enumerate(needles)))
    pieces, pos, out_len = [], 0, 0
    for point, i in points:
        pieces.append(filler[pos:point])
        out_len += point - pos
        before = "" if point == 0 or filler[point - 1].isspace() else " "
        after = " " if point < len(filler) else ""
        needle = needles[i]
        needle.char_start = out_len + len(before)
        needle.char_end = needle.char_start + len(needle.text)
        pieces.append(before + needle.text + after)
        out_len += len(before) + len(needle.text) + len(after)
        pos = point
    pieces.append(filler[pos:])
    return "".join(pieces)


def make_trial(haystack: Haystack, task: str, length: int, depth: float, rng: random.Random) -> Trial:
    """One trial of ``task``: a document of about ``length`` tokens (the model's tokenizer; within a few tokens
    where needles meet the text) holding the task's needles, the first at ``depth``."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    n = NEEDLES_PER_TASK[task]
    keys = random_keys(1, rng) * n if task == "multivalue" else random_keys(n, rng)
    values = random_values(n, rng)
    depths = [depth] + [(depth + i / n) % 1.0 for i in range(1, n)]
    needles = [Needle(k, v, d) for k, v, d in zip(keys, values, depths)]
    asked = {"single": [0], "multikey": [0], "multivalue": list(range(n)),
             "multiquery": [0, rng.randrange(1, n)] if n > 1 else [0]}[task]
    needle_tokens = sum(haystack.count(" " + nd.text) for nd in needles)
    filler = haystack.stretch(length - needle_tokens, rng)
    document = insert_needles(filler, needles)
    asked_keys = list(dict.fromkeys(needles[i].key for i in asked))
    return Trial(task=task, length=length, depth=depth, document=document, needles=needles, asked=asked,
                 question=question_for(task, asked_keys), expected=[needles[i].value for i in asked],
                 answer_prefix=answer_prefix_for(task, asked_keys))


def string_match_all(output: str, expected: list[str]) -> float:
    """RULER's score: the share of expected strings found in the output (case-insensitive)."""
    if not expected:
        raise ValueError("nothing expected")
    out = output.lower()
    return sum(e.lower() in out for e in expected) / len(expected)


def spans_overlap(a_start: int, a_end: int, b_start: int, b_end: int) -> bool:
    """Do the half-open spans [a_start, a_end) and [b_start, b_end) share a character?"""
    return a_start < b_end and b_start < a_end
