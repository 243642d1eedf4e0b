"""The classification modes (``icl_modes.py``) over the demonstrations of ``test_icl.py``."""
import pytest
import torch

from longmem_core.classify import icl, icl_modes, key_scores
from longmem_core.classify.settings import MODE
from test_icl import DEMOS, TEST


def _memory(model):
    bank = model.new_bank(capacity=4096)
    memory = icl.memorize_demonstrations(model, DEMOS, bank)
    return bank, memory, key_scores.demonstration_keys(bank, memory, icl.SENTIMENT_TEMPLATE)


def test_demonstration_keys_pool_the_banks_chunk_keys_over_each_text(tiny_model):
    bank, memory, keys = _memory(tiny_model)
    G, D = bank.n_kv_heads, bank.head_dim
    assert keys.keys.shape == (len(DEMOS), G * D)
    assert torch.allclose(keys.keys.norm(dim=-1), torch.ones(len(DEMOS)), atol=1e-4)  # every text has chunks
    # the first demonstration's key is the mean of the chunk means whose middle lies in its text
    text_start = icl.SENTIMENT_TEMPLATE.index("{text}")
    lo, hi = text_start, text_start + len(DEMOS[0][0])
    means = torch.from_numpy(bank.chunk_keys()).permute(1, 0, 2).reshape(-1, G * D)
    rows = [i for i, (a, b) in enumerate(bank.chunk_chars) if lo <= (a + b) / 2 < hi]
    expected = torch.nn.functional.normalize(means[rows].mean(0), dim=0)
    assert torch.allclose(keys.keys[0], expected, atol=1e-5)


def test_a_demonstration_read_as_a_query_is_near_itself(tiny_model):
    _, _, keys = _memory(tiny_model)
    query = key_scores.text_key(tiny_model, DEMOS[2][0], icl.SENTIMENT_TEMPLATE)
    assert query.shape == keys.keys.shape[1:] and abs(float(query.norm()) - 1) < 1e-4
    ranked = key_scores.nearest(keys, query, len(DEMOS))
    assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)
    assert 2 in [i for i, _ in ranked[:3]]


def test_knn_vote_counts_the_labels_of_the_nearest(tiny_model):
    _, _, keys = _memory(tiny_model)
    query = keys.keys[0].clone()  # exactly demonstration 0 ("positive")
    pred = key_scores.knn_vote(keys, query, ["negative", "positive"], neighbours=1)
    assert pred.label == "positive" and pred.scores["negative"] == 0 and 1 < pred.scores["positive"] < 2
    near = [keys.memory.examples[i][1] for i, _ in key_scores.nearest(keys, query, 5)]
    pred = key_scores.knn_vote(keys, query, ["negative", "positive"], neighbours=5)
    assert pred.label == max(["negative", "positive"], key=lambda label: (near.count(label), pred.scores[label]))
    assert int(sum(pred.scores.values())) == 5


def test_kate_context_puts_the_nearest_demonstrations_last(tiny_model):
    _, _, keys = _memory(tiny_model)
    query = keys.keys[3].clone()
    context = key_scores.kate_context(keys, query, icl.SENTIMENT_TEMPLATE, k=3)
    nearest = [i for i, _ in key_scores.nearest(keys, query, 3)]
    assert context == icl.context_text(icl.SENTIMENT_TEMPLATE, [DEMOS[i] for i in reversed(nearest)])
    assert context.endswith(icl.format_demonstration(icl.SENTIMENT_TEMPLATE, *DEMOS[3]))


def test_evaluate_modes_classifies_every_text_in_every_mode(tiny_model):
    result = icl_modes.evaluate_modes(tiny_model, TEST, DEMOS, k=3, seed=2)
    assert set(result.predictions) == set(icl_modes.MODES) and result.n == len(TEST)
    assert all(len(p) == len(TEST) and set(p) <= {"negative", "positive"} for p in result.predictions.values())
    for mode, acc in result.accuracy.items():
        assert acc == sum(p == g for p, g in zip(result.predictions[mode], result.gold)) / len(TEST)
    old = icl.evaluate(tiny_model, TEST, DEMOS, k=3, seed=2)  # same context and bank: the same predictions
    assert result.predictions["context"] == old.context_predictions
    assert result.predictions["memory"] == old.memory_predictions
    with pytest.raises(ValueError, match="unknown modes"):
        icl_modes.evaluate_modes(tiny_model, TEST, DEMOS, modes=["psychic"])


