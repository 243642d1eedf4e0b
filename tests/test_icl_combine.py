"""The combination of classification experts learned on held-out demonstrations (``icl_combine.py``)."""
import torch

from longmem_core.classify import icl_combine


def _texts(n: int, labels: int, seed: int = 0):
    """Held-out texts whose centroid cosines tell the label and whose in-context scores and votes are noise."""
    g = torch.Generator().manual_seed(seed)
    gold = torch.randint(labels, (n,), generator=g)  # [N]
    cosines = 0.1 * torch.randn(n, labels, generator=g)
    cosines[torch.arange(n), gold] += 0.2  # [N, L]
    calibrated = torch.softmax(torch.randn(n, labels, generator=g), -1)
    votes = torch.rand(n, labels, generator=g)
    return icl_combine.features(calibrated, cosines, votes), gold


def test_features_are_log_probabilities_cosines_and_vote_shares():
    calibrated = torch.tensor([[0.25, 0.75]])
    feats = icl_combine.features(calibrated, torch.tensor([[0.1, -0.2]]), torch.tensor([[3.0, 1.0]]))
    assert feats.shape == (1, 2, 3)
    assert torch.allclose(feats[0, :, 0], calibrated[0].log())
    assert torch.allclose(feats[0, :, 1], torch.tensor([0.1, -0.2]))
    assert torch.allclose(feats[0, :, 2], torch.tensor([0.75, 0.25]))


def test_the_fit_weighs_the_expert_that_tells_the_label():
    feats, gold = _texts(60, 3)
    combination = icl_combine.fit(feats, gold)
    w = combination.to_dict()
    assert set(w) == set(icl_combine.EXPERTS) and all(v >= 0 for v in w.values())
    # the cosines differ by ~0.2 between labels, the others by ~1: the centroid weight must dominate in effect
    assert w["centroid"] * 0.2 > 2 * max(w["context_cal"], w["knn"])
    dist = combination.distribution(feats)
    assert dist.shape == (60, 3) and torch.allclose(dist.sum(-1), torch.ones(60))
    assert (dist.argmax(-1) == gold).float().mean() > 0.8
    assert torch.equal(icl_combine.fit(feats, gold).weights, combination.weights)  # deterministic


def test_cross_validated_predictions_leave_each_text_out():
    feats, gold = _texts(12, 2, seed=1)
    predicted = icl_combine.cross_validated(feats, gold)
    assert predicted.shape == (12,)
    rest = torch.arange(1, 12)
    alone = icl_combine.fit(feats[rest], gold[rest]).distribution(feats[:1]).argmax(-1)
    assert int(predicted[0]) == int(alone)  # the first text predicted by a fit that never saw it


def test_nothing_to_learn_from_keeps_the_start():
    combination = icl_combine.fit(torch.zeros(0, 2, 3), torch.zeros(0, dtype=torch.long))
    assert torch.allclose(combination.weights, torch.tensor(icl_combine.START))
    assert icl_combine.cross_validated(torch.zeros(1, 2, 3), torch.zeros(1, dtype=torch.long)).shape == (1,)
