"""Generation as small typed functions: ``prefill`` reads the prompt, ``decode_one_token`` reads one token, both
into caches allocated for the whole generation; ``sample_token`` picks the next token; ``generate`` streams text.

One token loop serves every answer mode. A mode that changes the next-token distribution (the copy path of
``neural_cache.py``) passes a ``LogitsHook``: it sees each step (logits, and the backbone's hidden states at the
last position when generating with the backbone alone) and the context so far, and returns the scores to pick
from. Every mode then goes through the repetition guard (``guard_scores``): an answer never says the same
``settings.GENERATION.guard_ngram`` tokens twice, unless it is copying one stretch of stored text that holds both.

Shapes follow ``shapes.py`` (B batch, T tokens, V vocabulary, W width).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator

import torch

from .kv_cache import ModelCaches
from ..limits import check_number
from ..memory.memory_bank import MemoryBank
from . import settings
from .prompts import stop_token_ids
from .side_network import RetrievalTrace

if TYPE_CHECKING:
    from .model import LongMemModel

MAX_TEMPERATURE = 100.0  # sampling temperatures above this are all alike (uniform); larger ones are refused
MAX_CONTEXT = 8192  # tokens one generation holds at most, prompt included (bounds the caches it allocates)
SENTENCE_END = re.compile(r"[.!?\n]")  # a token holding one of these ends a sentence


@dataclass
class Generation:
    """A streaming generation: iterate for text pieces; afterwards ``text``, ``token_ids`` and ``retrieved``."""

    steps: Iterator[str]
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    chunk_mass: dict[int, float] = field(default_factory=dict)  # chunk id -> summed memory attention mass
    memory_share: float = 0.0  # mean share of the memory layer's output that came from memory
    blocked: list[int] = field(default_factory=list)  # answer lengths at which the guard blocked the first choice

    def __iter__(self) -> Iterator[str]:
        return self.steps


@dataclass
class Step:
    """What one forward of a generation gives: the next token's logits and what memory contributed."""

    logits: torch.Tensor  # [V] at the last position read
    trace: RetrievalTrace | None
    hidden_states: list[torch.Tensor] | None = None  # backbone alone: every layer's hidden state at the last
    # position read, [1, 1, W] each (embeddings first), for a logits hook keyed on them; None with the SideNet


@dataclass
class Proposal:
    """What a ``LogitsHook`` makes of a step: the scores the next token is picked from, and what an exact copy of
    stored text proposes (the repetition guard lets a copy through where the stored text itself repeats)."""

    scores: torch.Tensor  # [V] logits or log-probabilities
    copy_tokens: frozenset[int] = frozenset()  # the tokens that followed the copied stretch in stored text
    copy_length: int = 0  # tokens at the end of the context (prompt + answer) that repeat that stored stretch


LogitsHook = Callable[[Step, list[int]], Proposal]  # (step, prompt + answer so far) -> proposal


def _read(model: "LongMemModel", ids: torch.Tensor, bank: MemoryBank | None, caches: ModelCaches,
          backbone_only: bool, top_k: int | None) -> Step:
    """Read ids [1, T] after what ``caches`` hold."""
    if backbone_only:
        hs = model.backbone(ids, caches=caches.backbone).hidden_states  # L + 1 tensors [1, T, W]
        last = [h[:, -1:] for h in hs]  # [1, 1, W] each
        return Step(model.backbone.logits(last[-1])[0, -1], None, last)
    out = model(ids, bank, trace=bank is not None, caches=caches, top_k=top_k)
    return Step(out.logits[0, -1], out.trace)


def prefill(model: "LongMemModel", prompt: torch.Tensor, bank: MemoryBank | None, caches: ModelCaches, *,
            backbone_only: bool = False, top_k: int | None = None) -> Step:
    """Read the prompt [1, T] into empty ``caches``; the logits predict its next token."""
    assert caches.backbone[0].length == 0, "prefill starts a generation: its caches must be empty"
    return _read(model, prompt, bank, caches, backbone_only, top_k)


