"""Choosing how to classify from the demonstrations themselves (issue 26; beyond the paper).

No single mode of ``icl_modes.py`` wins every task: the mix of label centroids and calibrated in-context scores was
chosen on sentiment and subjectivity, calibrated in-context scores alone win others, and a k-NN vote over the stored
keys beats both on topic-like tasks. ``select`` learns, from demonstrations held out of the uploaded set, how much
each of three experts (calibrated in-context scores, label centroids, the k-NN vote: ``icl_combine.py``) should
count, and ``auto`` then classifies with that combination:

- held out: a stratified sample (every label in proportion, each label at least once) of at most
  ``max_held_out`` demonstrations, none of those in the prompt (the in-context scores would see their answer);
- each held-out text is read as a test text is: its key (the prompt's query part only, up to the memory layer;
  ``key_scores.text_keys`` reads them in batches) and its label scores after the prompt read once
  (``ModeClassifier``'s cache; ``icl.label_scores``, in batches: the same scores as one at a time up to float
  rounding); the key modes score it leave-one-out over the keys the bank already stores (its own key is left out
  of the vote and of its label's centroid);
- the combination's three weights are fitted by maximum likelihood on the held-out texts; its held-out accuracy is
  measured leave-one-out (each text predicted by a combination fitted without it), so that it can be compared
  fairly with the single modes (``candidates``), which fit nothing;
- the combination is what ``auto`` uses; the single modes' held-out accuracies are shown beside its own. When nothing
  can be held out (every demonstration is in the prompt), ``fallback`` is used (``settings.SELECTION``).

An earlier rule chose one single mode, keeping the sentiment-tuned mix unless another was clearly better by a sign
test; it rarely switched (once in 14 task-seeds), and the combination beat it on the tuning sets by 2.7 points. A
switch from the combination to a clearly better single mode (the same sign test) never helped on the tuning sets
and hurt once, so there is none (docs/results/icl_auto.md).

Not candidates: ``memory`` (the paper's; the bank holds each held-out demonstration with its label, so its
held-out score would read the answer) and ``kate`` (a new prompt per text: too slow to score on a CPU).
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Sequence

import torch

from . import icl_combine, key_scores, settings
from .icl import format_demonstration, label_scores

if TYPE_CHECKING:
    from .icl_modes import ModeClassifier

# the candidates shown, the fallback and how many are held out: settings.SELECTION

COMBINED = "combined"  # auto's name for the combination of the modes learned on the held-out texts (icl_combine.py)


@dataclass
class Selection:
    """What ``auto`` uses (``COMBINED``, the learned combination; the fallback mode when nothing could be held out),
    and why: the combination's weights, its and every candidate's held-out accuracy and macro-F1."""

    chosen: str
    accuracy: dict[str, float]  # candidate or COMBINED -> accuracy on the held-out demonstrations
    macro_f1: dict[str, float]  # candidate or COMBINED -> macro-averaged F1 on the same (labels present there)
    held_out: int  # demonstrations held out and scored
    demonstrations: int  # demonstrations in memory
    seconds: float  # what learning (or choosing) took
    few: bool  # it rests on few examples
    reason: str  # one plain sentence
    weights: dict[str, float] = field(default_factory=dict)  # the learned combination's weight of each expert
    combination: icl_combine.Combination | None = None  # what ``auto`` classifies with when ``chosen`` is COMBINED
    indices: list[int] = field(default_factory=list)  # the held-out demonstrations
    gold: list[str] = field(default_factory=list)  # their labels
    predictions: dict[str, list[str]] = field(default_factory=dict)  # candidate -> its label for each

    def to_dict(self, detail: bool = False) -> dict:
        """What the page and the API show; ``detail``: with the held-out texts' labels and predictions too."""
        hidden = ("combination",) if detail else ("combination", "indices", "gold", "predictions")
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in hidden}


