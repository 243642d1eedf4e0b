import math

import pytest
import torch

from longmem_core import icl

DEMOS = [("a fine and moving film", "positive"), ("dull , flat and too long", "negative"),
         ("the cast is wonderful", "positive"), ("a tedious mess", "negative"),
         ("warm , funny , smart", "positive"), ("i hated every minute", "negative"),
         ("an instant classic", "positive"), ("badly written and acted", "negative")]
TEST = [("a wonderful , warm film", "positive"), ("a dull mess", "negative"), ("funny and smart", "positive")]


def test_templates_follow_the_authors_script():
    assert icl.template_for("SST-2") == "Review: {text} Sentiment: {label}. "
    assert icl.template_for("subj") == "Input: {text} Type: {label}. "
    assert icl.template_for("unknown-task") == icl.SENTIMENT_TEMPLATE
    assert icl.format_demonstration(icl.SENTIMENT_TEMPLATE, "nice", "positive") == "Review: nice Sentiment: positive. "
    assert icl.query_prompt(icl.SENTIMENT_TEMPLATE, "nice") == "Review: nice Sentiment:"
    assert icl.query_prompt(icl.SUBJ_TEMPLATE, "it rains") == "Input: it rains Type:"
    assert icl.context_text(icl.SENTIMENT_TEMPLATE, DEMOS[:2]) == (
        "Review: a fine and moving film Sentiment: positive. Review: dull , flat and too long Sentiment: negative. ")


@pytest.mark.parametrize("bad", ["{label} {text}", "Review: {text}", "{text} {label} {label}"])
def test_bad_templates_are_refused(bad):
    with pytest.raises(ValueError, match="template"):
        icl.query_prompt(bad, "x")


def test_sampling_is_reproducible_and_bounded():
    a = icl.sample_context(DEMOS, k=3, seed=5)
    assert a == icl.sample_context(DEMOS, k=3, seed=5) and len(a) == 3 and set(a) <= set(DEMOS)
    assert len(set(a)) == 3
    assert sorted(icl.sample_context(DEMOS, k=100)) == sorted(DEMOS)
    assert icl.label_set(DEMOS) == ["negative", "positive"]
    with pytest.raises(ValueError):
        icl.sample_context(DEMOS, k=-1)


def test_memorized_demonstrations_map_back_to_their_text(tiny_model):
    bank = tiny_model.new_bank(capacity=4096)
    memory = icl.memorize_demonstrations(tiny_model, DEMOS, bank)
    full = icl.context_text(icl.SENTIMENT_TEMPLATE, DEMOS)
    assert bank.sources == [{"name": icl.DEMONSTRATION_SOURCE, "text": full}]
    assert memory.stats.tokens == len(bank)
    for cid in bank.chunk_ids:
        info = bank.chunk_info(cid)
        covering = memory.covering(info.char_start, info.char_end)
        assert covering == sorted(covering) and covering
        joined = "".join(icl.format_demonstration(icl.SENTIMENT_TEMPLATE, *DEMOS[i]) for i in covering)
        assert info.text in joined
    assert memory.covering(0, 1) == [0] and memory.covering(5, 5) == []
    last_start = memory.starts[-1]
    assert memory.covering(last_start, last_start + 3) == [len(DEMOS) - 1]


def test_classify_scores_label_words_after_the_prompt(tiny_model):
    context = icl.context_text(icl.SENTIMENT_TEMPLATE, DEMOS[:4])
    labels = ["negative", "positive"]
    pred = icl.classify(tiny_model, "a lovely film", labels, context=context)
    scores, _ = tiny_model.score_labels(context + "Review: a lovely film Sentiment:", [" negative", " positive"])
    assert pred.scores == pytest.approx(dict(zip(labels, scores.tolist())), abs=1e-5)
    assert pred.label == labels[int(scores.argmax())]
    assert pred.retrieved == []  # no memory, nothing retrieved


def test_classify_with_memory_reports_retrieved_demonstrations(tiny_model):
    bank = tiny_model.new_bank(capacity=4096)
    icl.memorize_demonstrations(tiny_model, DEMOS, bank)
    pred = icl.classify(tiny_model, "a lovely film", ["negative", "positive"], context="", bank=bank, top=3)
    assert 0 < len(pred.retrieved) <= 3
    assert sum(r.score for r in pred.retrieved) <= 1 + 1e-6
    memorized = bank.sources[0]["text"]
    for r in pred.retrieved:
        assert r.info.text and r.info.text in memorized


