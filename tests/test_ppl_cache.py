"""eval-ppl --cache: LongMem and the local-only backbone mixed with a neural cache of the previous segments."""
import json
import math
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from longmem_core.evals.evaluate import eval_ppl, perplexity
from longmem_core.model.segments import segment_logits, segment_nll, segment_tokens
from longmem_core.answer.neural_cache import mix
from longmem_core.evals.ppl_cache import CacheGrid, CachePerplexity, Setting

REPEATED = "the cat sat on the mat and the dog ran far away. " * 12
OLD_KEYS = {"tokens", "ppl_local", "ppl_longmem", "ppl_untrained", "ppl_longmem_empty_memory"}


def ids_of(model, text):
    return model.tokenizer(text, add_special_tokens=False)["input_ids"]


def test_the_cache_keys_come_beside_the_old_ones_unchanged(make_model, book_text):
    model, untrained = make_model("tiny", segment_length=32), make_model("tiny", segment_length=32)
    plain = perplexity(book_text[:400], model, untrained)
    both = perplexity(book_text[:400], model, untrained, cache=CacheGrid(lams=(0.3,), thetas=(40.0,)))
    assert set(both) == OLD_KEYS | {"ppl_local_cache", "ppl_longmem_cache", "cache"}
    for key in OLD_KEYS:
        assert both[key] == pytest.approx(plain[key], rel=1e-6)
    assert both["cache"]["lam"] == 0.3 and both["cache"]["theta"] == 40.0
    assert both["cache"]["gated"] is True and both["cache"]["dim"] == 32  # the default: full states (tiny width 32), gated
    # every token but the text's last is stored once the whole text has been read
    assert both["cache"]["stored_tokens"] == len(ids_of(model, book_text[:400])) - 1
    assert all(math.isfinite(both[k]) for k in ("ppl_local_cache", "ppl_longmem_cache"))


def test_lambda_zero_is_no_cache(make_model):
    model = make_model("tiny", segment_length=32)
    r = perplexity(REPEATED, model, cache=CacheGrid(lams=(0.0, 0.5), thetas=(40.0,), gates=(False,)))
    assert r["ppl_local_cache"] == pytest.approx(r["ppl_local"], rel=1e-5)
    assert r["ppl_longmem_cache"] == pytest.approx(r["ppl_longmem"], rel=1e-5)
    grid = r["cache_grid"]["dim=32,theta=40,lam=0.5"]
    assert r["ppl_local_cache"] == pytest.approx(r["cache_grid"]["dim=32,theta=40,lam=0"]["ppl_local_cache"])
    # the text repeats across segments: what followed the same states before predicts it now
    assert grid["ppl_local_cache"] < r["ppl_local"] and grid["ppl_longmem_cache"] < r["ppl_longmem"]


def test_every_setting_of_the_grid_is_scored(make_model):
    model = make_model("tiny", segment_length=32)
    grid = CacheGrid(lams=(0.0, 0.3), thetas=(40.0,), dims=(8, 128), gates=(False, True))
    r = perplexity(REPEATED, model, cache=grid)
    assert len(r["cache_grid"]) == 8 and "dim=8,theta=40,lam=0.3,gated" in r["cache_grid"]
    assert "dim=32,theta=40,lam=0.3" in r["cache_grid"]  # 128 >= the tiny width 32: the full states
    for dim in (8, 32):
        for gate in ("", ",gated"):
            zero = r["cache_grid"][f"dim={dim},theta=40,lam=0{gate}"]
            assert zero["ppl_local_cache"] == pytest.approx(r["ppl_local"], rel=1e-5)
            assert r["cache_grid"][f"dim={dim},theta=40,lam=0.3{gate}"]["ppl_local_cache"] < r["ppl_local"]


def test_mix_takes_one_weight_per_row():
    logits, p_cache = torch.randn(3, 7), torch.softmax(torch.randn(3, 7), -1)
    lam = torch.tensor([[0.0], [0.2], [0.5]])
    rows = mix(logits, p_cache, lam)
    for i in range(3):
        assert torch.allclose(rows[i], mix(logits[i:i + 1], p_cache[i:i + 1], float(lam[i]))[0], atol=1e-5)


