"""Classification modes that use memory to choose and weigh demonstrations, beside the paper's (``icl.py``).

Every mode classifies over the same demonstrations, read into a bank by ``icl.memorize_demonstrations``: in
context only, the paper's memory layer, a k-NN vote over the demonstrations' stored keys, KATE-style nearest
demonstrations in context, label centroids over centred keys, contextual calibration, their mixture
``centroid_context``, and the default, ``auto``: whichever of those the demonstrations held out of memory say is
best (``icl_select.py``; both beyond the paper). ``ModeClassifier`` reads what the modes share once per
demonstration set and classifies one text at a time (the app); ``evaluate_modes`` runs a test set through every
mode (``eval-icl``). The templates, demonstration memory and label scoring come from ``icl.py``.
"""
from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field
from typing import Sequence

import torch

from .icl import (DEFAULT_K, DEFAULT_SEED, SENTIMENT_TEMPLATE, DemonstrationMemory, Example, Prediction, Progress,
                  classify, context_text, label_set, memorize_demonstrations, query_prompt, sample_context)
from . import settings
from ..memory.memory_bank import MemoryBank
from ..model.model import LongMemModel, PromptCache

# The modes:
#
# ``context``: k random demonstrations in context, label words scored (the in-context baseline).
# ``memory``: the same prompt, the memory layer reading every demonstration (the paper's).
# ``knn``: a vote of the labels of the demonstrations nearest in memory (kNN prompting's idea, on the bank's
#   own keys): each demonstration is the mean of its text's chunk-mean keys (what the bank's index holds),
#   the test text the mean of its own memory-layer keys; cosine similarity; majority of the nearest
#   ``neighbours``, ties to the larger summed similarity. Training-free, any backbone.
# ``kate``: the k demonstrations nearest in memory read back into the context, most similar last (KATE,
#   Liu et al. 2022), label words scored by the backbone without memory.
# Beyond the paper (training-free; settings chosen on tuning data: ``settings.MODE``):
# ``centroid``: the nearest label centroid (Rocchio / prototype classifier) over the same keys, centred on the
#   demonstrations' mean key: each label's mean centred key; label distribution softmax(cosine /
#   ``centroid_temperature``). Every demonstration counts, and no label wins by being common among them.
# ``context_cal``: ``context`` with contextual calibration (Zhao et al. 2021): the label probabilities divided
#   by those the same prompt gives content-free inputs ("N/A", "", "[MASK]").
# ``centroid_context``: kNN-LM-style interpolation (Khandelwal et al. 2020) of the two label distributions:
#   ``mix_weight`` * centroid + (1 - ``mix_weight``) * context_cal.
# ``auto``: whichever of ``settings.SELECTION.candidates`` was right most often on demonstrations held out of memory
#   (``icl_select.select``, issue 26): the mode is chosen per demonstration set, before the first text.

MODES: tuple[str, ...] = ("context", "memory", "knn", "kate", "centroid", "context_cal", "centroid_context", "auto")
# centroid_context wins the sentiment tasks and loses topic-like ones to the k-NN vote, so the default, ``auto``,
# chooses among the modes per demonstration set (docs/results/icl_auto.md)
DEFAULT_MODE = "auto"
CONTENT_FREE = ("N/A", "", "[MASK]")  # content-free inputs of contextual calibration (Zhao et al. 2021)
# the neighbours of ``knn``, the centroid temperature and the mix weight: settings.MODE


@dataclass
class DemonstrationKeys:
    """One unit-length mean memory key per demonstration [n, G*D], from a bank that memorized them."""

    memory: DemonstrationMemory
    keys: torch.Tensor  # [n, G*D] float32, unit length; rows of demonstrations with no chunk are zero
    mean: torch.Tensor | None = None  # [G*D]: the mean taken out of ``keys`` (``centred``), None if not centred