def test_evaluate_counts_both_systems_on_the_same_prompts(tiny_model):
    steps = []
    result = icl.evaluate(tiny_model, TEST, DEMOS, k=3, seed=2, progress=lambda d, t: steps.append((d, t)))
    assert steps[-1] == (len(TEST), len(TEST)) and len(steps) == len(TEST)
    assert result.n == len(TEST) and result.k == 3 and result.labels == ["negative", "positive"]
    everything = tiny_model.new_bank(capacity=1 << 20)
    icl.memorize_demonstrations(tiny_model, DEMOS, everything)
    assert result.memory_tokens == len(everything) > tiny_model.cfg.capacity  # none evicted, beyond the config's capacity
    gold = [label for _, label in TEST]
    assert result.accuracy_memory == sum(p == g for p, g in zip(result.memory_predictions, gold)) / len(TEST)
    assert result.accuracy_context == sum(p == g for p, g in zip(result.context_predictions, gold)) / len(TEST)
    context = icl.context_text(icl.SENTIMENT_TEMPLATE, icl.sample_context(DEMOS, 3, seed=2))
    for (text, _), predicted in zip(TEST, result.context_predictions):
        assert icl.classify(tiny_model, text, result.labels, context=context).label == predicted
    assert set(result.to_dict()) >= {"accuracy_memory", "accuracy_context", "n"}


def test_closed_gate_makes_memory_accuracy_equal_in_context_accuracy(make_model):
    model = make_model("tiny")
    with torch.no_grad():
        model.side.gate.fill_(-math.inf)  # memory gets no weight: LongMem == backbone
    result = icl.evaluate(model, TEST, DEMOS, k=2)
    assert result.memory_predictions == result.context_predictions
    assert result.accuracy_memory == result.accuracy_context


def test_evaluate_refuses_empty_test_sets(tiny_model):
    with pytest.raises(ValueError):
        icl.evaluate(tiny_model, [], DEMOS)


@pytest.mark.parametrize("with_memory", [False, True])
def test_a_cached_context_gives_the_same_scores_and_trace(make_model, with_memory):
    model = make_model("tiny")
    with torch.no_grad():
        model.side.scale.fill_(0.5)  # every side layer active: their caches are used too
        model.side.gate.normal_()
    bank = None
    if with_memory:
        bank = model.new_bank(capacity=4096)
        icl.memorize_demonstrations(model, DEMOS, bank)
    context = icl.context_text(icl.SENTIMENT_TEMPLATE, DEMOS[:4])
    cache = model.cache_prompt(context, bank)
    assert cache.shared(model.encode(context + "Review: a lovely film Sentiment:")) > 0
    for text, _ in TEST:
        prompt = context + icl.query_prompt(icl.SENTIMENT_TEMPLATE, text)
        plain, plain_trace = model.score_labels(prompt, [" negative", " positive"], bank, trace=with_memory)
        cached, cached_trace = model.score_labels(prompt, [" negative", " positive"], bank, trace=with_memory,
                                                  cache=cache)
        assert torch.allclose(plain, cached, atol=1e-4)
        if with_memory:  # the cached trace covers the tokens after the shared ones
            n = cache.shared(model.encode(prompt))
            assert torch.equal(plain_trace.chunk_ids[:, n:], cached_trace.chunk_ids)
        a = icl.classify(model, text, ["negative", "positive"], context=context, bank=bank, top=3)
        b = icl.classify(model, text, ["negative", "positive"], context=context, bank=bank, top=3, cache=cache)
        assert a.label == b.label and a.scores == pytest.approx(b.scores, abs=1e-4)
        assert [r.info.chunk_id for r in a.retrieved] == [r.info.chunk_id for r in b.retrieved]
    with pytest.raises(ValueError, match="another bank"):
        model.score_labels(context + "Review: x Sentiment:", [" negative"], model.new_bank(), cache=cache)


# -- classification modes: k-NN vote over memory keys, KATE --

