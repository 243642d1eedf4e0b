"""The one training loop, its schedule and the language-modelling objective (longmem_core.training)."""
import json

import pytest
import torch
from safetensors.torch import load_file

from longmem_core.training import TrainConfig, lr_at, train
from longmem_core.training.objectives.language import plan_excerpts


@pytest.fixture()
def texts(tmp_path, book_text):
    tr, va = tmp_path / "train.txt", tmp_path / "val.txt"
    tr.write_text(book_text[:20000], encoding="utf-8")
    va.write_text(book_text[-3000:], encoding="utf-8")
    return tr, va


def _cfg(texts, out, **kw):
    args = dict(data=[str(texts[0])], val=[str(texts[1])], out=str(out), steps=12, lr=3e-3, warmup=2,
                excerpt_segments=3, checkpoint_every=6, val_segments=2, trainable="all", seed=1)
    args.update(kw)
    return TrainConfig(**args)


def test_training_lowers_the_loss_and_leaves_the_backbone_alone(make_model, texts, tmp_path):
    model = make_model("tiny", segment_length=48)
    before = {n: p.clone() for n, p in model.backbone.named_parameters()}
    path = train(_cfg(texts, tmp_path / "run", steps=30), model, log=lambda m: None)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    first, last = sum(r["loss"] for r in log[:5]) / 5, sum(r["loss"] for r in log[-5:]) / 5
    assert last < first
    assert "val_loss_memory" in log[-1] and "val_loss_no_memory" in log[-1]
    for n, p in model.backbone.named_parameters():
        assert torch.equal(p, before[n]), n
    assert set(load_file(path)) == set(model.trainable_parameters())


def test_resume_is_exact(make_model, texts, tmp_path):
    """A run interrupted right after its step-6 checkpoint and resumed by a fresh model ends where an
    uninterrupted run ends."""
    train(_cfg(texts, tmp_path / "a"), make_model("tiny", segment_length=48), log=lambda m: None)

    class Interrupt(Exception):
        pass

    def interrupt_at_step_6(msg):
        if msg.startswith("step 6:"):
            raise Interrupt

    with pytest.raises(Interrupt):
        train(_cfg(texts, tmp_path / "b"), make_model("tiny", segment_length=48), log=interrupt_at_step_6)
    messages = []
    train(_cfg(texts, tmp_path / "b"), make_model("tiny", segment_length=48), log=messages.append)
    assert messages[0] == "resuming at step 6"
    a = load_file(tmp_path / "a" / "sidenet.safetensors")
    b = load_file(tmp_path / "b" / "sidenet.safetensors")
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-6), name


def test_resume_refuses_another_configuration(make_model, texts, tmp_path):
    train(_cfg(texts, tmp_path / "r", steps=2, checkpoint_every=2), make_model("tiny", segment_length=48),
          log=lambda m: None)
    with pytest.raises(ValueError, match="another configuration"):
        train(_cfg(texts, tmp_path / "r", steps=4), make_model("tiny", segment_length=48), log=lambda m: None)


def test_plan_and_schedule():
    plan = plan_excerpts([100, 5000, 3000], seg=10, n_segments=20, count=50, seed=0)
    assert all(d in (1, 2) and 0 <= s <= [100, 5000, 3000][d] - 200 for d, s in plan)
    assert plan == plan_excerpts([100, 5000, 3000], seg=10, n_segments=20, count=50, seed=0)
    cfg = TrainConfig(data=["x"], steps=100, warmup=10, lr=1.0)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(99, cfg) < 0.2 and lr_at(99, cfg) >= 0.1


def test_the_schedule_is_transformers_cosine_with_a_floor():
    """lr_at is the factor in closed form; make_schedule steps an optimizer through the same factors, which are
    those of transformers' get_cosine_with_min_lr_schedule_with_warmup (min_lr_rate 0.1)."""
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    from longmem_core.training.schedule import MIN_LR_RATE, make_schedule
    cfg = TrainConfig(data=["x"], steps=30, warmup=4, lr=2.0)
    ours = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    theirs = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    schedule = make_schedule(ours, cfg.warmup, cfg.steps)
    reference = get_cosine_with_min_lr_schedule_with_warmup(theirs, num_warmup_steps=cfg.warmup,
                                                             num_training_steps=cfg.steps, min_lr_rate=MIN_LR_RATE)
    reference.step()
    for step in range(cfg.steps + 3):
        assert ours.param_groups[0]["lr"] == pytest.approx(theirs.param_groups[0]["lr"], abs=1e-12)
        assert lr_at(step, cfg) == pytest.approx(ours.param_groups[0]["lr"], abs=1e-12)
        ours.step(), theirs.step(), schedule.step(), reference.step()
