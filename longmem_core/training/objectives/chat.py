"""Chat-format examples: answers in the backbone's chat template, with a document in memory when the example has
one, so that a SideNet trained on books keeps answering fluently in chat. The loss is the mean next-token loss of
the answer's tokens (its end-of-turn token included), nothing else.

An example file is JSON lines: {"question": ..., "answer": ..., "context": optional text read into memory first}.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ...config import ChatTrainConfig
from ...model.segments import segment_tokens
from . import batch_rng, weighted_nll
from .recall import build_bank


@dataclass
class ChatExample:
    question: str
    answer: str
    context: str = ""  # read into memory before the question (empty: no memory)


def read_chat_examples(paths: list[str]) -> list[ChatExample]:
    """Every line of every .jsonl file as an example; an error names the file and line of a bad one."""
    examples = []
    for path in paths:
        for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                examples.append(ChatExample(str(row["question"]), str(row["answer"]), str(row.get("context") or "")))
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{n}: not a chat example ({exc})") from exc
    if not examples:
        raise ValueError(f"no chat examples in {paths}")
    return examples


def chat_ids(model, ex: ChatExample) -> tuple[list[int], int]:
    """The prompt through the chat template followed by the answer and its end-of-turn token; returns the ids and
    the position of the answer's first token."""
    tok = model.tokenizer
    prompt = model.chat_ids(ex.question)
    messages = [{"role": "user", "content": ex.question}, {"role": "assistant", "content": ex.answer}]
    full = model.with_sink(tok(tok.apply_chat_template(messages, tokenize=False), add_special_tokens=False)["input_ids"])
    if full[:len(prompt)] != prompt:  # a template that renders the turn differently: answer + end-of-turn by hand
        full = prompt + tok(ex.answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    answer = full[len(prompt):]
    if tok.eos_token_id in answer:  # stop at the end of the turn (what follows it is the template's padding)
        answer = answer[:answer.index(tok.eos_token_id) + 1]
    return prompt + answer, len(prompt)


class ChatExamples:
    """Each batch: ``cfg.batch`` examples drawn with the seed; the memory of an example's context is read once."""

    kind = "chat"

    def __init__(self, model, examples: list[ChatExample], cfg: ChatTrainConfig,
                 val_examples: list[ChatExample] | None = None) -> None:
        self.model, self.examples, self.cfg, self.val_examples = model, examples, cfg, val_examples or []
        self._memory: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}  # context -> its segments' K/V

    def _bank(self, context: str):
        if not context:
            return None
        if context not in self._memory:
            ids = self.model.tokenizer(context, add_special_tokens=False)["input_ids"]
            seg = segment_tokens(self.model)
            self._memory[context] = [self.model.segment_kv(ids[s:s + seg]) for s in range(0, len(ids), seg)]
        return build_bank(self.model, self._memory[context])

    def loss(self, ex: ChatExample) -> tuple[torch.Tensor, int]:
        """Mean next-token loss of the answer's tokens, and their count."""
        ids, first = chat_ids(self.model, ex)
        x = torch.tensor([ids], device=self.model.device)
        logits = self.model(x, self._bank(ex.context)).logits[0, first - 1:-1]  # predicting each answer token
        n = len(ids) - first
        return weighted_nll(logits, x[0, first:]) / n, n

    def accumulate(self, batch: int) -> dict[str, float]:
        rng = batch_rng(self.cfg.seed, batch)
        total, tokens = 0.0, 0
        for _ in range(self.cfg.batch):
            loss, n = self.loss(rng.choice(self.examples))
            (loss / self.cfg.batch).backward()
            total, tokens = total + loss.item(), tokens + n
        return {"loss": total / self.cfg.batch, "tokens": tokens}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        if not self.val_examples:
            return {}
        return {"val_answer_loss": sum(float(self.loss(ex)[0]) for ex in self.val_examples) / len(self.val_examples)}
