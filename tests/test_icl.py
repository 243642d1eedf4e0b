import math

import pytest
import torch

from longmem_core.classify import icl

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