def macro_f1(gold: Sequence[str], predicted: Sequence[str]) -> float:
    """F1 of each label that occurs in ``gold`` or ``predicted``, averaged with equal weight (0 when empty)."""
    labels = sorted(set(gold) | set(predicted))
    scores = []
    for label in labels:
        tp = sum(g == label and p == label for g, p in zip(gold, predicted))
        fp = sum(g != label and p == label for g, p in zip(gold, predicted))
        fn = sum(g == label and p != label for g, p in zip(gold, predicted))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / len(scores) if scores else 0.0


def stratified_sample(labels: Sequence[str], allowed: Sequence[int], n: int, seed: int = 0) -> list[int]:
    """Up to ``n`` of the ``allowed`` indices, each label in proportion to its share of them and at least once
    (largest remainders first), drawn reproducibly; sorted."""
    by_label: dict[str, list[int]] = {}
    for i in allowed:
        by_label.setdefault(labels[i], []).append(i)
    if len(allowed) <= n:
        return sorted(allowed)
    rng = random.Random(seed)
    for members in by_label.values():
        rng.shuffle(members)
    quota = {label: max(1, int(n * len(m) / len(allowed))) for label, m in by_label.items()}
    by_share = sorted(by_label, key=lambda label: -(n * len(by_label[label]) / len(allowed) % 1))
    for label in by_share:  # the rest of the budget to the largest remainders (more than n only when labels > n)
        if sum(quota.values()) >= n:
            break
        quota[label] = min(quota[label] + 1, len(by_label[label]))
    return sorted(i for label, members in by_label.items() for i in members[:quota[label]])


def _knn_loo(sims: torch.Tensor, onehot: torch.Tensor, neighbours: int) -> torch.Tensor:
    """k-NN vote scores [L] as ``key_scores.knn_vote`` (a vote plus similarity / (neighbours + 1)), from one
    held-out text's similarities [M] to the demonstrations (its own set to -inf beforehand)."""
    top = sims.topk(min(neighbours, int(torch.isfinite(sims).sum())))
    return ((1 + top.values / (neighbours + 1))[:, None] * onehot[top.indices]).sum(0)