def demonstration_keys(bank: MemoryBank, memory: DemonstrationMemory, template: str) -> DemonstrationKeys:
    """Mean of the chunk-mean keys whose chunk's middle falls in each demonstration's text (label excluded)."""
    source = next(i for i, s in enumerate(bank.sources) if s["name"] == memory.source)
    offset = template.index("{text}")
    spans = [(s + offset, s + offset + len(t)) for s, (t, _) in zip(memory.starts, memory.examples)]
    means = torch.from_numpy(bank.chunk_keys())  # [G, Nc, D]
    G, Nc, D = means.shape
    flat = means.permute(1, 0, 2).reshape(Nc, G * D)  # [Nc, G*D]
    sums = torch.zeros(len(spans), G * D)
    counts = torch.zeros(len(spans))
    text_starts = [a for a, _ in spans]
    for row, (src, (c0, c1)) in enumerate(zip(bank.chunk_source, bank.chunk_chars)):
        if src != source or c0 < 0:
            continue
        mid = (int(c0) + int(c1)) / 2
        j = bisect.bisect_right(text_starts, mid) - 1
        if j >= 0 and spans[j][0] <= mid < spans[j][1]:
            sums[j] += flat[row]
            counts[j] += 1
    keys = sums / counts.clamp(min=1)[:, None]
    return DemonstrationKeys(memory, torch.nn.functional.normalize(keys, dim=-1))


def text_key(model: LongMemModel, text: str, template: str) -> torch.Tensor:
    """The test text's mean memory-layer key over its text tokens, read as its query prompt: [G*D] unit length."""
    prompt = query_prompt(template, text)
    begin = template.index("{text}")
    enc = model.tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)
    keys, _ = model.segment_kv(enc["input_ids"])  # [n, G, D]
    inside = [i for i, (a, b) in enumerate(enc["offset_mapping"]) if b > begin and a < begin + len(text)]
    pooled = keys[inside or list(range(len(enc["input_ids"])))].float().mean(0).flatten().cpu()
    return torch.nn.functional.normalize(pooled, dim=0)


def nearest(keys: DemonstrationKeys, query: torch.Tensor, n: int) -> list[tuple[int, float]]:
    """The ``n`` demonstrations most similar to ``query`` [G*D]: (index, cosine), best first."""
    sims = keys.keys @ query  # [n_demonstrations]
    best = sims.topk(min(n, sims.shape[0]))
    return [(int(i), float(s)) for s, i in zip(best.values, best.indices)]


def knn_vote(keys: DemonstrationKeys, query: torch.Tensor, labels: Sequence[str],
             neighbours: int | None = None) -> Prediction:
    """Majority label of the ``neighbours`` nearest demonstrations (default ``settings.MODE.neighbours``);
    ``scores``: votes + summed similarity / (neighbours + 1)."""
    neighbours = settings.MODE.neighbours if neighbours is None else neighbours
    scores = {label: 0.0 for label in labels}
    for i, sim in nearest(keys, query, neighbours):
        label = keys.memory.examples[i][1]
        if label in scores:
            scores[label] += 1 + sim / (neighbours + 1)  # a vote, and a tie-break below one vote
    return Prediction(label=max(labels, key=lambda label: scores[label]), scores=scores)


def vote_distribution(sims: torch.Tensor, onehot: torch.Tensor, neighbours: int | None = None,
                      temperature: float | None = None, balanced: bool = False) -> torch.Tensor:
    """Label distributions of the ``neighbours`` most similar demonstrations' votes: [N, L].

    ``sims`` [N, M]: cosine of each test text to each demonstration; ``onehot`` [M, L]: their labels. A vote weighs
    ``1 + sim / (neighbours + 1)`` (one vote, and a tie-break below one vote, as ``knn_vote``), or with
    ``temperature`` ``exp(sim / temperature)``. ``balanced``: each label's mass divided by its share of the
    demonstrations, so a label common among them does not win by its count alone (beyond the paper)."""
    neighbours = settings.MODE.neighbours if neighbours is None else neighbours
    top = sims.topk(min(neighbours, sims.shape[1]), dim=-1)  # [N, n]
    weights = (1 + top.values / (neighbours + 1)) if temperature is None else \
        torch.exp((top.values - top.values[:, :1]) / temperature)  # [N, n]
    mass = torch.einsum("nk,nkl->nl", weights, onehot[top.indices])  # [N, L]
    if balanced:
        mass = mass / (onehot.mean(0).clamp(min=1e-9))[None, :]
    return mass / mass.sum(-1, keepdim=True)


