"""Recall: train the memory layer (attention projections and gates) to *use* what it retrieves, i.e. to bring a
fact read thousands of tokens earlier into the prediction.

Shape legend: n tokens of a segment, G kv heads, D head dim.

An example is built like the pass-key test, with training wordings (``facts.py``; the pass key's wording is never
trained on):
* memory: a few consecutive segments of a training book (read once, their memory keys/values cached) and, at a
  random place among them, a fresh segment of that book with a fact spliced in at a random depth;
* local context: a window of the same book, then a question about the fact and its answer.

The loss is the next-token loss on the answer's tokens plus ``lm_weight`` times the loss on the local book text
(which keeps the model a language model where memory holds nothing useful).
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ...config import RecallTrainConfig
from ...model.segments import segment_tokens
from ..facts import Fact, chat_question_ids, insert_fact, make_fact
from ..corpus import book_ids
from . import batch_rng, weighted_nll


@dataclass
class Excerpt:
    """Consecutive segments of one book as the backbone read them: memory keys/values per segment."""

    ids: list[int]  # the whole book's token ids (for fact windows and local text)
    start: int  # first token of the excerpt
    keys: list[torch.Tensor] = field(default_factory=list)  # per segment [n, G, D] float16
    values: list[torch.Tensor] = field(default_factory=list)


def read_excerpts(model, books: list[str], n_segments: int, seed: int, log=print) -> list[Excerpt]:
    rng = random.Random(seed)
    seg = segment_tokens(model)
    out = []
    for path in books:
        t0 = time.perf_counter()
        ids = book_ids(model.tokenizer, path)
        start = rng.randrange(0, max(1, len(ids) - seg * n_segments))
        ex = Excerpt(ids=ids, start=start)
        for i in range(n_segments):
            k, v = model.segment_kv(ids[start + i * seg:start + (i + 1) * seg])
            ex.keys.append(k.half().cpu())
            ex.values.append(v.half().cpu())
        out.append(ex)
        log(f"read {Path(path).name}: {n_segments} segments in {time.perf_counter() - t0:.0f} s")
    return out


@dataclass
class RecallExample:
    bank_parts: list[tuple[torch.Tensor, torch.Tensor]]  # memory segments in reading order
    input_ids: list[int]  # local context + question + answer (sink token first)
    weights: list[float]  # per predicted position (len(input_ids) - 1): loss weight of the next token
    # (the answer's tokens share weight 1, the local book text's tokens share lm_weight)
    answer: list[int]  # positions (in input_ids) of the answer's value tokens
    fact: Fact


def make_example(model, ex: Excerpt, rng: random.Random, cfg: RecallTrainConfig,
                 evaluation: bool = False) -> RecallExample:
    """One example from an excerpt: memory = 1..all of its cached segments with a fresh fact segment among them;
    input = book text that follows them, a question about the fact, the answer (``evaluation``: held-out wordings)."""
    tok = model.tokenizer
    seg = segment_tokens(model)
    n_mem = rng.randint(1, len(ex.keys))
    fact = make_fact(rng, evaluation)
    lo = min(64, seg // 4)
    length = rng.randint(lo, max(lo, min(cfg.fact_window, seg - lo)))  # book text around the fact
    s = rng.randrange(0, len(ex.ids) - length)
    fact_ids, _ = insert_fact(tok, ex.ids[s:s + length], fact, rng)
    k, v = model.segment_kv(fact_ids[:seg])
    parts = [(ex.keys[i], ex.values[i]) for i in range(n_mem)]
    parts.insert(rng.randint(0, n_mem), (k, v))
    after = ex.start + n_mem * seg  # local book text: what follows the memory segments in the book
    local = ex.ids[after:after + rng.randint(16, cfg.local_tokens)]
    if rng.random() < cfg.chat_share and not evaluation:
        question = chat_question_ids(model, fact.question)
        answer_text = f"{fact.value}."
    else:
        question = tok(" " + fact.question, add_special_tokens=False)["input_ids"]
        answer_text = f" {fact.value}."
    enc = tok(answer_text, add_special_tokens=False, return_offsets_mapping=True)
    answer_ids = enc["input_ids"]
    vs = answer_text.rindex(fact.value)
    value_tokens = [i for i, (a, b) in enumerate(enc["offset_mapping"]) if b > vs and a < vs + len(fact.value)]
    ids = model.with_sink(local + question + answer_ids)
    first_answer = len(ids) - len(answer_ids)
    weights = [0.0] * (len(ids) - 1)
    start = len(ids) - len(local + question + answer_ids)
    for p in range(start, start + len(local) - 1):  # predicting the book's next token
        weights[p] = cfg.lm_weight / max(len(local) - 1, 1)
    for p in range(first_answer, len(ids)):  # predicting each answer token
        weights[p - 1] = 1.0 / len(answer_ids)
    return RecallExample(bank_parts=parts, input_ids=ids, weights=weights,
                         answer=[first_answer + i for i in value_tokens], fact=fact)


def build_bank(model, parts: list[tuple[torch.Tensor, torch.Tensor]], shift_values: bool = False):
    """A bank holding ``parts`` in order. ``shift_values`` (an experiment, not the paper's design): each token's
    key is stored with the value of the token *after* it in its segment (the last token keeps its own), so a query
    that finds an earlier occurrence of the current token reads what followed it."""
    bank = model.new_bank(capacity=max(model.cfg.capacity, sum(k.shape[0] for k, _ in parts) + 64))
    offset = 0
    for k, v in parts:
        if shift_values:
            v = torch.cat([v[1:], v[-1:]])  # [n, G, D]
        bank.add(k.to(model.device, torch.float32), v.to(model.device, torch.float32), token_start=offset)
        offset += k.shape[0]
    return bank


def example_loss(model, ex: RecallExample, use_memory: bool = True,
                 shift_values: bool = False) -> tuple[torch.Tensor, bool]:
    """Weighted next-token loss of an example, and whether every value token was the model's top choice."""
    bank = build_bank(model, ex.bank_parts, shift_values) if use_memory else None
    x = torch.tensor([ex.input_ids], device=model.device)
    logits = model(x, bank).logits[0, :-1]  # [T-1, V]
    loss = weighted_nll(logits, x[0, 1:], torch.tensor(ex.weights, device=logits.device))
    hit = all(int(logits[p - 1].argmax()) == ex.input_ids[p] for p in ex.answer)
    return loss, hit


@torch.no_grad()
def evaluate_recall(model, examples: list[RecallExample], shift_values: bool = False) -> dict:
    """Share of held-out facts whose value tokens are all the model's top choice (teacher-forced), with and
    without memory, and the mean answer loss."""
    res = {}
    for name, mem in (("memory", True), ("no_memory", False)):
        hits, loss = 0, 0.0
        for ex in examples:
            l, h = example_loss(model, ex, mem, shift_values)
            hits, loss = hits + h, loss + float(l)
        res[f"recall_{name}"] = hits / max(len(examples), 1)
        res[f"loss_{name}"] = loss / max(len(examples), 1)
    return res


class Recall:
    """Each batch: ``cfg.batch`` fresh examples from the training excerpts, one backward each."""

    kind = "recall"

    def __init__(self, model, excerpts: list[Excerpt], cfg: RecallTrainConfig,
                 eval_examples: list[RecallExample] | None = None) -> None:
        self.model, self.excerpts, self.cfg, self.eval_examples = model, excerpts, cfg, eval_examples

    def accumulate(self, batch: int) -> dict[str, float]:
        rng = batch_rng(self.cfg.seed, batch)
        total, hits, tokens = 0.0, 0, 0
        for _ in range(self.cfg.batch):
            ex = make_example(self.model, rng.choice(self.excerpts), rng, self.cfg)
            loss, hit = example_loss(self.model, ex, shift_values=self.cfg.shift_values)
            (loss / self.cfg.batch).backward()
            total, hits, tokens = total + loss.item(), hits + hit, tokens + len(ex.input_ids) - 1
        return {"loss": total / self.cfg.batch, "train_recall": hits / self.cfg.batch, "tokens": tokens}

    def validate(self) -> dict:
        return evaluate_recall(self.model, self.eval_examples, self.cfg.shift_values) if self.eval_examples else {}