# -- beyond the paper: votes and centroids over centred keys, calibrated context, their mixture --

def test_vote_distribution_counts_weighs_and_balances():
    sims = torch.tensor([[0.9, 0.8, 0.1, 0.7]])  # one test text, four demonstrations
    onehot = torch.tensor([[1., 0.], [0., 1.], [0., 1.], [0., 1.]])  # labels a, b, b, b
    plain = key_scores.vote_distribution(sims, onehot, neighbours=3)  # votes of 0 (a), 1 (b), 3 (b)
    assert plain.shape == (1, 2) and torch.allclose(plain.sum(-1), torch.ones(1))
    expected = torch.tensor([1 + 0.9 / 4, 2 + (0.8 + 0.7) / 4])
    assert torch.allclose(plain[0], expected / expected.sum())
    sharp = key_scores.vote_distribution(sims, onehot, neighbours=3, temperature=0.01)
    assert sharp[0, 0] > 0.99  # the nearest alone decides at a low temperature
    balanced = key_scores.vote_distribution(sims, onehot, neighbours=3, balanced=True)
    weights = expected / torch.tensor([0.25, 0.75])  # each label's mass over its share of the demonstrations
    assert torch.allclose(balanced[0], weights / weights.sum())


def test_calibration_takes_out_the_prompts_bias():
    probs = torch.tensor([[0.7, 0.3], [0.9, 0.1]])
    assert torch.allclose(key_scores.calibrate(probs, torch.tensor([0.5, 0.5])), probs)  # no bias, no change
    cal = key_scores.calibrate(probs, torch.tensor([0.8, 0.2]))  # a prompt that favours the first label
    assert cal[0].argmax() == 1 and cal[1].argmax() == 0  # 0.7 is below the bias, 0.9 above it
    assert torch.allclose(cal.sum(-1), torch.ones(2))


def test_centred_keys_take_out_the_mean(tiny_model):
    _, _, keys = _memory(tiny_model)
    c = key_scores.centred(keys)
    assert c.mean is not None and torch.allclose(c.mean, keys.keys.mean(0))
    assert torch.allclose(c.keys.norm(dim=-1), torch.ones(len(DEMOS)), atol=1e-4)
    assert torch.allclose(c.keys[2], torch.nn.functional.normalize(keys.keys[2] - c.mean, dim=0))
    assert torch.equal(key_scores.centre_query(keys, keys.keys[0]), keys.keys[0])  # raw keys: the query as it is
    assert torch.allclose(key_scores.centre_query(c, keys.keys[2]), c.keys[2])


def test_content_free_probabilities_average_the_content_free_inputs(tiny_model):
    labels = ["negative", "positive"]
    context = icl.context_text(icl.SENTIMENT_TEMPLATE, DEMOS[:2])
    cf = key_scores.content_free_probabilities(tiny_model, labels, context=context, template=icl.SENTIMENT_TEMPLATE)
    each = [key_scores.probabilities(icl.classify(tiny_model, t, labels, context=context).scores, labels)
            for t in key_scores.CONTENT_FREE]
    assert torch.allclose(cf, torch.stack(each).mean(0)) and abs(float(cf.sum()) - 1) < 1e-5