def calibrate(probs: torch.Tensor, content_free: torch.Tensor) -> torch.Tensor:
    """Contextual calibration (Zhao et al. 2021): label probabilities [..., L] divided by those the same prompt
    gives a content-free input [..., L], renormalised, so a prompt's bias towards a label is taken out."""
    q = probs / content_free.clamp(min=1e-9)
    return q / q.sum(-1, keepdim=True)


def kate_context(keys: DemonstrationKeys, query: torch.Tensor, template: str, k: int = DEFAULT_K) -> str:
    """The ``k`` demonstrations nearest to the query, formatted, the most similar last (next to the query)."""
    chosen = [keys.memory.examples[i] for i, _ in reversed(nearest(keys, query, k))]
    return context_text(template, chosen)


def centred(keys: DemonstrationKeys) -> DemonstrationKeys:
    """The keys less the demonstrations' mean key, unit length again: [n, G*D]. Mean-pooled keys share one large
    common direction, so raw cosines differ little between texts; taking it out lets the text-specific parts
    decide who is near (beyond the paper). ``mean`` is kept to centre the test texts' keys alike."""
    mean = keys.keys.mean(0)  # [G*D]
    return DemonstrationKeys(keys.memory, torch.nn.functional.normalize(keys.keys - mean, dim=-1), mean=mean)


def centre_query(keys: DemonstrationKeys, query: torch.Tensor) -> torch.Tensor:
    """A test text's key [G*D] centred as ``keys`` were (unchanged for keys that were not centred)."""
    return query if keys.mean is None else torch.nn.functional.normalize(query - keys.mean, dim=0)


def label_onehot(memory: DemonstrationMemory, labels: Sequence[str]) -> torch.Tensor:
    """[n_demonstrations, L]: 1 where a demonstration has that label (a row of zeros for a label not offered)."""
    out = torch.zeros(len(memory.examples), len(labels))
    for i, (_, label) in enumerate(memory.examples):
        if label in labels:
            out[i, list(labels).index(label)] = 1
    return out


def label_centroids(keys: DemonstrationKeys, labels: Sequence[str]) -> torch.Tensor:
    """Each label's mean demonstration key, unit length: [L, G*D] (zero for a label no demonstration has)."""
    onehot = label_onehot(keys.memory, labels)  # [M, L]
    sums = onehot.T @ keys.keys  # [L, G*D]
    return torch.nn.functional.normalize(sums / onehot.sum(0).clamp(min=1)[:, None], dim=-1)


def centroid_distribution(centroids: torch.Tensor, query: torch.Tensor,
                          temperature: float | None = None) -> torch.Tensor:
    """softmax(cosine of ``query`` [G*D] to each label centroid [L, G*D] / temperature): [L] (``temperature``
    default ``settings.MODE.centroid_temperature``)."""
    temperature = settings.MODE.centroid_temperature if temperature is None else temperature
    return torch.softmax(centroids @ query / temperature, dim=0)


def probabilities(scores: dict[str, float], labels: Sequence[str]) -> torch.Tensor:
    """Label log-probabilities renormalised over the labels: [L]."""
    return torch.softmax(torch.tensor([scores[label] for label in labels], dtype=torch.float32), dim=0)


def content_free_probabilities(model: LongMemModel, labels: Sequence[str], *, context: str, template: str,
                               bank: MemoryBank | None = None, cache: PromptCache | None = None) -> torch.Tensor:
    """What a prompt gives the content-free inputs, on average: [L] (contextual calibration's estimate of the
    prompt's own bias)."""
    return torch.stack([probabilities(classify(model, text, labels, context=context, bank=bank, template=template,
                                                top=0, cache=cache).scores, labels)
                        for text in CONTENT_FREE]).mean(0)


