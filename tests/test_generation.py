"""Generation's small functions: prefill, decode_one_token and sample_token."""
import pytest
import torch

from longmem_core.generation import decode_one_token, prefill, sample_token
from longmem_core.kv_cache import ModelCaches


def test_sample_token_is_greedy_at_temperature_zero_and_keeps_to_the_nucleus():
    logits = torch.tensor([0.0, 3.0, 1.0, -2.0])
    assert sample_token(logits, 0.0, 0.9) == 1
    g = torch.Generator().manual_seed(0)
    assert {sample_token(logits, 1.0, 0.01, g) for _ in range(20)} == {1}  # the nucleus holds the top token only
    drawn = {sample_token(logits, 1.0, 1.0, g) for _ in range(400)}
    assert {1, 2} <= drawn <= {0, 1, 2, 3}


def test_prefill_then_decode_one_token_match_one_full_forward(make_model):
    model = make_model("tiny")
    bank = model.new_bank()
    model.memorize("The Time Traveller smiled at us. " * 4, bank)
    ids = torch.tensor([model.encode("Then he said the pass key")])
    caches = ModelCaches.empty(model, max_length=ids.shape[1] + 1)
    with torch.no_grad():
        first = prefill(model, ids, bank, caches)
        nxt = decode_one_token(model, torch.tensor([[7]]), bank, caches)
        full = model(torch.cat([ids, torch.tensor([[7]])], 1), bank, trace=True)
    assert torch.allclose(first.logits, full.logits[0, -2], atol=1e-5)
    assert torch.allclose(nxt.logits, full.logits[0, -1], atol=1e-5)
    assert nxt.trace is not None and caches.backbone[0].length == ids.shape[1] + 1
    with pytest.raises(AssertionError, match="empty"):
        prefill(model, ids, bank, caches)
    with pytest.raises(AssertionError, match="one token"):
        decode_one_token(model, ids, bank, caches)


def test_backbone_only_steps_ignore_memory(make_model):
    model = make_model("tiny")
    ids = torch.tensor([model.encode("hello there")])
    with torch.no_grad():
        step = prefill(model, ids, None, ModelCaches.empty(model), backbone_only=True)
        ref = model.backbone.logits(model.backbone(ids).hidden_states[-1])[0, -1]
    assert step.trace is None and torch.allclose(step.logits, ref, atol=1e-6)
