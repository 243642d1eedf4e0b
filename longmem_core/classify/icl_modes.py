"""Classification modes that use memory to choose and weigh demonstrations, beside the paper's (``icl.py``).

Every mode classifies over the same demonstrations, read into a bank by ``icl.memorize_demonstrations``: in
context only, the paper's memory layer, a k-NN vote over the demonstrations' stored keys, KATE-style nearest
demonstrations in context, label centroids over centred keys, contextual calibration, their mixture
``centroid_context``, and the default, ``auto``: a combination of those whose weights the demonstrations held out of
memory teach (``icl_select.py``, ``icl_combine.py``; both beyond the paper). ``ModeClassifier`` reads what the modes
share once per demonstration set and classifies one text at a time (the app); ``evaluate_modes`` runs a test set
through every mode (``eval-icl``). The templates, demonstration memory and label scoring come from ``icl.py``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import torch

from .icl import (DEFAULT_K, DEFAULT_SEED, SENTIMENT_TEMPLATE, DemonstrationMemory, Example, Prediction, Progress,
                  classify, context_text, label_set, memorize_demonstrations, sample_context)
from . import icl_combine, key_scores, settings
from .icl_select import COMBINED, macro_f1, select
from .key_scores import (calibrate, centre_query, centred, centroid_distribution, content_free_probabilities,
                         demonstration_keys, from_probabilities, kate_context, knn_vote, label_centroids,
                         probabilities)
from ..memory.memory_bank import MemoryBank
from ..model.model import LongMemModel

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
# ``auto``: a combination of three experts (calibrated in-context scores, label centroids, the k-NN vote:
#   ``icl_combine.py``) whose weights are learned on demonstrations held out of memory (``icl_select.select``,
#   issue 26), per demonstration set, before the first text; ``settings.SELECTION.fallback`` when none can be held
#   out.

MODES: tuple[str, ...] = ("context", "memory", "knn", "kate", "centroid", "context_cal", "centroid_context", "auto")
# centroid_context wins the sentiment tasks and loses topic-like ones to the k-NN vote, so the default, ``auto``,
# learns how much each counts per demonstration set (docs/results/icl_auto.md)
DEFAULT_MODE = "auto"
# the neighbours of ``knn``, the centroid temperature and the mix weight: settings.MODE


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
            self.selection = select(self)
        return self.selection

    def query_key(self, text: str) -> torch.Tensor | None:
        """The text's memory-layer key [G*D] (``text_key``), or None when no mode built here compares keys. Read
        it once and pass it to ``predict``, and to whatever else compares the text with the demonstrations."""
        if self.keys is None:
            return None
        start = time.perf_counter()
        key = key_scores.text_key(self.model, text, self.template)
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
        if "auto" in modes and self.select().chosen == COMBINED:  # the combination learned on held-out texts
            votes = torch.tensor([out["knn"].scores[label] for label in self.labels])  # [L]
            cosines = self.centroids @ centre_query(self.centred, query)  # [L]
            feats = icl_combine.features(calibrated[None], cosines[None], votes[None])  # [1, L, E]
            out[COMBINED] = from_probabilities(self.select().combination.distribution(feats)[0], self.labels)
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
