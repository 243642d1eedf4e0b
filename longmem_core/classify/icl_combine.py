"""A combination of the classification modes learned from the demonstrations themselves (issue 26; beyond the paper).

Three experts each give a score per label for a text:
- the in-context scores after contextual calibration: log of ``context_cal``'s label distribution;
- the cosine of the text's centred memory key to each label's centroid (``centroid``'s evidence);
- the share of the k-NN vote each label gets among the nearest stored demonstrations (``knn``'s evidence).
The combination is a product of experts, softmax over labels of ``w_context * log p_cal + w_centroid * cosine +
w_knn * vote share``, with the three weights (each >= 0) fitted by maximum likelihood on demonstrations held out of
memory (``icl_select.select``). It is a logistic regression with three features shared by every label: few enough
parameters to fit on a few dozen texts. Where the in-context scores are weak (a topic task) their weight falls;
where the keys say little (sentiment), theirs does.

Shape legend: N texts, L labels, E = 3 experts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

EXPERTS: tuple[str, ...] = ("context_cal", "centroid", "knn")
# where the fit starts: the in-context log-probabilities as they are, the centroid cosines at centroid's temperature
# (1 / 0.05), the vote share weak; the fit moves them
START = (1.0, 20.0, 0.1)
FIT_STEPS = 200  # Adam steps of the fit ...
STEP = 0.1  # ... each moving a weight's log by about this much at most, so a fit stays finite
REFIT_STEPS = 50  # the leave-one-out fits start from the fit on every held-out text: they need fewer
# a weak pull of the weights' logs towards START: where the held-out texts are separable, likelihood alone would grow
# the weights without end; this costs 0.01 nats for a weight 20 times its start, so it bends no real fit
PRIOR = 1e-3


def features(calibrated: torch.Tensor, cosines: torch.Tensor, votes: torch.Tensor) -> torch.Tensor:
    """[N, L, E] from the calibrated in-context distribution [N, L], the centroid cosines [N, L] and the k-NN vote
    scores [N, L] (votes, any scale: turned into shares of the text's votes)."""
    share = votes / votes.sum(-1, keepdim=True).clamp(min=1e-9)
    return torch.stack([torch.log(calibrated.clamp(min=1e-9)), cosines, share], dim=-1)


@dataclass
class Combination:
    """The fitted weights of the experts, one per ``EXPERTS``, each >= 0."""

    weights: torch.Tensor  # [E]

    def distribution(self, feats: torch.Tensor) -> torch.Tensor:
        """Label distributions [N, L] of texts with ``features`` [N, L, E]."""
        return torch.softmax(feats @ self.weights, dim=-1)

    def to_dict(self) -> dict[str, float]:
        return {name: round(float(w), 4) for name, w in zip(EXPERTS, self.weights)}


def fit(feats: torch.Tensor, gold: torch.Tensor, start: Combination | None = None,
        steps: int = FIT_STEPS) -> Combination:
    """Maximum-likelihood weights for held-out texts' ``features`` [N, L, E] and their labels' indices [N] (with the
    weak ``PRIOR``): Adam on the weights' logs (so each stays positive), ``steps`` steps of at most ``STEP`` from
    ``start`` (default ``START``), so the weights stay finite even where the texts are separable; deterministic.
    No text: ``start`` as it is."""
    origin = torch.tensor([math.log(w) for w in START], dtype=torch.float32)  # [E]: where the prior pulls
    first = origin if start is None else start.weights.log()
    if len(gold) == 0:
        return Combination(first.exp())
    theta = first.clone().requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=STEP)
    feats, gold = feats.detach().float(), gold.detach()
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(feats @ theta.exp(), gold) + PRIOR * ((theta - origin) ** 2).sum()
            loss.backward()
            opt.step()
    return Combination(theta.detach().exp())


def cross_validated(feats: torch.Tensor, gold: torch.Tensor, whole: Combination | None = None) -> torch.Tensor:
    """Each held-out text's predicted label index [N] by a combination fitted on the other held-out texts (leave one
    out, each fit started from ``whole``, the fit on all of them, made here when not given), so the combination's held-out accuracy can be compared fairly
    with the single modes', which fit nothing."""
    n = len(gold)
    whole = fit(feats, gold) if whole is None else whole
    out = torch.empty(n, dtype=torch.long)
    for i in range(n):
        rest = torch.tensor([j for j in range(n) if j != i], dtype=torch.long)
        refit = fit(feats[rest], gold[rest], start=whole, steps=REFIT_STEPS)
        out[i] = int(refit.distribution(feats[i:i + 1]).argmax(-1))
    return out
