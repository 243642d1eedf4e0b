"""Reading several texts at once (``key_scores.text_keys``, ``icl.label_scores``, ``LongMemModel.score_prompts``):
the same keys and label scores as one text at a time, for texts of different lengths and labels of different
token lengths, across batches."""
import pytest
import torch

from longmem_core.classify import icl, key_scores
from longmem_core.model import scoring
from test_icl import DEMOS, TEST

TEXTS = [t for t, _ in TEST + DEMOS] + ["ok", "a much longer review that goes on and on about the plot , " * 3]


def test_batched_keys_equal_each_texts_own_key(tiny_model, monkeypatch):
    monkeypatch.setattr(key_scores, "KEY_ROWS_AT_ONCE", 5)  # several batches, the last one short ...
    monkeypatch.setattr(key_scores, "KEY_TOKENS_AT_ONCE", 100)  # ... and the longest text alone in its own
    for template in (icl.SENTIMENT_TEMPLATE, icl.SUBJ_TEMPLATE):
        batched = key_scores.text_keys(tiny_model, TEXTS, template)
        alone = torch.stack([key_scores.text_key(tiny_model, t, template) for t in TEXTS])
        assert batched.shape == alone.shape and torch.allclose(batched, alone, atol=1e-5)
    assert key_scores.text_keys(tiny_model, [], icl.SENTIMENT_TEMPLATE).shape[0] == 0


@pytest.mark.parametrize("cached", [True, False])
def test_batched_label_scores_equal_classify(tiny_model, monkeypatch, cached):
    monkeypatch.setattr(scoring, "ROWS_AT_ONCE", 7)  # rows of one text fall in different batches
    monkeypatch.setattr(scoring, "TOKENS_AT_ONCE", 400)  # the longest rows fewer at once
    labels = ["negative", "positive", "so-so", "not good at all"]  # 9, 9, 6 and 16 tokens after their space
    context = icl.context_text(icl.SENTIMENT_TEMPLATE, DEMOS[:4])
    cache = tiny_model.cache_prompt(context) if cached else None
    batched = icl.label_scores(tiny_model, TEXTS, labels, context=context, template=icl.SENTIMENT_TEMPLATE,
                               cache=cache)
    alone = torch.tensor([[icl.classify(tiny_model, t, labels, context=context, template=icl.SENTIMENT_TEMPLATE,
                                        top=0, cache=cache).scores[label] for label in labels] for t in TEXTS])
    assert batched.shape == (len(TEXTS), len(labels)) and torch.allclose(batched, alone, atol=1e-4)


@pytest.mark.parametrize("with_memory", [False, True])
def test_score_prompts_equals_score_continuations(make_model, with_memory):
    """One-token continuations (scored at the prompt's last position, shared by its rows) beside longer ones,
    active side layers (their caches expanded too) and, with memory, the memory layer reading a bank."""
    model = make_model("tiny")
    with torch.no_grad():
        model.side.scale.fill_(0.5)
        model.side.gate.normal_()
    bank = None
    if with_memory:
        bank = model.new_bank(capacity=4096)
        icl.memorize_demonstrations(model, DEMOS, bank)
    context = icl.context_text(icl.SENTIMENT_TEMPLATE, DEMOS[:3])
    cache = model.cache_prompt(context, bank)
    prompts = [model.encode(context + icl.query_prompt(icl.SENTIMENT_TEMPLATE, t)) for t in TEXTS[:6]]
    for continuations in ([[70], [71, 72, 73], [74], [75, 76]], [[70], [74]]):
        batched = model.score_prompts(prompts, continuations, bank, cache=cache)
        alone = torch.stack([model.score_continuations(p, continuations, bank, cache=cache)[0] for p in prompts])
        assert torch.allclose(batched, alone, atol=1e-4)
    uncached = model.score_prompts(prompts[:2], [[70], [71, 72]], bank)
    assert torch.allclose(uncached, torch.stack([model.score_continuations(p, [[70], [71, 72]], bank)[0]
                                                 for p in prompts[:2]]), atol=1e-4)
    with pytest.raises(ValueError, match="another bank"):
        model.score_prompts(prompts, [[70]], model.new_bank(), cache=cache)
    with pytest.raises(ValueError, match="at least one token"):
        model.score_prompts(prompts, [[70], []], bank, cache=cache)


def test_length_batches_bound_rows_and_tokens():
    lengths = [5, 30, 1, 7, 7, 100, 2, 8]
    batches = scoring.length_batches(lengths, rows=3, tokens=24)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))  # every row once
    assert [[lengths[i] for i in b] for b in batches] == [[1, 2, 5], [7, 7, 8], [30], [100]]
    assert all(len(b) <= 3 and (len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 24) for b in batches)
    assert scoring.length_batches([], 3, 24) == []