def _memory(model):
    bank = model.new_bank(capacity=4096)
    memory = icl.memorize_demonstrations(model, DEMOS, bank)
    return bank, memory, icl.demonstration_keys(bank, memory, icl.SENTIMENT_TEMPLATE)


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
    query = icl.text_key(tiny_model, DEMOS[2][0], icl.SENTIMENT_TEMPLATE)
    assert query.shape == keys.keys.shape[1:] and abs(float(query.norm()) - 1) < 1e-4
    ranked = icl.nearest(keys, query, len(DEMOS))
    assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)
    assert 2 in [i for i, _ in ranked[:3]]


def test_knn_vote_counts_the_labels_of_the_nearest(tiny_model):
    _, _, keys = _memory(tiny_model)
    query = keys.keys[0].clone()  # exactly demonstration 0 ("positive")
    pred = icl.knn_vote(keys, query, ["negative", "positive"], neighbours=1)
    assert pred.label == "positive" and pred.scores["negative"] == 0 and 1 < pred.scores["positive"] < 2
    near = [keys.memory.examples[i][1] for i, _ in icl.nearest(keys, query, 5)]
    pred = icl.knn_vote(keys, query, ["negative", "positive"], neighbours=5)
    assert pred.label == max(["negative", "positive"], key=lambda label: (near.count(label), pred.scores[label]))
    assert int(sum(pred.scores.values())) == 5


def test_kate_context_puts_the_nearest_demonstrations_last(tiny_model):
    _, _, keys = _memory(tiny_model)
    query = keys.keys[3].clone()
    context = icl.kate_context(keys, query, icl.SENTIMENT_TEMPLATE, k=3)
    nearest = [i for i, _ in icl.nearest(keys, query, 3)]
    assert context == icl.context_text(icl.SENTIMENT_TEMPLATE, [DEMOS[i] for i in reversed(nearest)])
    assert context.endswith(icl.format_demonstration(icl.SENTIMENT_TEMPLATE, *DEMOS[3]))


def test_evaluate_modes_classifies_every_text_in_every_mode(tiny_model):
    result = icl.evaluate_modes(tiny_model, TEST, DEMOS, k=3, seed=2)
    assert set(result.predictions) == set(icl.MODES) and result.n == len(TEST)
    assert all(len(p) == len(TEST) and set(p) <= {"negative", "positive"} for p in result.predictions.values())
    for mode, acc in result.accuracy.items():
        assert acc == sum(p == g for p, g in zip(result.predictions[mode], result.gold)) / len(TEST)
    old = icl.evaluate(tiny_model, TEST, DEMOS, k=3, seed=2)  # same context and bank: the same predictions
    assert result.predictions["context"] == old.context_predictions
    assert result.predictions["memory"] == old.memory_predictions
    with pytest.raises(ValueError, match="unknown modes"):
        icl.evaluate_modes(tiny_model, TEST, DEMOS, modes=["psychic"])


# -- beyond the paper: votes and centroids over centred keys, calibrated context, their mixture --

def test_vote_distribution_counts_weighs_and_balances():
    sims = torch.tensor([[0.9, 0.8, 0.1, 0.7]])  # one test text, four demonstrations
    onehot = torch.tensor([[1., 0.], [0., 1.], [0., 1.], [0., 1.]])  # labels a, b, b, b
    plain = icl.vote_distribution(sims, onehot, neighbours=3)  # votes of 0 (a), 1 (b), 3 (b)
    assert plain.shape == (1, 2) and torch.allclose(plain.sum(-1), torch.ones(1))
    expected = torch.tensor([1 + 0.9 / 4, 2 + (0.8 + 0.7) / 4])
    assert torch.allclose(plain[0], expected / expected.sum())
    sharp = icl.vote_distribution(sims, onehot, neighbours=3, temperature=0.01)
    assert sharp[0, 0] > 0.99  # the nearest alone decides at a low temperature
    balanced = icl.vote_distribution(sims, onehot, neighbours=3, balanced=True)
    weights = expected / torch.tensor([0.25, 0.75])  # each label's mass over its share of the demonstrations
    assert torch.allclose(balanced[0], weights / weights.sum())


def test_calibration_takes_out_the_prompts_bias():
    probs = torch.tensor([[0.7, 0.3], [0.9, 0.1]])
    assert torch.allclose(icl.calibrate(probs, torch.tensor([0.5, 0.5])), probs)  # no bias, no change
    cal = icl.calibrate(probs, torch.tensor([0.8, 0.2]))  # a prompt that favours the first label
    assert cal[0].argmax() == 1 and cal[1].argmax() == 0  # 0.7 is below the bias, 0.9 above it
    assert torch.allclose(cal.sum(-1), torch.ones(2))


