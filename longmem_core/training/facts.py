"""Synthetic facts planted in book text: a short sentence ("The door code is 4412.") and a question about it.

Used by training (retrieval and recall objectives) and by evaluations. Training wordings and evaluation wordings
(``EVAL_*``) share no key name, so a gain on held-out facts is not a gain from having seen the words; the pass
key's wording is never trained on.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

TRAIN_KEYS = ["secret code", "door code", "access number", "account number", "magic number", "lucky number",
              "safe combination", "ticket number", "room number", "serial number", "password", "secret word",
              "code word", "locker number", "phone extension", "favourite number", "special number", "order number",
              "meeting room", "hidden word", "gate code", "alarm code", "badge number", "boat name"]
TRAIN_FACTS = [
    " The {k} is {v}.",
    " Note that the {k} is {v}. Do not forget it.",
    " Please remember this: the {k} is {v}.",
    " By the way, the {k} is {v}, in case you need it.",
    " Important: the {k} is {v}. Keep it safe.",
    " The {k} you will need later is {v}.",
    " Here is the {k}. The {k} is {v}. I repeat, the {k} is {v}.",
    " {n}'s {k} is {v}.",
    " {n} said that the {k} was {v}.",
    " Write it down somewhere: {k}: {v}.",
]
TRAIN_QUESTIONS = [
    "What is the {k}? The {k} is",
    "Tell me the {k}. The {k} is",
    "Do you remember the {k}? The {k} is",
    "Question: what is the {k}? Answer: the {k} is",
    "What was the {k}?",
    "I need the {k}.",
    "What is {n}'s {k}? {n}'s {k} is",
    "Which {k} is mentioned in the text?",
    "What {k} was given earlier in the document?",
]
EVAL_KEYS = ["pass key", "vault code", "launch number", "hidden number", "secret phrase", "combination"]
EVAL_FACTS = [
    " The {k} is {v}. Remember it. {v} is the {k}.",
    " Listen carefully: the {k} is {v}.",
    " {n} whispered that the {k} was {v}.",
]
EVAL_QUESTIONS = ["What is the {k}? The {k} is", "Can you recall the {k}? It is", "The {k} is"]
NAMES = ["Anna", "Boris", "Clara", "Dmitri", "Elena", "Felix", "Greta", "Hugo", "Irene", "Jonas", "Karl", "Lena",
         "Marta", "Nils", "Olga", "Pavel", "Rosa", "Stefan", "Tilda", "Viktor"]
WORDS = ["lantern", "harbour", "violet", "granite", "saffron", "meadow", "falcon", "copper", "orchid", "thimble",
         "juniper", "quartz", "marble", "willow", "cobalt", "ember", "pepper", "walrus", "velvet", "tundra"]


@dataclass
class Fact:
    text: str  # the planted sentence, starting with a space
    question: str
    value: str  # the answer: a number of 3-7 digits (80%) or a word


def make_fact(rng: random.Random, evaluation: bool = False) -> Fact:
    """A random fact and a question about it, in training wordings (``evaluation``: the held-out ones)."""
    keys, facts, questions = (EVAL_KEYS, EVAL_FACTS, EVAL_QUESTIONS) if evaluation else (
        TRAIN_KEYS, TRAIN_FACTS, TRAIN_QUESTIONS)
    k, n = rng.choice(keys), rng.choice(NAMES)
    value = str(rng.randrange(10 ** (d := rng.randint(3, 7)) // 10, 10 ** d)) if rng.random() < 0.8 else rng.choice(WORDS)
    fact = rng.choice(facts)
    q = rng.choice([t for t in questions if ("{n}" in t) <= ("{n}" in fact)])  # a name in the question only if the fact has it
    return Fact(fact.format(k=k, v=value, n=n), q.format(k=k, n=n), value)


PLACEMENTS = ("break", "inline", "paragraph", "start", "end")  # where a training fact is planted (``insert_fact``)


def insert_fact(tokenizer, base: list[int], fact: Fact, rng: random.Random,
                placement: str = "break") -> tuple[list[int], list[int]]:
    """``base`` token ids with the fact's tokens spliced in at a random depth; returns the ids and the positions of
    the value's tokens (of its first occurrence in the planted text). ``placement``: "break" before a line break
    (else after a full stop), "inline" after a full stop inside the text, "paragraph" as a paragraph of its own at a
    line break, "start" / "end" at the very start / end of ``base``."""
    pieces = tokenizer.convert_ids_to_tokens(base)
    breaks = [i for i, p in enumerate(pieces) if p.startswith("Ċ")]
    stops = [i + 1 for i, p in enumerate(pieces) if p == "."]
    spots = {"break": breaks or stops, "inline": stops or breaks, "paragraph": breaks or stops,
             "start": [0], "end": [len(base)]}[placement]
    at = rng.choice(spots) if spots else rng.randrange(len(base) + 1)
    text = f"\n\n{fact.text.strip()}\n\n" if placement == "paragraph" else fact.text
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    vs = text.index(fact.value)
    value_pos = [at + i for i, (s, e) in enumerate(enc["offset_mapping"]) if e > vs and s < vs + len(fact.value)]
    return base[:at] + enc["input_ids"] + base[at:], value_pos


def distractor(rng: random.Random, fact: Fact, evaluation: bool = False) -> Fact:
    """Another fact in the same wordings with another key and value: it shares the asked fact's words but not its
    key (planted beside it in training, so the search learns to find the asked key's value, not any value)."""
    while True:
        other = make_fact(rng, evaluation)
        if other.question != fact.question and other.value != fact.value:
            return other


def chat_question_ids(model, question: str) -> list[int]:
    """The question through the model's chat template, without the sink token (``with_sink`` adds it)."""
    ids = model.chat_ids(question)
    return ids[len(model.with_sink([])):]