def test_new_modes_follow_their_definitions(tiny_model):
    labels = ["negative", "positive"]
    result = icl_modes.evaluate_modes(tiny_model, TEST, DEMOS, k=3, seed=2)
    assert set(result.predictions) == set(icl_modes.MODES) and result.memory_tokens > 0
    assert icl_modes.DEFAULT_MODE in icl_modes.MODES
    # rebuild each beyond-paper prediction by hand from the same demonstrations and prompt
    bank = tiny_model.new_bank(capacity=1 << 16)
    memory = icl.memorize_demonstrations(tiny_model, DEMOS, bank)
    c = key_scores.centred(key_scores.demonstration_keys(bank, memory, icl.SENTIMENT_TEMPLATE))
    centroids = key_scores.label_centroids(c, labels)
    context = icl.context_text(icl.SENTIMENT_TEMPLATE, icl.sample_context(DEMOS, 3, seed=2))
    cf = key_scores.content_free_probabilities(tiny_model, labels, context=context, template=icl.SENTIMENT_TEMPLATE)
    for i, (text, _) in enumerate(TEST):
        q = key_scores.text_key(tiny_model, text, icl.SENTIMENT_TEMPLATE)
        near = key_scores.centroid_distribution(centroids, key_scores.centre_query(c, q))
        assert result.predictions["centroid"][i] == labels[int(near.argmax())]
        pred = icl.classify(tiny_model, text, labels, context=context)
        cal = key_scores.calibrate(key_scores.probabilities(pred.scores, labels), cf)
        assert result.predictions["context_cal"][i] == labels[int(cal.argmax())]
        mixed = MODE.mix_weight * near + (1 - MODE.mix_weight) * cal
        assert result.predictions["centroid_context"][i] == labels[int(mixed.argmax())]


def test_a_subset_of_modes_reads_only_what_it_needs(tiny_model):
    result = icl_modes.evaluate_modes(tiny_model, TEST, DEMOS, modes=["centroid"], k=3)
    assert list(result.predictions) == ["centroid"] and len(result.predictions["centroid"]) == len(TEST)


def test_label_centroids_are_the_mean_key_of_each_label(tiny_model):
    _, memory, keys = _memory(tiny_model)
    c = key_scores.centred(keys)
    centroids = key_scores.label_centroids(c, ["negative", "positive", "neutral"])
    pos = [i for i, (_, label) in enumerate(DEMOS) if label == "positive"]
    assert torch.allclose(centroids[1], torch.nn.functional.normalize(c.keys[pos].mean(0), dim=0), atol=1e-5)
    assert torch.equal(centroids[2], torch.zeros_like(centroids[2]))  # no demonstration has it
    probs = key_scores.centroid_distribution(centroids[:2], c.keys[pos[0]])
    assert abs(float(probs.sum()) - 1) < 1e-5
    sims = centroids[:2] @ c.keys[pos[0]]
    assert torch.allclose(probs, torch.softmax(sims / MODE.centroid_temperature, dim=0))


def _count_text_keys(monkeypatch) -> list[str]:
    """Every text whose key ``key_scores.text_key`` reads from now on, in order."""
    read, real = [], key_scores.text_key

    def counting(model, text, template):
        read.append(text)
        return real(model, text, template)
    monkeypatch.setattr(key_scores, "text_key", counting)
    return read


def test_a_key_read_once_serves_every_mode(tiny_model, monkeypatch):
    labels = ["negative", "positive"]
    bank, memory, _ = _memory(tiny_model)
    context = icl.context_text(icl.SENTIMENT_TEMPLATE, DEMOS[:2])
    every = icl_modes.ModeClassifier(tiny_model, labels, icl.SENTIMENT_TEMPLATE, context, bank, memory,
                                     icl_modes.MODES, 2, MODE.neighbours)
    read = _count_text_keys(monkeypatch)
    for text, _ in TEST:
        plain = every.predict(text, icl_modes.MODES)  # reads the text's key itself
        key = every.query_key(text)
        assert torch.allclose(key, key_scores.text_key(tiny_model, text, icl.SENTIMENT_TEMPLATE))
        read.clear()
        given = every.predict(text, icl_modes.MODES, key=key)
        assert read == []  # the key given is used: the text is not read for it again
        assert {m: p.label for m, p in given.items()} == {m: p.label for m, p in plain.items()}
        for mode in icl_modes.MODES:
            assert given[mode].scores == pytest.approx(plain[mode].scores, abs=1e-5)
    in_context = icl_modes.ModeClassifier(tiny_model, labels, icl.SENTIMENT_TEMPLATE, context, bank, memory,
                                          ("context",), 2, MODE.neighbours)
    assert in_context.query_key(TEST[0][0]) is None and read == []  # no mode there compares keys
    in_context.predict(TEST[0][0], ("context",))
    assert read == []
