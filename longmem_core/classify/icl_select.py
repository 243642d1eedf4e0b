"""Choosing the classification mode from the demonstrations themselves (issue 26; beyond the paper).

No single mode of ``icl_modes.py`` wins every task: the default mix of label centroids and calibrated in-context
scores was chosen on sentiment and subjectivity, and a k-NN vote over the stored keys beats it on topic-like
tasks. ``select`` scores every candidate mode on demonstrations held out of the uploaded set and the ``auto``
mode then uses the best one:

- held out: a stratified sample (every label in proportion, each label at least once) of at most
  ``max_held_out`` demonstrations, none of those in the prompt (the in-context modes would see their answer);
- the key modes (``knn``, ``centroid``) score each held-out demonstration leave-one-out over the keys the bank
  already stores (its own key is left out of the vote and of its label's centroid), its own key read as a test
  text's is (the prompt's query part only, up to the memory layer; ``key_scores.text_keys`` reads the held-out
  texts in batches);
- the in-context modes (``context``, ``context_cal``, and ``centroid_context``, which mixes the two) cost one
  label scoring each, after the prompt read once (``ModeClassifier``'s cache; ``icl.label_scores`` scores the
  held-out texts in batches: the same scores as one at a time up to float rounding, in less time);
- the fallback (``centroid_context``, chosen on sentiment tasks) is kept unless another candidate is clearly
  better on the held-out texts: right on more than ``margin`` more, and by more than a one-sided sign test on the
  texts where the two disagree would give by chance (``z``); of those that are, the most accurate is chosen
  (candidates, fallback, ``max_held_out``, ``margin``, ``z``: ``settings.SELECTION``).

Not candidates: ``memory`` (the paper's; the bank holds each held-out demonstration with its label, so its
held-out score would read the answer) and ``kate`` (a new prompt per text: too slow to score on a CPU).
"""
from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Sequence

import torch

from . import key_scores, settings
from .icl import format_demonstration, label_scores

if TYPE_CHECKING:
    from .icl_modes import ModeClassifier

# the candidates, the fallback, how many are held out and how clearly another mode must win: settings.SELECTION


@dataclass
class Selection:
    """Which mode ``auto`` uses, and why: every candidate's held-out accuracy and macro-F1."""

    chosen: str
    accuracy: dict[str, float]  # candidate -> accuracy on the held-out demonstrations
    macro_f1: dict[str, float]  # candidate -> macro-averaged F1 on the same (labels present there)
    held_out: int  # demonstrations held out and scored
    demonstrations: int  # demonstrations in memory
    seconds: float  # what the choice took
    few: bool  # the choice rests on few examples
    reason: str  # one plain sentence
    indices: list[int] = field(default_factory=list)  # the held-out demonstrations
    gold: list[str] = field(default_factory=list)  # their labels
    predictions: dict[str, list[str]] = field(default_factory=dict)  # candidate -> its label for each

    def to_dict(self, detail: bool = False) -> dict:
        """What the page and the API show; ``detail``: with the held-out texts' labels and predictions too."""
        return {k: v for k, v in asdict(self).items() if detail or k not in ("indices", "gold", "predictions")}


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