def test_one_segment_alone_sees_no_cache(make_model):
    """The text repeats *within* its single segment: a cache holding the current segment would lower the
    perplexity; one holding only previous segments is empty, so the mix is the model itself."""
    model = make_model("tiny", segment_length=64)
    ids = ids_of(model, REPEATED)[:segment_tokens(model)]
    text = model.tokenizer.decode(ids)
    assert len(ids_of(model, text)) <= segment_tokens(model)
    r = perplexity(text, model, cache=CacheGrid(lams=(0.5,), thetas=(40.0,), gates=(False, True)))
    assert r["cache_grid"]["dim=32,theta=40,lam=0.5,gated"]["ppl_local_cache"] == pytest.approx(r["ppl_local"], rel=1e-5)
    assert r["ppl_local_cache"] == pytest.approx(r["ppl_local"], rel=1e-5)
    assert r["ppl_longmem_cache"] == pytest.approx(r["ppl_longmem"], rel=1e-5)


def test_each_segment_is_scored_before_it_is_stored(make_model):
    model = make_model("tiny", segment_length=32)
    ids = ids_of(model, REPEATED)
    seg = segment_tokens(model)
    mixed = CachePerplexity(model, CacheGrid(lams=(0.5,), thetas=(40.0,), dims=(128,), gates=(False,)))
    bank = model.new_bank()
    local_nll = 0.0
    for s in range(0, 3 * seg, seg):
        piece = ids[s:s + seg]
        assert len(mixed.cache) == s  # only the previous segments' tokens
        local, targets, _, _ = segment_logits(model, piece, None, backbone_only=True)
        mixed.score(piece, {"local": local, "longmem": segment_logits(model, piece, bank)[0]}, targets)
        assert len(mixed.cache) == s
        if s == 0:  # the first segment: an empty cache mixes nothing in
            local_nll = segment_nll(model, piece, None, backbone_only=True)[0]
            assert mixed.nll[("local", Setting(128, 40.0, 0.5, False))] == pytest.approx(local_nll, rel=1e-5)
        model.memorize_ids(piece, bank, token_start=s)
        mixed.remember(piece, ids[s + 1:s + 1 + len(piece)])
    with pytest.raises(RuntimeError):
        mixed.remember(piece, ids[1:1 + len(piece)])  # nothing scored since
    with pytest.raises(ValueError):  # every system mixed needs its logits
        mixed.score(piece, {"local": local}, targets)


def test_eval_ppl_sums_the_cache_over_books(make_model, book_text, tmp_path):
    model = make_model("tiny", segment_length=32)
    files = []
    for i, text in enumerate((book_text[:300], REPEATED)):
        files.append(tmp_path / f"b{i}.txt")
        files[-1].write_text(text, encoding="utf-8")
    r = eval_ppl([str(f) for f in files], model, None, max_tokens=120, cache=CacheGrid(lams=(0.2, 0.0), gates=(False,)))
    assert {"ppl_local_cache", "ppl_longmem_cache"} <= set(r) and "ppl_local_cache" in r["by_split"]["<100k"]
    assert r["cache_grid"]["dim=32,theta=40,lam=0"]["ppl_local_cache"] == pytest.approx(r["ppl_local"], rel=1e-5)
    with pytest.raises(ValueError):
        CacheGrid(lams=(1.0,))


def test_eval_ppl_cache_on_the_command_line(tmp_path):
    book = tmp_path / "book.txt"
    book.write_text(REPEATED * 20, encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "longmem_core", "eval-ppl", str(book), "--max-tokens", "2500",
                           "--cache", "--cache-lam", "0.1,0", "--cache-theta", "20", "--cache-gate", "off", "--backbone", "tiny-llama",
                           "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["books"]["book.txt"]["cache"]["lam"] == 0.1 and set(out["cache_grid"]) == {
        "dim=32,theta=20,lam=0.1", "dim=32,theta=20,lam=0"}
    assert out["ppl_longmem_cache"] < out["ppl_longmem"]  # the book repeats itself: the cache predicts it
    bad = subprocess.run([sys.executable, "-m", "longmem_core", "eval-ppl", str(book), "--cache", "--cache-lam", "2",
                          "--backbone", "tiny-llama"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
