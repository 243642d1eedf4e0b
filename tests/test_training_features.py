"""Cached frozen features (longmem_core.training.features): the same loss and gradients as the full forward."""
import json

import pytest
import torch

from longmem_core.model.segments import read_into_memory, segment_loss, segment_tokens
from longmem_core.training import TrainConfig, select_trainable, train
from longmem_core.training.features import SegmentFeatureCache, cached_segment_loss, check_cacheable, segment_features


def _memory_model(make_model, name):
    model = make_model(name, segment_length=48)
    torch.manual_seed(3)
    with torch.no_grad():  # a memory layer that has moved away from its backbone block, and open gates
        for p in model.side.layers[model.side.memory_index].parameters():
            p.add_(0.05 * torch.randn_like(p))
        model.side.gate.fill_(1.0)
    select_trainable(model, "memory")
    return model


@pytest.mark.parametrize("name", ["tiny", "tiny-gpt2"])
@pytest.mark.parametrize("with_bank", [False, True])
def test_cached_loss_and_gradients_equal_the_full_forward(make_model, book_text, name, with_bank):
    model = _memory_model(make_model, name)
    ids = model.tokenizer(book_text[:3000], add_special_tokens=False)["input_ids"]
    seg = segment_tokens(model)
    bank = None
    if with_bank:
        bank = model.new_bank()
        read_into_memory(model, ids[:2 * seg], bank)
    piece = ids[2 * seg:3 * seg]
    params = [p for p in model.parameters() if p.requires_grad]

    def loss_and_grads(fn):
        loss, n, keys, values = fn()
        if bank is not None:  # without memory the (identity-initialised) SideNet is the backbone: nothing to train
            (loss / n).backward()
        grads = [p.grad.clone() if p.grad is not None else None for p in params]
        model.zero_grad(set_to_none=True)
        return loss.detach(), n, keys, values, grads

    full = loss_and_grads(lambda: segment_loss(model, piece, bank))
    cached = loss_and_grads(lambda: cached_segment_loss(model, segment_features(model, piece, torch.float32), bank))
    assert cached[1] == full[1]
    assert torch.allclose(cached[0], full[0], rtol=1e-5)
    assert torch.allclose(cached[2], full[2], atol=1e-6) and torch.allclose(cached[3], full[3], atol=1e-6)
    for a, b in zip(cached[4], full[4]):
        assert (a is None) == (b is None) == (bank is None)
        assert a is None or torch.allclose(a, b, rtol=1e-3, atol=1e-6)
    half = cached_segment_loss(model, segment_features(model, piece), bank)[0]  # stored in 16 bits
    assert torch.allclose(half.detach(), full[0], rtol=1e-2)


def test_features_refuse_active_side_layers(make_model):
    model = make_model("tiny", segment_length=48)
    select_trainable(model, "all")
    with pytest.raises(ValueError, match="idle"):
        check_cacheable(model)
    with pytest.raises(ValueError, match="trainable='memory'"):
        TrainConfig(data=["x"], trainable="all", cache_features=True)


def test_training_on_cached_features_reuses_them_and_learns(make_model, book_text, tmp_path):
    book = tmp_path / "book.txt"
    book.write_text(book_text[:1200], encoding="utf-8")  # a few excerpts: 30 steps are several epochs
    model = make_model("tiny", segment_length=48)
    cfg = TrainConfig(data=[str(book)], out=str(tmp_path / "run"), steps=30, lr=3e-3, warmup=2, excerpt_segments=3,
                      checkpoint_every=30, cache_features=True, seed=1)
    from longmem_core.training import run
    from longmem_core.training.objectives.language import LanguageModelling
    objective = LanguageModelling(model, cfg)
    run(objective, model, cfg, log=lambda m: None, progress=False)
    assert isinstance(objective.features, SegmentFeatureCache) and objective.features.reused > 0
    span = segment_tokens(model) * cfg.excerpt_segments
    assert all(first % span == 0 for _, first in objective.plan)  # epochs over non-overlapping excerpts
    pool = {(0, f) for f in range(0, len(objective.docs[0]) - span + 1, span)}
    assert set(objective.plan[:len(pool)]) == pool  # the first epoch holds each excerpt once
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert sum(r["loss"] for r in log[-5:]) < sum(r["loss"] for r in log[:5])
