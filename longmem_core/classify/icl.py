"""Memory-augmented in-context learning (the paper's ICL evaluation), as plain functions.

Many labelled demonstrations are read into a memory bank; ``k`` of them (paper: 20) are sampled once and put
in the prompt before every test text; a text is classified by the summed log-probability of each label word
after the prompt (``LongMemModel.score_labels``). The baseline is the same prompt without memory (in-context
only). Templates follow the authors' evaluation script: ``"Review: {text} Sentiment: {label}. "``, and for
Subj ``"Input: {text} Type: {label}. "``; the query is the template cut before its label.

The modes that use memory to choose and weigh demonstrations (a k-NN vote over their stored keys, KATE,
label centroids, contextual calibration and the default mix) are in ``icl_modes.py``, which builds on this module.
"""
from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from ..limits import check_text
from ..memory.memory_bank import MemoryBank
from ..model.model import LongMemModel, MemorizeStats, PromptCache, Retrieved
from ..model.scoring import label_token_ids

Example = tuple[str, str]  # (text, label)
Progress = Callable[[int, int], None]  # (done, total)

SENTIMENT_TEMPLATE = "Review: {text} Sentiment: {label}. "
SUBJ_TEMPLATE = "Input: {text} Type: {label}. "
TEMPLATES: dict[str, str] = {"sst2": SENTIMENT_TEMPLATE, "sst5": SENTIMENT_TEMPLATE, "mr": SENTIMENT_TEMPLATE,
                             "mpqa": SENTIMENT_TEMPLATE, "cr": SENTIMENT_TEMPLATE, "subj": SUBJ_TEMPLATE}
DEFAULT_K = 20  # demonstrations in context (paper: 20)
DEFAULT_SEED = 1  # the authors' script averages seeds 1..6; one seed is the default here
DEMONSTRATION_SOURCE = "demonstrations"


def template_for(task: str | None) -> str:
    """The prompt template of a task name ("sst2", "subj", ...); unknown names get the sentiment template."""
    return TEMPLATES.get((task or "").lower().replace("-", ""), SENTIMENT_TEMPLATE)


def check_template(template: str) -> None:
    """A template has one ``{text}`` and one ``{label}``, the label after the text."""
    if template.count("{text}") != 1 or template.count("{label}") != 1 or \
            template.index("{label}") < template.index("{text}"):
        raise ValueError(f"a template needs one {{text}} followed by one {{label}}, got {template!r}")


def format_demonstration(template: str, text: str, label: str) -> str:
    check_text(text, "demonstration")  # limits.py: every demonstration enters a prompt through here
    return template.replace("{text}", text).replace("{label}", label)


def query_prompt(template: str, text: str) -> str:
    """The template up to (not including) the space before its label: ``"Review: {text} Sentiment:"``."""
    check_template(template)
    check_text(text, "text to classify")  # limits.py: every text to classify enters a prompt through here
    return template[:template.index("{label}")].rstrip().replace("{text}", text)


def context_text(template: str, demonstrations: Sequence[Example]) -> str:
    """The in-context part of the prompt: every demonstration formatted, concatenated."""
    return "".join(format_demonstration(template, t, label) for t, label in demonstrations)


def label_set(examples: Sequence[Example]) -> list[str]:
    """The distinct labels, sorted (the classes a prediction chooses from)."""
    return sorted({label for _, label in examples})