def test_centred_keys_take_out_the_mean(tiny_model):
    _, _, keys = _memory(tiny_model)
    c = icl.centred(keys)
    assert c.mean is not None and torch.allclose(c.mean, keys.keys.mean(0))
    assert torch.allclose(c.keys.norm(dim=-1), torch.ones(len(DEMOS)), atol=1e-4)
    assert torch.allclose(c.keys[2], torch.nn.functional.normalize(keys.keys[2] - c.mean, dim=0))
    assert torch.equal(icl.centre_query(keys, keys.keys[0]), keys.keys[0])  # raw keys: the query as it is
    assert torch.allclose(icl.centre_query(c, keys.keys[2]), c.keys[2])


def test_content_free_probabilities_average_the_content_free_inputs(tiny_model):
    labels = ["negative", "positive"]
    context = icl.context_text(icl.SENTIMENT_TEMPLATE, DEMOS[:2])
    cf = icl.content_free_probabilities(tiny_model, labels, context=context, template=icl.SENTIMENT_TEMPLATE)
    each = [icl.probabilities(icl.classify(tiny_model, t, labels, context=context).scores, labels)
            for t in icl.CONTENT_FREE]
    assert torch.allclose(cf, torch.stack(each).mean(0)) and abs(float(cf.sum()) - 1) < 1e-5


def test_new_modes_follow_their_definitions(tiny_model):
    labels = ["negative", "positive"]
    result = icl.evaluate_modes(tiny_model, TEST, DEMOS, k=3, seed=2)
    assert set(result.predictions) == set(icl.MODES) and result.memory_tokens > 0
    assert icl.DEFAULT_MODE in icl.MODES
    # rebuild each beyond-paper prediction by hand from the same demonstrations and prompt
    bank = tiny_model.new_bank(capacity=1 << 16)
    memory = icl.memorize_demonstrations(tiny_model, DEMOS, bank)
    c = icl.centred(icl.demonstration_keys(bank, memory, icl.SENTIMENT_TEMPLATE))
    centroids = icl.label_centroids(c, labels)
    context = icl.context_text(icl.SENTIMENT_TEMPLATE, icl.sample_context(DEMOS, 3, seed=2))
    cf = icl.content_free_probabilities(tiny_model, labels, context=context, template=icl.SENTIMENT_TEMPLATE)
    for i, (text, _) in enumerate(TEST):
        q = icl.text_key(tiny_model, text, icl.SENTIMENT_TEMPLATE)
        near = icl.centroid_distribution(centroids, icl.centre_query(c, q))
        assert result.predictions["centroid"][i] == labels[int(near.argmax())]
        pred = icl.classify(tiny_model, text, labels, context=context)
        cal = icl.calibrate(icl.probabilities(pred.scores, labels), cf)
        assert result.predictions["context_cal"][i] == labels[int(cal.argmax())]
        mixed = icl.MIX_WEIGHT * near + (1 - icl.MIX_WEIGHT) * cal
        assert result.predictions["centroid_context"][i] == labels[int(mixed.argmax())]


def test_a_subset_of_modes_reads_only_what_it_needs(tiny_model):
    result = icl.evaluate_modes(tiny_model, TEST, DEMOS, modes=["centroid"], k=3)
    assert list(result.predictions) == ["centroid"] and len(result.predictions["centroid"]) == len(TEST)


def test_label_centroids_are_the_mean_key_of_each_label(tiny_model):
    _, memory, keys = _memory(tiny_model)
    c = icl.centred(keys)
    centroids = icl.label_centroids(c, ["negative", "positive", "neutral"])
    pos = [i for i, (_, label) in enumerate(DEMOS) if label == "positive"]
    assert torch.allclose(centroids[1], torch.nn.functional.normalize(c.keys[pos].mean(0), dim=0), atol=1e-5)
    assert torch.equal(centroids[2], torch.zeros_like(centroids[2]))  # no demonstration has it
    probs = icl.centroid_distribution(centroids[:2], c.keys[pos[0]])
    assert abs(float(probs.sum()) - 1) < 1e-5
    sims = centroids[:2] @ c.keys[pos[0]]
    assert torch.allclose(probs, torch.softmax(sims / icl.CENTROID_TEMPERATURE, dim=0))
