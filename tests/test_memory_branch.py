"""The closed memory branch (``memory_branch="closed"``, the default; issue 30, beyond the paper): an untrained SideNet
computes exactly what it computes without memory, whatever memory holds; training opens it."""
import torch

from longmem_core import LongMemConfig, LongMemModel, preset
from longmem_core.model.checkpoint import trained_parts
from longmem_core.training.params import floor_branch, make_optimizer, select_trainable
from test_model import _filled_bank as _bank, _ids


def test_an_untrained_sidenet_equals_the_backbone_whatever_memory_holds(make_model):
    model = make_model("tiny")
    assert model.cfg.memory_branch == "closed" and torch.equal(model.side.memory_scale, torch.zeros(4))
    ids = _ids(model, 24)
    bb = model.backbone
    backbone = bb.logits(bb(ids).hidden_states[-1])
    out = model(ids, _bank(model), trace=True)
    other = model(ids, _bank(model, "Entirely different words fill this second bank of memory. " * 4)).logits
    assert torch.equal(out.logits, other)  # memory read, none of it used
    assert torch.allclose(out.logits, backbone, atol=1e-5) and torch.allclose(out.logits, model(ids).logits, atol=1e-6)
    assert torch.equal(out.trace.branch_scale, torch.zeros(4)) and out.trace.chunk_ids.max() >= 0  # it did search


def test_the_papers_open_branch_lets_memory_in_at_init(make_model):
    model = make_model("tiny", memory_branch="open")
    assert model.side.memory_scale is None
    ids = _ids(model, 24)
    out = model(ids, _bank(model), trace=True)
    assert not torch.allclose(out.logits, model(ids).logits) and out.trace.branch_scale is None


def test_training_the_memory_layer_opens_the_branch(make_model):
    model = make_model("tiny")
    params, opt = make_optimizer(model, "memory", lr=1e-2, gate_lr_scale=10.0, weight_decay=0.0)
    assert any(p is model.side.memory_scale for p in params)
    assert any(p is model.side.memory_scale for p in opt.param_groups[1]["params"])  # the fast group
    bank, ids = _bank(model), _ids(model, 30)
    loss = torch.nn.functional.cross_entropy(model(ids, bank).logits[0, :-1], ids[0, 1:])
    loss.backward()
    assert model.side.memory_scale.grad.abs().sum() > 0  # the scale learns first ...
    opt.step()
    assert model.side.memory_scale.abs().sum() > 0
    assert not torch.allclose(model(ids, bank).logits, model(ids).logits)  # ... and memory is used after one step
    assert trained_parts({"side.memory_scale"}, model.side.memory_index) == {"memory_layer"}


def test_the_branch_floor_keeps_every_factor_at_zero_or_above(make_model):
    model = make_model("tiny")
    params, opt = make_optimizer(model, "memory", lr=1e-2, gate_lr_scale=10.0, weight_decay=0.0)
    bank, ids = _bank(model), _ids(model, 30)
    for sign, steps in ((1.0, 3), (-1.0, 30)):  # push the factors up, then down past 0 (Adam turns slowly)
        for _ in range(steps):
            model.side.memory_scale.grad = torch.full_like(model.side.memory_scale, -sign)
            opt.step()
            floor_branch(model)
    assert torch.equal(model.side.memory_scale, torch.zeros(4))  # projected back onto 0, not below
    assert torch.allclose(model(ids, bank).logits, model(ids).logits, atol=1e-5)  # closed again: the backbone
    open_model = make_model("tiny", memory_branch="open")
    floor_branch(open_model)  # an open branch has no factor: nothing to do


def test_checkpoints_saved_before_the_field_keep_their_open_branch(make_model, tmp_path, tiny_backbones):
    old = LongMemConfig.from_dict({k: v for k, v in preset("tiny").to_dict().items() if k != "memory_branch"})
    assert old.memory_branch == "open"
    assert LongMemConfig.from_dict(preset("tiny").to_dict()).memory_branch == "closed"
    model = make_model("tiny")
    with torch.no_grad():
        model.side.memory_scale.fill_(0.5)
    select_trainable(model, "memory")
    path = model.save_checkpoint(tmp_path / "closed.safetensors")
    fresh = LongMemModel(preset("tiny"), backbone=tiny_backbones["tiny-llama"])
    fresh.load_checkpoint(path)
    assert torch.equal(fresh.side.memory_scale, torch.full((4,), 0.5))
