"""eval-ppl --adapt: LongMem's memory branch trained at test time on segments already scored (ppl_adapt)."""
import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from longmem_core.evals import settings
from longmem_core.evals.evaluate import perplexity
from longmem_core.model.segments import segment_nll, segment_tokens
from longmem_core.evals.ppl_adapt import Adaptation, OnlineAdapter, adapted_copy
from longmem_core.evals.ppl_cache import CacheGrid

REPEATED = "the cat sat on the mat and the dog ran far away. " * 12


def ids_of(model, text):
    return model.tokenizer(text, add_special_tokens=False)["input_ids"]


def test_memory_share_scaling_rewrites_the_gates(make_model):
    model = make_model("tiny", segment_length=32)
    with torch.no_grad():
        model.side.gate.copy_(torch.linspace(-2, 3, model.side.gate.shape[0]))
    before = torch.sigmoid(model.side.gate.detach().clone())
    model.side.scale_memory_share(0.75)
    assert torch.allclose(torch.sigmoid(model.side.gate.detach()), 0.75 * before, atol=1e-6)
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError):
            model.side.scale_memory_share(bad)


def test_adaptation_changes_only_the_copy_and_only_the_memory_branch(make_model):
    """After test-time steps the copy's memory layer differs, yet reading an empty bank it is still the backbone
    (the memory branch is the only path it changes); the model it was copied from is untouched."""
    model = make_model("tiny", segment_length=32)
    ids = ids_of(model, REPEATED)
    seg = segment_tokens(model)
    original = {k: v.clone() for k, v in model.side.state_dict().items()}
    adapted = adapted_copy(model, Adaptation(lr=1e-2, memory_share=1.0))
    trainer = OnlineAdapter(adapted, Adaptation(lr=1e-2, memory_share=1.0))
    bank = adapted.new_bank()
    trainer.learn(ids[:seg], bank)  # empty bank: nothing to learn from
    assert trainer.steps_taken == 0
    adapted.memorize_ids(ids[:seg], bank)
    for s in range(seg, 4 * seg, seg):
        trainer.learn(ids[s:s + seg], bank)
        adapted.memorize_ids(ids[s:s + seg], bank, token_start=s)
    assert trainer.steps_taken == 3
    layer = f"layers.{adapted.side.memory_index}."
    changed = {k for k, v in adapted.side.state_dict().items() if not torch.equal(v, original[k])}
    assert changed and all(k.startswith(layer) or k in ("gate", "memory_scale") for k in changed)
    assert all(torch.equal(v, original[k]) for k, v in model.side.state_dict().items())
    piece = ids[:seg]
    backbone = segment_nll(model, piece, None, backbone_only=True)[0]
    assert segment_nll(adapted, piece, adapted.new_bank())[0] == pytest.approx(backbone, rel=1e-5)


def test_perplexity_reports_the_adapted_model_beside_the_others(make_model):
    model, untrained = make_model("tiny", segment_length=32), make_model("tiny", segment_length=32)
    plain = perplexity(REPEATED, model, untrained)
    # share 1 and a large step: the adapted copy must differ from the model it started as; the others must not
    r = perplexity(REPEATED, model, untrained, cache=CacheGrid(lams=(0.2,)), adapt=Adaptation(lr=5e-2, memory_share=1.0))
    for key in plain:
        assert r[key] == pytest.approx(plain[key], rel=1e-6)
    assert {"ppl_longmem_adapted", "ppl_longmem_adapted_cache", "adapt"} <= set(r)
    n_seg = -(-len(ids_of(model, REPEATED)) // segment_tokens(model))
    # it learns from every segment but the first (empty memory) and the last (nothing follows it)
    assert r["adapt"]["steps_taken"] == n_seg - 2 and r["adapt"]["trainable"] == "memory"
    assert r["ppl_longmem_adapted"] != pytest.approx(r["ppl_longmem"], rel=1e-6)
    # the text repeats: learning to use memory on the repeats already read lowers the perplexity of the rest
    assert r["ppl_longmem_adapted"] < r["ppl_longmem"]


def test_adaptation_settings_are_checked():
    for bad in ({"lr": 0.0}, {"steps": 0}, {"memory_share": 0.0}, {"memory_share": 1.2}):
        with pytest.raises(ValueError):
            Adaptation(**bad)


def test_the_defaults_are_the_settings_read_when_made(monkeypatch):
    assert (Adaptation().lr, Adaptation().memory_share) == (settings.ADAPT.lr, settings.ADAPT.memory_share)
    monkeypatch.setattr(settings, "ADAPT", dataclasses.replace(settings.ADAPT, lr=3e-4))
    monkeypatch.setattr(settings, "PERPLEXITY_CACHE", dataclasses.replace(settings.PERPLEXITY_CACHE, layer=None))
    assert Adaptation().lr == 3e-4 and CacheGrid().layer is None and CacheGrid(layer=-2).layer == -2


def test_eval_ppl_adapt_on_the_command_line(tmp_path):
    book = tmp_path / "book.txt"
    book.write_text(REPEATED * 20, encoding="utf-8")
    base = [sys.executable, "-m", "longmem_core", "eval-ppl", str(book), "--max-tokens", "600", "--backbone",
            "tiny-llama", "--json"]
    proc = subprocess.run(base + ["--adapt", "--adapt-lr", "0.01", "--cache", "--cache-layer", "final"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    book_result = out["books"]["book.txt"]
    assert book_result["adapt"]["lr"] == 0.01 and book_result["adapt"]["memory_share"] == 0.75
    assert book_result["cache"]["layer"] is None
    assert {"ppl_longmem_adapted", "ppl_longmem_adapted_cache"} <= set(out)
    proc = subprocess.run(base + ["--adapt-lr", "0.01"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "--adapt" in proc.stderr
    proc = subprocess.run(base + ["--cache", "--cache-layer", "99"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0 and "--cache-layer" in proc.stderr and "Traceback" not in proc.stderr