def decode_one_token(model: "LongMemModel", token: torch.Tensor, bank: MemoryBank | None, caches: ModelCaches, *,
                     backbone_only: bool = False, top_k: int | None = None) -> Step:
    """Read one token [1, 1] after the tokens ``caches`` hold (on a CPU with two threads and
    ``cfg.parallel_decode``, the SideNet runs beside the backbone: ``LongMemModel.forward``)."""
    assert token.shape == (1, 1), f"decode_one_token reads one token, got shape {tuple(token.shape)}"
    return _read(model, token, bank, caches, backbone_only, top_k)


def sample_token(logits: torch.Tensor, temperature: float, top_p: float, generator=None) -> int:
    """Greedy at temperature 0, else nucleus sampling. logits: [V]."""
    if temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    sorted_p, order = probs.sort(descending=True)
    keep = sorted_p.cumsum(0) - sorted_p < top_p  # smallest set whose mass reaches top_p
    sorted_p = sorted_p * keep
    return int(order[torch.multinomial(sorted_p / sorted_p.sum(), 1, generator=generator)])


def repeat_starts(answer: list[int], n: int) -> dict[int, int]:
    """The tokens that would complete an n-gram the answer already holds -> where (index in ``answer``) the
    latest such n-gram starts. Empty while the answer is shorter than n - 1 tokens, or for n < 1."""
    if n < 1 or len(answer) < n - 1:
        return {}
    tail = answer[len(answer) - (n - 1):]
    starts: dict[int, int] = {}
    for i in range(len(answer) - n + 1):
        if answer[i:i + n - 1] == tail:
            starts[answer[i + n - 1]] = i  # later occurrences overwrite earlier ones
    return starts


def guard_scores(proposal: Proposal, answer: list[int], n: int) -> torch.Tensor:
    """The repetition guard: ``proposal.scores`` [V] with every token that would repeat an n-gram of ``answer``
    set to -inf, so the answer never says the same n tokens twice. One exception keeps copying faithful: a token
    the exact copy proposes, when the copied stretch (the last ``copy_length`` tokens of the context) reaches
    back over the earlier occurrence: the stored text itself repeats there, and the answer repeats it with it
    (a pass key such as 11111). A copy that restarts after the answer ended a sentence reaches back no further
    than that sentence, so it cannot make the answer say a sentence twice."""
    scores = proposal.scores.float().cpu()
    starts = repeat_starts(answer, n)
    banned = [t for t, at in starts.items()
              if not (t in proposal.copy_tokens and proposal.copy_length >= len(answer) - at)]
    if not banned:
        return scores
    scores = scores.clone()
    scores[torch.tensor(banned)] = float("-inf")
    return scores


_WORD = re.compile(r"[\w']+")
_SENTENCE = re.compile(r"[^.!?\n]+")


def find_loop(text: str, n: int = 4, times: int = 3, sentence_words: int = 3) -> str | None:
    """Where an answer loops, in words (lowercased runs of letters, digits, apostrophes), whatever the tokens: a run
    of ``n`` words said ``times`` or more times, or a sentence of ``sentence_words`` or more words said twice.
    Returns the repeated words, or None when the text does not loop. (What the guard is checked against: it
    works on tokens, and the same words can be other tokens, " It" and "It".)"""
    words = _WORD.findall(text.lower())
    counts: dict[tuple[str, ...], int] = {}
    for i in range(len(words) - n + 1):
        gram = tuple(words[i:i + n])
        counts[gram] = counts.get(gram, 0) + 1
        if counts[gram] >= times:
            return " ".join(gram)
    seen: set[tuple[str, ...]] = set()
    for piece in _SENTENCE.findall(text.lower()):
        sentence = tuple(_WORD.findall(piece))
        if len(sentence) >= sentence_words:
            if sentence in seen:
                return " ".join(sentence)
            seen.add(sentence)
    return None


@dataclass(frozen=True)
class Decoding:
    """How ``generate`` decodes, its options checked: see its arguments."""

    max_new_tokens: int
    temperature: float
    top_p: float
    backbone_only: bool
    seed: int | None
    top_k: int | None  # tokens retrieved from memory per query token and head
    hook: LogitsHook
    guard_ngram: int