def select(classifier: "ModeClassifier", *, max_held_out: int | None = None, seed: int = 0,
           read_keys: bool = True) -> Selection:
    """The combination ``auto`` uses, learned on demonstrations held out of ``classifier``'s memory, with its and every
    candidate mode's accuracy there. ``read_keys``: each held-out text's key is read as a test text's (in batches of
    short forwards); else its stored key stands in (free, but optimistic for the key modes). ``max_held_out``
    defaults to ``settings.SELECTION``."""
    conf = settings.SELECTION
    max_held_out = conf.max_held_out if max_held_out is None else max_held_out
    candidates, fallback = conf.candidates, conf.fallback
    start = time.perf_counter()
    memory, labels = classifier.keys.memory, classifier.labels
    examples = memory.examples
    gold_all = [label for _, label in examples]
    in_prompt = {i for i, (t, label) in enumerate(examples)
                 if classifier.context and format_demonstration(classifier.template, t, label) in classifier.context}
    allowed = [i for i in range(len(examples)) if i not in in_prompt and gold_all[i] in labels]
    held = stratified_sample(gold_all, allowed, max_held_out, seed)
    few = len(examples) < conf.few_demonstrations or len(held) < conf.few_held_out
    if not held:
        return Selection(chosen=fallback, accuracy={}, macro_f1={}, held_out=0,
                         demonstrations=len(examples), seconds=time.perf_counter() - start, few=True,
                         reason="every demonstration is in the prompt, so none could be held out: "
                                f"{fallback} is kept")
    texts = [examples[i][0] for i in held]
    # each text's key as a test text's is read (its stored key, read amid the other demonstrations, sits much nearer
    # them: on language id the key modes scored 0.6 held out that way and 0.35 on test texts); the texts are read in
    # batches, as are their label scores after the cached prompt (as one at a time up to float rounding, in less time)
    queries = key_scores.text_keys(classifier.model, texts, classifier.template) if read_keys \
        else classifier.keys.keys[held]  # [N, G*D]
    scores = label_scores(classifier.model, texts, labels, context=classifier.context, template=classifier.template,
                          cache=classifier.caches["context"])  # [N, L]
    parts = held_out_parts(classifier, held, queries, scores)
    gold = [gold_all[i] for i in held]
    gold_index = torch.tensor([labels.index(g) for g in gold])  # [N]
    feats = icl_combine.features(parts["context_cal"], parts["cosines"], parts["knn"])  # [N, L, E]
    combination = icl_combine.fit(feats, gold_index)
    predicted = {m: [labels[int(i)] for i in parts[m].argmax(-1)] for m in candidates}
    # the combination is fitted on these texts: its held-out predictions are each fitted without the text itself
    predicted[COMBINED] = [labels[int(i)] for i in icl_combine.cross_validated(feats, gold_index, combination)]
    correct = {m: sum(p == g for p, g in zip(ps, gold)) for m, ps in predicted.items()}
    f1 = {m: macro_f1(gold, ps) for m, ps in predicted.items()}
    n = len(held)
    best_single = max(candidates, key=lambda m: correct[m])
    reason = (f"The combination learned on {n} held-out demonstrations was right on {correct[COMBINED]} of them, each "
              f"predicted by a combination fitted without it (the best single mode there, {best_single}: "
              f"{correct[best_single]})")
    if few:
        reason += f" (few examples: {len(examples)} demonstrations, {n} held out; the choice is uncertain)"
    return Selection(chosen=COMBINED, accuracy={m: correct[m] / n for m in predicted}, macro_f1=f1, held_out=n,
                     demonstrations=len(examples), seconds=time.perf_counter() - start, few=few, reason=reason,
                     weights=combination.to_dict(), combination=combination, indices=held, gold=gold,
                     predictions=predicted)


def held_out_parts(classifier: "ModeClassifier", held: Sequence[int], queries: torch.Tensor,
                   scores: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every candidate's label scores for the held-out demonstrations ``held`` [N], each [N, L], and the centroid
    cosines [N, L] the combination reads: from their keys ``queries`` [N, G*D] (read as test texts' are) and
    in-context label scores ``scores`` [N, L]. The key modes score each one leave-one-out: its own stored key out
    of the k-NN vote and out of its label's centroid."""
    memory, labels = classifier.keys.memory, classifier.labels
    onehot = key_scores.label_onehot(memory, labels)  # [M, L]
    raw, cen = classifier.keys.keys, classifier.centred.keys  # [M, G*D] each
    rows: dict[str, list[torch.Tensor]] = {m: [] for m in ("knn", "cosines", "centroid", "context", "context_cal",
                                                            "centroid_context")}
    mix = settings.MODE.mix_weight
    for row, i in enumerate(held):
        query = queries[row]
        sims = raw @ query  # [M]
        sims[i] = -float("inf")
        rows["knn"].append(_knn_loo(sims, onehot, classifier.neighbours))
        others = onehot.clone()
        others[i] = 0  # its own key out of its label's centroid
        sums = others.T @ cen  # [L, G*D]
        centroids = torch.nn.functional.normalize(sums / others.sum(0).clamp(min=1)[:, None], dim=-1)
        centred_query = key_scores.centre_query(classifier.centred, query)
        rows["cosines"].append(centroids @ centred_query)
        near = key_scores.centroid_distribution(centroids, centred_query)  # [L]
        rows["centroid"].append(near)
        probs = torch.softmax(scores[row], dim=0)  # [L], as key_scores.probabilities
        calibrated = key_scores.calibrate(probs, classifier.content_free)
        rows["context"].append(probs)
        rows["context_cal"].append(calibrated)
        rows["centroid_context"].append(mix * near + (1 - mix) * calibrated)
    return {m: torch.stack(v) for m, v in rows.items()}