def from_probabilities(probs: torch.Tensor, labels: Sequence[str]) -> Prediction:
    """A prediction whose scores are the log of a label distribution [L] (ties: the first label)."""
    return Prediction(label=labels[int(probs.argmax())],
                      scores={label: float(torch.log(p.clamp(min=1e-12))) for label, p in zip(labels, probs)})


@dataclass
class ModesResult:
    n: int
    labels: list[str]
    gold: list[str]
    predictions: dict[str, list[str]]  # mode -> predicted label per test text
    memory_tokens: int = 0  # tokens of the bank the demonstrations were read into
    selection: dict | None = None  # ``auto``'s choice (``icl_select.Selection.to_dict``), when it ran
    seconds: dict[str, float] = field(default_factory=dict)  # ``ModeClassifier.seconds`` over the test set

    @property
    def accuracy(self) -> dict[str, float]:
        return {m: sum(p == g for p, g in zip(ps, self.gold)) / self.n for m, ps in self.predictions.items()}

    @property
    def macro_f1(self) -> dict[str, float]:
        from .icl_select import macro_f1
        return {m: macro_f1(self.gold, ps) for m, ps in self.predictions.items()}


class ModeClassifier:
    """Every mode's prediction for a test text over one bank of demonstrations; what the modes share (the
    demonstrations' keys and label centroids, the random prompt's cache and content-free scores) is read once,
    when it is built, and the text's own key once per text. Build it once per demonstration set (the app can)."""

    def __init__(self, model: LongMemModel, labels: list[str], template: str, context: str, bank: MemoryBank,
                 memory: DemonstrationMemory, modes: Sequence[str], k: int, neighbours: int | None = None) -> None:
        self.model, self.labels, self.template, self.context, self.bank = model, labels, template, context, bank
        self.neighbours = settings.MODE.neighbours if neighbours is None else neighbours
        self.k, self.modes = k, set(modes)
        if "auto" in self.modes:
            self.modes |= set(settings.SELECTION.candidates)
        self.selection = None  # ``auto``'s choice (an ``icl_select.Selection``), made by ``select`` once
        self.seconds = {"key": 0.0, "context": 0.0, "memory": 0.0, "kate": 0.0}  # per-text work, summed
        needs_keys = self.modes & {"knn", "kate", "centroid", "centroid_context"}
        self.keys = demonstration_keys(bank, memory, template) if needs_keys else None
        self.centred = centred(self.keys) if self.keys is not None else None
        self.centroids = label_centroids(self.centred, labels) if self.centred is not None else None  # [L, G*D]
        self.caches = {"context": model.cache_prompt(context) if context else None,
                       "memory": model.cache_prompt(context, bank) if context and "memory" in self.modes else None}
        self.content_free = content_free_probabilities(  # [L]: the random prompt's own bias
            model, labels, context=context, template=template, cache=self.caches["context"]) \
            if self.modes & {"context_cal", "centroid_context"} else None

    def select(self):
        """``auto``'s choice for these demonstrations (``icl_select.select``: an ``icl_select.Selection``), once."""
        if self.selection is None:
            from .icl_select import select
            self.selection = select(self)
        return self.selection

    def query_key(self, text: str) -> torch.Tensor | None:
        """The text's memory-layer key [G*D] (``text_key``), or None when no mode built here compares keys. Read
        it once and pass it to ``predict``, and to whatever else compares the text with the demonstrations."""
        if self.keys is None:
            return None
        start = time.perf_counter()
        key = text_key(self.model, text, self.template)
        self.seconds["key"] += time.perf_counter() - start
        return key

    def predict(self, text: str, modes: Sequence[str], key: torch.Tensor | None = None) -> dict[str, Prediction]:
        """``text`` classified in each of ``modes`` (a subset of the modes this classifier was built for).
        ``key``: the text's ``query_key`` [G*D] when the caller has read it already; else it is read here."""
        query = key if key is not None else self.query_key(text)
        out: dict[str, Prediction] = {}
        if self.modes & {"context", "context_cal", "centroid_context"}:
            start = time.perf_counter()
            out["context"] = classify(self.model, text, self.labels, context=self.context, template=self.template,
                                      top=0, cache=self.caches["context"])
            self.seconds["context"] += time.perf_counter() - start
        if self.content_free is not None:
            calibrated = calibrate(probabilities(out["context"].scores, self.labels), self.content_free)
            out["context_cal"] = from_probabilities(calibrated, self.labels)
        if self.modes & {"centroid", "centroid_context"}:
            near = centroid_distribution(self.centroids, centre_query(self.centred, query))
            out["centroid"] = from_probabilities(near, self.labels)
            if "centroid_context" in self.modes:
                mix = settings.MODE.mix_weight
                out["centroid_context"] = from_probabilities(mix * near + (1 - mix) * calibrated,
                                                             self.labels)
        if "knn" in self.modes:
            out["knn"] = knn_vote(self.keys, query, self.labels, self.neighbours)
        if "kate" in self.modes:
            start = time.perf_counter()
            near = kate_context(self.keys, query, self.template, self.k)
            out["kate"] = classify(self.model, text, self.labels, context=near, template=self.template,
                                   cache=self.model.cache_prompt(near) if near else None)
            self.seconds["kate"] += time.perf_counter() - start
        if "memory" in self.modes:
            start = time.perf_counter()
            out["memory"] = classify(self.model, text, self.labels, context=self.context, template=self.template,
                                     top=0, bank=self.bank, cache=self.caches["memory"])
            self.seconds["memory"] += time.perf_counter() - start
        if "auto" in modes:
            out["auto"] = out[self.select().chosen]
        return {mode: out[mode] for mode in modes}