def select(classifier: "ModeClassifier", *, max_held_out: int | None = None, margin: int | None = None,
           z: float | None = None, seed: int = 0, read_keys: bool = True) -> Selection:
    """Every candidate mode scored on demonstrations held out of ``classifier``'s memory; the best one chosen.
    ``read_keys``: each held-out text's key is read as a test text's (in batches of short forwards); else its stored
    key stands in (free, but optimistic for the key modes). ``max_held_out``, ``margin`` and ``z`` default to
    ``settings.SELECTION``."""
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
    onehot = key_scores.label_onehot(memory, labels)  # [M, L]
    raw, cen = classifier.keys.keys, classifier.centred.keys  # [M, G*D] each
    predicted: dict[str, list[str]] = {m: [] for m in candidates}
    texts = [examples[i][0] for i in held]
    # each text's key as a test text's is read (its stored key, read amid the other demonstrations, sits much nearer
    # them: on language id the key modes scored 0.6 held out that way and 0.35 on test texts); the texts are read in
    # batches, as are their label scores after the cached prompt (as one at a time up to float rounding, in less time)
    queries = key_scores.text_keys(classifier.model, texts, classifier.template) if read_keys else raw[held]  # [N, G*D]
    scores = label_scores(classifier.model, texts, labels, context=classifier.context, template=classifier.template,
                          cache=classifier.caches["context"])  # [N, L]
    for row, i in enumerate(held):
        query = queries[row]
        sims = raw @ query  # [M]
        sims[i] = -float("inf")
        predicted["knn"].append(labels[int(_knn_loo(sims, onehot, classifier.neighbours).argmax())])
        others = onehot.clone()
        others[i] = 0  # its own key out of its label's centroid
        sums = others.T @ cen  # [L, G*D]
        centroids = torch.nn.functional.normalize(sums / others.sum(0).clamp(min=1)[:, None], dim=-1)
        near = key_scores.centroid_distribution(centroids, key_scores.centre_query(classifier.centred, query))  # [L]
        predicted["centroid"].append(labels[int(near.argmax())])
        probs = torch.softmax(scores[row], dim=0)  # [L], as key_scores.probabilities
        calibrated = key_scores.calibrate(probs, classifier.content_free)
        predicted["context"].append(labels[int(probs.argmax())])
        predicted["context_cal"].append(labels[int(calibrated.argmax())])
        mix = settings.MODE.mix_weight
        mixed = mix * near + (1 - mix) * calibrated
        predicted["centroid_context"].append(labels[int(mixed.argmax())])
    gold = [gold_all[i] for i in held]
    correct = {m: sum(p == g for p, g in zip(ps, gold)) for m, ps in predicted.items()}
    f1 = {m: macro_f1(gold, ps) for m, ps in predicted.items()}
    best, default = choose(gold, predicted, margin=margin, z=z), fallback
    n = len(held)
    reason = f"{best} was right on {correct[best]} of {n} held-out demonstrations"
    if best != default:
        reason += f", {default} (kept unless clearly beaten) on {correct[default]}"
    else:
        reason += "; no other mode was clearly better (by more than chance would give)"
    if few:
        reason += f" (few examples: {len(examples)} demonstrations, {n} held out; the choice is uncertain)"
    return Selection(chosen=best, accuracy={m: correct[m] / n for m in candidates}, macro_f1=f1, held_out=n,
                     demonstrations=len(examples), seconds=time.perf_counter() - start, few=few, reason=reason,
                     indices=held, gold=gold, predictions=predicted)


def choose(gold: Sequence[str], predicted: dict[str, list[str]], *, margin: int | None = None,
           z: float | None = None) -> str:
    """The fallback, unless a candidate beats it clearly on the held-out texts: right on ``b`` texts the fallback
    gets wrong and wrong on ``c`` it gets right, with ``b - c > max(margin, z * sqrt(b + c))`` (a one-sided sign
    test on the texts they disagree on; both default to ``settings.SELECTION``). Among those that do, the most
    accurate (ties: macro-F1, then the order of ``settings.SELECTION.candidates``)."""
    conf = settings.SELECTION
    candidates, fallback = conf.candidates, conf.fallback
    margin = conf.margin if margin is None else margin
    z = conf.z if z is None else z
    right = {m: [p == g for p, g in zip(ps, gold)] for m, ps in predicted.items()}
    base = right[fallback]

    def clearly_better(m: str) -> bool:
        b = sum(x and not y for x, y in zip(right[m], base))
        c = sum(y and not x for x, y in zip(right[m], base))
        return b - c > max(margin, z * (b + c) ** 0.5)
    better = [m for m in candidates if m != fallback and m in right and clearly_better(m)]
    if not better:
        return fallback
    return max(better, key=lambda m: (sum(right[m]), macro_f1(gold, predicted[m]), -candidates.index(m)))
