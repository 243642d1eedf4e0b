"""Recall training (longmem_core.training.objectives.recall) on the tiny random backbone: the machinery, not the gain."""
import json
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from longmem_core import LongMemModel
from longmem_core.cli import main as cli_main
from longmem_core.config import RecallTrainConfig
from longmem_core.training import select_trainable
from longmem_core.training.objectives import recall as rc

BOOK = Path(__file__).resolve().parents[1] / "assets" / "the_time_machine.txt"


def _start_checkpoint(make_model, tmp_path):
    """A tiny model whose memory-query delta was 'trained' (set at random) and saved alone, like the shipped one."""
    model = make_model("tiny", memory_query_rank=4, segment_length=96)
    select_trainable(model, "search")
    torch.manual_seed(0)
    with torch.no_grad():
        model.side.q_mem_up.weight.normal_(std=0.3)
    return model, model.save_checkpoint(tmp_path / "start.safetensors")


def test_examples_put_the_fact_in_memory_and_weigh_the_answer(make_model, tmp_path):
    model, _ = _start_checkpoint(make_model, tmp_path)
    cfg = RecallTrainConfig(data=[str(BOOK)], excerpt_segments=2, local_tokens=24)
    ex = rc.read_excerpts(model, [str(BOOK)], 2, seed=0, log=lambda m: None)[0]
    assert len(ex.keys) == 2 and ex.keys[0].shape == ex.values[0].shape
    rng = random.Random(3)
    for _ in range(5):
        e = rc.make_example(model, ex, rng, cfg)
        assert 2 <= len(e.bank_parts) <= 3  # 1..2 book segments + the fact segment
        answer_text = model.tokenizer.decode([e.input_ids[p] for p in e.answer])
        assert answer_text.strip() == e.fact.value  # the answer positions hold the fact's value
        assert len(e.weights) == len(e.input_ids) - 1
        answer_weights = [e.weights[p - 1] for p in e.answer]
        assert len(set(answer_weights)) == 1 and answer_weights[0] > 0  # the answer's tokens share weight 1
        book = [w for w in e.weights if 0 < w < answer_weights[0]]  # the book text's tokens share lm_weight
        assert sum(book) == pytest.approx(cfg.lm_weight) and min(e.weights) == 0.0
        bank = rc.build_bank(model, e.bank_parts)
        assert len(bank) == sum(k.shape[0] for k, _ in e.bank_parts)
        loss, hit = rc.example_loss(model, e)
        assert torch.isfinite(loss) and isinstance(hit, bool)


def test_training_moves_only_the_memory_layer_and_keeps_the_delta(make_model, tmp_path):
    model, start = _start_checkpoint(make_model, tmp_path)
    out = tmp_path / "run"
    cli_main(["train-recall", str(BOOK), "--eval", str(BOOK), "--checkpoint", str(start), "--out", str(out), "--steps", "3",
             "--batch", "2", "--excerpt-segments", "2", "--local-tokens", "24", "--eval-examples", "3",
             "--eval-every", "3", "--lr", "1e-2"])
    report = json.loads((out / "report.json").read_text())
    assert set(report["eval_after"]) == {"recall_memory", "recall_no_memory", "loss_memory", "loss_no_memory"}
    assert len(report["log"]) == 3 and all(r["loss"] > 0 for r in report["log"])
    saved = load_file(str(out / "sidenet.safetensors"))
    before = load_file(str(start))
    assert torch.equal(saved["side.q_mem_up.weight"], before["side.q_mem_up.weight"])  # the delta stays frozen
    m = model.side.memory_index
    assert any(k.startswith(f"side.layers.{m}.") for k in saved) and "side.gate" in saved
    assert not any(k.startswith(f"side.layers.{m + 1}.") for k in saved)
    trained = LongMemModel.load(checkpoint=str(out / "sidenet.safetensors"))
    assert not torch.equal(trained.side.gate, model.side.gate)  # the gates moved
    assert torch.equal(trained.side.q_mem_up.weight, before["side.q_mem_up.weight"])


def test_shifted_values_pair_each_key_with_the_next_tokens_value(make_model):
    model = make_model("tiny")
    G, D = model.backbone.n_kv_heads, model.backbone.head_dim
    parts = [(torch.randn(6, G, D), torch.randn(6, G, D)), (torch.randn(4, G, D), torch.randn(4, G, D))]
    plain, shifted = rc.build_bank(model, parts), rc.build_bank(model, parts, shift_values=True)

    def tokens(t):  # bank storage [G, Nc, c, D] (float16) -> [n, G, D]; chunk size 2: these parts fill whole chunks
        return t.permute(1, 2, 0, 3).reshape(-1, G, D).float()
    keys = torch.cat([k for k, _ in parts])
    assert torch.allclose(tokens(plain.keys), keys, atol=1e-2) and torch.allclose(tokens(shifted.keys), keys, atol=1e-2)
    want = torch.cat([torch.cat([v[1:], v[-1:]]) for _, v in parts])  # within each segment; the last keeps its own
    assert torch.allclose(tokens(shifted.values), want, atol=1e-2)
    assert torch.allclose(tokens(plain.values), torch.cat([v for _, v in parts]), atol=1e-2)