def sample_context(examples: Sequence[Example], k: int = DEFAULT_K, seed: int = DEFAULT_SEED) -> list[Example]:
    """``k`` demonstrations drawn without replacement (all of them if there are fewer), reproducibly."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    return random.Random(seed).sample(list(examples), min(k, len(examples)))


@dataclass
class DemonstrationMemory:
    """Demonstrations read into a bank as one source text, with where each one starts in that text."""

    examples: list[Example]
    starts: list[int]  # character offset of each demonstration in the memorized text
    source: str  # the source name in the bank
    stats: MemorizeStats | None = None

    def covering(self, char_start: int, char_end: int) -> list[int]:
        """Indices of the demonstrations that overlap the character span [char_start, char_end)."""
        if char_end <= char_start or not self.starts:
            return []
        first = max(bisect.bisect_right(self.starts, char_start) - 1, 0)
        last = max(bisect.bisect_left(self.starts, char_end) - 1, 0)
        return list(range(first, last + 1))


def memorize_demonstrations(model: LongMemModel, examples: Sequence[Example], bank: MemoryBank, *,
                            template: str = SENTIMENT_TEMPLATE, source: str = DEMONSTRATION_SOURCE,
                            progress: Progress | None = None) -> DemonstrationMemory:
    """Read every demonstration, formatted with ``template``, into ``bank`` (one source text)."""
    check_template(template)
    if not examples:
        raise ValueError("no demonstrations to memorize")
    pieces = [format_demonstration(template, t, label) for t, label in examples]
    starts, offset = [], 0
    for piece in pieces:
        starts.append(offset)
        offset += len(piece)
    stats = model.memorize("".join(pieces), bank, source=source, progress=progress)
    return DemonstrationMemory(examples=list(examples), starts=starts, source=source, stats=stats)


@dataclass
class Prediction:
    label: str
    scores: dict[str, float]  # label -> summed log-probability of its tokens after the prompt
    retrieved: list[Retrieved] = field(default_factory=list)  # chunks the test text's tokens attended to most


def classify(model: LongMemModel, text: str, labels: Sequence[str], *, context: str = "",
             bank: MemoryBank | None = None, template: str = SENTIMENT_TEMPLATE, top: int = 5,
             top_k: int | None = None, cache: PromptCache | None = None) -> Prediction:
    """The label whose word is most likely after ``context`` + the query for ``text`` (ties: the first label).

    With ``bank`` the SideNet reads memory, and ``retrieved`` lists the chunks that the test text's own tokens
    attended to most; without it the model is the in-context-only baseline. ``cache``: the context read once
    (``model.cache_prompt(context, bank, top_k)``), so only the query and labels are read per text.
    """
    if not labels:
        raise ValueError("no labels to choose from")
    if bank is None or top <= 0:  # no trace wanted: the query read once, one-token labels scored at its end
        scores, trace = label_scores(model, [text], labels, context=context, bank=bank, template=template,
                                     top_k=top_k, cache=cache)[0], None
    else:
        prompt = context + query_prompt(template, text)
        scores, trace = model.score_labels(prompt, [" " + label for label in labels], bank, trace=True, top_k=top_k,
                                           cache=cache)
    best = int(scores.argmax())
    retrieved: list[Retrieved] = []
    if trace is not None and top > 0:
        prompt_ids = model.encode(prompt)
        skipped = cache.shared(prompt_ids) if cache is not None else 0  # the trace starts after the cached tokens
        query_tokens = slice(max(len(model.encode(context)) - skipped, 0), len(prompt_ids) - skipped)
        totals = trace.chunk_totals(0, query_tokens)
        ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:top]
        retrieved = [Retrieved(bank.chunk_info(cid), share) for cid, share in ranked]
    return Prediction(label=labels[best], scores={label: float(s) for label, s in zip(labels, scores)},
                      retrieved=retrieved)


def label_scores(model: LongMemModel, texts: Sequence[str], labels: Sequence[str], *, context: str = "",
                 bank: MemoryBank | None = None, template: str = SENTIMENT_TEMPLATE, top_k: int | None = None,
                 cache: PromptCache | None = None) -> torch.Tensor:
    """Each text's ``classify(...).scores`` as a row: [n_texts, n_labels], the summed log-probability of each label's
    tokens after ``context`` + the text's query, up to float rounding; the texts read together in batches after
    ``cache`` (``LongMemModel.score_prompts``) instead of one at a time. No trace."""
    if not labels:
        raise ValueError("no labels to choose from")
    label_ids = label_token_ids(model, [" " + label for label in labels])
    prompts = [model.encode(context + query_prompt(template, text)) for text in texts]
    return model.score_prompts(prompts, label_ids, bank, top_k=top_k, cache=cache)


@dataclass
class IclResult:
    """Accuracy with memory against in-context only, on the same prompts."""

    n: int
    accuracy_memory: float
    accuracy_context: float
    labels: list[str]
    k: int
    memory_tokens: int  # tokens in the memory bank that was read
    gold: list[str]
    memory_predictions: list[str]
    context_predictions: list[str]

    def to_dict(self) -> dict:
        return {"n": self.n, "accuracy_memory": self.accuracy_memory, "accuracy_context": self.accuracy_context,
                "labels": self.labels, "k": self.k, "memory_tokens": self.memory_tokens}


def evaluate(model: LongMemModel, test: Sequence[Example], demonstrations: Sequence[Example], *,
             k: int = DEFAULT_K, seed: int = DEFAULT_SEED, template: str = SENTIMENT_TEMPLATE,
             labels: Sequence[str] | None = None, bank: MemoryBank | None = None,
             memory_size: int | None = None, progress: Progress | None = None,
             top_k: int | None = None, memorize_progress: Progress | None = None) -> IclResult:
    """Classify every test example twice, with memory and in-context only, and count the correct ones.

    ``k`` demonstrations are sampled once (``seed``) into the context, as in the authors' script. Memory holds
    ``bank`` as given, or else a new bank filled with ``memory_size`` demonstrations sampled with the same seed
    (all of them when None). ``labels`` defaults to the demonstrations' label set. ``progress`` counts test texts,
    ``memorize_progress`` the tokens read into that new bank.
    """
    if not test:
        raise ValueError("no test examples")
    labels = list(labels) if labels is not None else label_set(demonstrations)
    context = context_text(template, sample_context(demonstrations, k, seed))
    if bank is None:
        chosen = demonstrations if memory_size is None else sample_context(demonstrations, memory_size, seed)
        # room for every chosen demonstration, so none is evicted: a token is at least one character, and each
        # segment's last chunk may be partly empty (storage grows on demand, so the room costs nothing unused)
        room = 2 * len(context_text(template, chosen)) + model.cfg.chunk_size
        bank = model.new_bank(capacity=max(model.cfg.capacity, room))
        memorize_demonstrations(model, chosen, bank, template=template, progress=memorize_progress)
    memory_predictions, context_predictions = [], []
    # the context is the same for every test text: read it once per system
    with_memory = model.cache_prompt(context, bank, top_k) if context else None
    in_context = model.cache_prompt(context) if context else None
    for i, (text, _) in enumerate(test):
        memory_predictions.append(classify(model, text, labels, context=context, bank=bank, template=template,
                                           top=0, top_k=top_k, cache=with_memory).label)
        context_predictions.append(classify(model, text, labels, context=context, template=template,
                                            cache=in_context).label)
        if progress:
            progress(i + 1, len(test))
    gold = [label for _, label in test]

    def accuracy(predictions: list[str]) -> float:
        return sum(p == g for p, g in zip(predictions, gold)) / len(gold)
    return IclResult(n=len(test), accuracy_memory=accuracy(memory_predictions),
                     accuracy_context=accuracy(context_predictions), labels=labels,
                     k=min(k, len(demonstrations)), memory_tokens=len(bank),
                     gold=gold, memory_predictions=memory_predictions, context_predictions=context_predictions)


def read_test_set(path: str, text_column: str = "text", label_column: str = "label") -> list[tuple[str, str | None]]:
    """(text, label) rows of a CSV/TSV/JSONL test file; the label is None for every row of a file without a
    label column. Raises DocumentError for a file without the text column, a row lacking a column, or a file
    that cannot be read."""
    from ..documents.data import DocumentError, read_labelled
    texts = [t for t, _ in read_labelled(path, text_column=text_column, label_column=text_column)]
    try:
        return list(read_labelled(path, text_column=text_column, label_column=label_column))
    except DocumentError as exc:
        if f"no {label_column!r} column" not in str(exc):
            raise
        return [(t, None) for t in texts]