def generate(model: "LongMemModel", prompt_ids: list[int], bank: MemoryBank | None = None, *,
             max_new_tokens: int = 128, temperature: float = 0.0, top_p: float = 0.9, backbone_only: bool = False,
             seed: int | None = None, top_k: int | None = None, logits_hook: LogitsHook | None = None,
             guard_ngram: int | None = None) -> Generation:
    """Stream a continuation of ``prompt_ids`` (see ``LongMemModel.generate``). The prompt is cut from the left to
    leave room for ``max_new_tokens`` within the backbone's context (at most ``MAX_CONTEXT``). ``logits_hook``:
    turns each step into the scores the next token is picked from (default: the step's logits);
    ``guard_ngram``: the repetition guard's n (None: ``settings.GENERATION.guard_ngram``; 0: off)."""
    if bank is not None and not backbone_only:
        model.check_bank(bank)
    max_ctx = min(model.backbone.max_positions, MAX_CONTEXT)
    # NaN passes any comparison, and more new tokens than the context holds would cut the prompt to nothing
    max_new_tokens = check_number(max_new_tokens, "max_new_tokens", 0, max_ctx - 1, integer=True)
    temperature = check_number(temperature, "temperature", 0, MAX_TEMPERATURE)
    top_p = check_number(top_p, "top_p", 0, 1)
    if len(prompt_ids) + max_new_tokens > max_ctx:
        prompt_ids = prompt_ids[-(max_ctx - max_new_tokens):]
    gen = Generation(steps=iter(()))
    decoding = Decoding(max_new_tokens, temperature, top_p, backbone_only, seed, top_k, logits_hook or _plain,
                        settings.GENERATION.guard_ngram if guard_ngram is None else guard_ngram)
    gen.steps = _stream(model, gen, prompt_ids, bank, decoding)
    return gen



def _plain(step: Step, context: list[int]) -> Proposal:
    """The default hook: the step's own logits."""
    return Proposal(step.logits)


@torch.no_grad()
def _stream(model: "LongMemModel", gen: Generation, prompt_ids: list[int], bank: MemoryBank | None,
            decoding: Decoding) -> Iterator[str]:
    """The token loop behind ``generate``: yields text as soon as it decodes to whole characters."""
    d = decoding
    if d.max_new_tokens <= 0:
        return
    generator = torch.Generator().manual_seed(d.seed) if d.seed is not None else None
    stop = stop_token_ids(model.tokenizer)
    caches = ModelCaches.empty(model, max_length=len(prompt_ids) + d.max_new_tokens)
    options = dict(backbone_only=d.backbone_only, top_k=d.top_k)
    step = prefill(model, torch.tensor([prompt_ids], device=model.device), bank, caches, **options)
    context = list(prompt_ids)  # prompt + answer so far, what the hook sees
    shares: list[float] = []
    while True:
        if step.trace is not None:
            for cid, w in step.trace.chunk_totals(0).items():
                gen.chunk_mass[cid] = gen.chunk_mass.get(cid, 0.0) + w
            shares.append(float(step.trace.memory_share.mean()))
        proposal = d.hook(step, context)
        scores = guard_scores(proposal, gen.token_ids, d.guard_ngram)  # [V] on the CPU
        if scores[int(proposal.scores.argmax())] == float("-inf"):  # the model's first choice would repeat itself
            gen.blocked.append(len(gen.token_ids))
        token = sample_token(scores, d.temperature, d.top_p, generator)
        if token in stop:
            break
        gen.token_ids.append(token)
        context.append(token)
        text = model.tokenizer.decode(gen.token_ids, skip_special_tokens=True)
        if not text.endswith("\ufffd"):  # wait for the rest of a multi-byte character
            delta, gen.text = text[len(gen.text):], text
            if delta:
                yield delta
        if len(gen.token_ids) == d.max_new_tokens:
            break
        if settings.GENERATION.guard_ends and gen.blocked and SENTENCE_END.search(model.tokenizer.decode([token])):
            break  # it had begun to repeat itself: what it had to say is said
        step = decode_one_token(model, torch.tensor([[token]], device=model.device), bank, caches, **options)
    gen.memory_share = sum(shares) / len(shares) if shares else 0.0
