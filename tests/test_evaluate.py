import json
import math
import random

import pytest
import torch

from longmem_core.evals.evaluate import (chapterbreak_examples, eval_chapterbreak, eval_passkey, eval_ppl, length_split,
                                         passkey_trial, perplexity)
from longmem_core.model.segments import segment_nll


def test_perplexity_systems_score_the_same_tokens(make_model, book_text):
    model = make_model("tiny", segment_length=32, memory_branch="open")  # the paper's init: memory used at once
    untrained = make_model("tiny", segment_length=32, memory_branch="open")
    r = perplexity(book_text[:400], model, untrained)
    assert set(r) == {"tokens", "ppl_local", "ppl_longmem", "ppl_untrained", "ppl_longmem_empty_memory"}
    ids = model.tokenizer(book_text[:400], add_special_tokens=False)["input_ids"]
    assert r["tokens"] == len(ids) - math.ceil(len(ids) / 31)  # every token but each segment's first
    # local-only: the backbone alone on each segment
    nll = sum(segment_nll(model, ids[s:s + 31], None, backbone_only=True)[0] for s in range(0, len(ids), 31))
    assert r["ppl_local"] == pytest.approx(math.exp(nll / r["tokens"]), rel=1e-5)
    # an identical fresh SideNet gives identical numbers
    assert r["ppl_untrained"] == pytest.approx(r["ppl_longmem"], rel=1e-6)
    # the identity-initialised SideNet with its memory kept empty is the backbone: the control equals local-only
    assert r["ppl_longmem_empty_memory"] == pytest.approx(r["ppl_local"], rel=1e-5)
    assert r["ppl_longmem"] != pytest.approx(r["ppl_local"], rel=1e-6)  # memory itself changes the numbers


def test_perplexity_with_memory_differs_from_local_only(make_model, book_text):
    model = make_model("tiny", segment_length=32, memory_branch="open")
    r = perplexity(book_text[:300], model)
    assert r["ppl_longmem"] != pytest.approx(r["ppl_local"], rel=1e-6)


def test_an_untrained_sidenet_with_its_memory_branch_closed_scores_as_local_only(make_model, book_text):
    """Issue 30's control: the default closed branch makes the untrained model the backbone, memory or not."""
    model = make_model("tiny", segment_length=32)
    r = perplexity(book_text[:400], model, make_model("tiny", segment_length=32))
    assert r["ppl_longmem"] == pytest.approx(r["ppl_local"], rel=1e-6)
    assert r["ppl_untrained"] == pytest.approx(r["ppl_local"], rel=1e-6)


def test_eval_ppl_reports_by_split(make_model, book_text, tmp_path):
    f = tmp_path / "b.txt"
    f.write_text(book_text[:300], encoding="utf-8")
    model = make_model("tiny", segment_length=32)
    r = eval_ppl([str(f)], model, make_model("tiny", segment_length=32), max_tokens=100)
    assert r["books"]["b.txt"]["split"] == "<100k" and "<100k" in r["by_split"]
    assert r["tokens"] == r["books"]["b.txt"]["tokens"]
    assert length_split(150_000) == "100k-200k" and length_split(10 ** 6) == ">=400k"


def test_passkey_trial_hides_the_key_outside_the_window(make_model, book_text):
    model = make_model("tiny", segment_length=64)
    ids = model.tokenizer(book_text[:5000], add_special_tokens=False)["input_ids"]
    r = passkey_trial(model, ids, 400, random.Random(0), max_new_tokens=4)
    assert set(r) >= {"longmem", "local", "key", "depth"} and 10_000 <= r["key"] < 100_000
    assert r["depth"] < 1 - 40 / 400  # the key is never in the last (local) window
    with pytest.raises(ValueError):
        passkey_trial(model, ids, 60, random.Random(0))
    result = eval_passkey(model, book_text[:5000], [300, 400], trials=2, seed=3)
    assert set(result["lengths"]) == {"300", "400"}
    assert result == eval_passkey(model, book_text[:5000], [300, 400], trials=2, seed=3)  # reproducible
    assert result["mode"] == "paper"


@pytest.mark.parametrize("mode", ["read_back", "cache"])
def test_passkey_in_an_answer_mode_reads_the_memory_part_as_a_document(make_model, book_text, mode):
    model = make_model("tiny", segment_length=64)
    ids = model.tokenizer(book_text[:5000], add_special_tokens=False)["input_ids"]
    r = passkey_trial(model, ids, 400, random.Random(0), max_new_tokens=4, mode=mode)
    assert set(r) >= {"longmem", "longmem_answer", "local", "key", "depth"}
    plain = passkey_trial(model, ids, 400, random.Random(0), max_new_tokens=4)
    assert (r["key"], r["depth"], r["local_answer"]) == (plain["key"], plain["depth"], plain["local_answer"])
    assert eval_passkey(model, book_text[:5000], [400], trials=1, seed=3, mode=mode)["mode"] == mode


def test_chapterbreak(make_model, tmp_path, book_text):
    ex = {"ctx": book_text[:1500], "pos": book_text[1500:1600], "negs": [book_text[i:i + 100] for i in range(2000, 2500, 100)]}
    f = tmp_path / "cb.json"
    f.write_text(json.dumps({"pg19": {"tm": [ex, ex]}}))
    examples = chapterbreak_examples(str(f))
    assert len(examples) == 2 and examples[0]["book"] == "tm"
    r = eval_chapterbreak(make_model("tiny", segment_length=128), examples, limit=1, max_suffix_tokens=40)
    assert r["n"] == 1 and r["chance"] == pytest.approx(1 / 6) and r["examples"][0]["memory_tokens"] > 0


@pytest.mark.parametrize("with_memory", [False, True])
def test_suffix_scores_read_the_context_once_and_equal_one_by_one_scoring(make_model, book_text, with_memory):
    from longmem_core.evals.evaluate import suffix_logprobs
    model = make_model("tiny", segment_length=128)
    with torch.no_grad():
        model.side.scale.fill_(0.5)  # every side layer active: their caches are used too
    bank = None
    if with_memory:
        bank = model.new_bank(capacity=4096)
        model.memorize(book_text[:3000], bank)
    ids = model.tokenizer(book_text[3000:4000], add_special_tokens=False)["input_ids"]
    context, suffixes = ids[:60], [ids[60:70], ids[80:83], ids[100:121]]
    got = suffix_logprobs(model, context, suffixes, bank)
    for s, value in zip(suffixes, got):
        x = torch.tensor([model.with_sink(context + s)])
        with torch.no_grad():
            logp = torch.log_softmax(model(x, bank).logits[0].float(), dim=-1)
        start = x.shape[1] - len(s)
        want = logp[torch.arange(start - 1, x.shape[1] - 1), torch.tensor(s)].mean()
        assert value == pytest.approx(float(want), abs=1e-4)