def evaluate_modes(model: LongMemModel, test: Sequence[Example], demonstrations: Sequence[Example], *,
                   modes: Sequence[str] = MODES, k: int = DEFAULT_K, seed: int = DEFAULT_SEED,
                   template: str = SENTIMENT_TEMPLATE, labels: Sequence[str] | None = None,
                   memory_size: int | None = None, neighbours: int | None = None,
                   progress: Progress | None = None, memorize_progress: Progress | None = None) -> ModesResult:
    """Every test text classified in every mode over the same demonstrations: ``memory_size`` of them (seeded
    sample; all when None) are read into a new bank, and the random in-context ones are ``k`` of those.
    ``progress`` counts test texts, ``memorize_progress`` the tokens read into the bank."""
    unknown = set(modes) - set(MODES)
    if unknown or not test:
        raise ValueError(f"unknown modes {sorted(unknown)} (choose from {MODES})" if unknown else "no test examples")
    labels = list(labels) if labels is not None else label_set(demonstrations)
    chosen = list(demonstrations) if memory_size is None else sample_context(demonstrations, memory_size, seed)
    context = context_text(template, sample_context(chosen, k, seed))
    room = 2 * len(context_text(template, chosen)) + model.cfg.chunk_size
    bank = model.new_bank(capacity=max(model.cfg.capacity, room))
    memory = memorize_demonstrations(model, chosen, bank, template=template, progress=memorize_progress)
    classifier = ModeClassifier(model, labels, template, context, bank, memory, modes, k, neighbours)
    selection = classifier.select().to_dict(detail=True) if "auto" in modes else None  # before the test set, timed
    predictions: dict[str, list[str]] = {m: [] for m in modes}
    for i, (text, _) in enumerate(test):
        for mode, pred in classifier.predict(text, modes).items():
            predictions[mode].append(pred.label)
        if progress:
            progress(i + 1, len(test))
    return ModesResult(n=len(test), labels=labels, gold=[g for _, g in test], predictions=predictions,
                       memory_tokens=len(bank), selection=selection, seconds=dict(classifier.seconds))
