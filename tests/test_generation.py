"""Generation's small functions: prefill, decode_one_token, sample_token, and the repetition guard of the one loop."""
import pytest
import torch

from longmem_core.model.generation import (Proposal, decode_one_token, find_loop, generate, guard_scores, prefill,
                                           repeat_starts, sample_token)
from longmem_core.model.kv_cache import ModelCaches


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


def test_the_guard_bans_what_would_repeat_an_ngram_of_the_answer():
    answer = [5, 1, 2, 3, 4, 9, 1, 2, 3]  # "1 2 3" again: a 4 next would say "1 2 3 4" twice
    assert repeat_starts(answer, 4) == {4: 1} and repeat_starts(answer, 0) == {} and repeat_starts([1], 4) == {}
    scores = torch.zeros(12)
    guarded = guard_scores(Proposal(scores), answer, 4)
    assert guarded[4] == float("-inf") and torch.isfinite(guarded[torch.arange(12) != 4]).all()
    assert torch.equal(guard_scores(Proposal(scores), answer, 0), scores)  # n 0: no guard
    # an exact copy may repeat it when the copied stretch reaches back over the earlier "1 2 3 4" (the stored
    # text repeats it there); a copy that began after it (a new sentence) may not, nor may any other token
    reach = len(answer) - 1
    assert guard_scores(Proposal(scores, frozenset({4}), reach), answer, 4)[4] == 0
    assert guard_scores(Proposal(scores, frozenset({4}), reach - 1), answer, 4)[4] == float("-inf")
    assert guard_scores(Proposal(scores, frozenset({7}), 99), answer, 4)[4] == float("-inf")


def test_find_loop_sees_repeats_in_words_whatever_the_tokens():
    assert find_loop("It's a 6. It's a 6.") == "it's a 6"  # the same sentence twice
    assert find_loop("the cat and the dog and the cat and the dog and the cat and the dog") == "the cat and the"
    assert find_loop("The key is 7. I think the key is 7 or so, and the key is 7 indeed") == "the key is 7"
    assert find_loop("He built a machine. It travels in time. The machine is his.") is None
    assert find_loop("Yes. Yes.") is None  # a sentence of fewer than 3 words may come back


def test_the_guard_keeps_a_looping_model_from_repeating_itself(make_model):
    """The tiny random model loops when greedy; guarded, no 4 tokens of its answer come twice, in every mode
    of the one loop (backbone alone, the SideNet reading memory, a logits hook)."""
    model = make_model("tiny")
    bank = model.new_bank()
    model.memorize("The Time Traveller smiled at us. " * 4, bank)
    prompt = model.encode("the the the the")

    def grams(ids):
        return [tuple(ids[i:i + 4]) for i in range(len(ids) - 3)]

    free = generate(model, prompt, None, max_new_tokens=40, backbone_only=True, guard_ngram=0)
    assert "".join(free) == free.text and len(set(grams(free.token_ids))) < len(grams(free.token_ids))  # it loops
    seen_steps = []

    def hook(step, context):
        seen_steps.append((step.hidden_states is not None, len(context)))
        return Proposal(step.logits)
    for kwargs in ({"bank": None, "backbone_only": True}, {"bank": bank}, {"bank": None, "backbone_only": True,
                                                                          "logits_hook": hook}):
        gen = generate(model, prompt, max_new_tokens=40, **kwargs)
        assert "".join(gen) == gen.text and len(gen.token_ids) > 8
        assert len(set(grams(gen.token_ids))) == len(grams(gen.token_ids)), kwargs
        assert gen.blocked, kwargs  # where the unguarded loop repeated itself, the guard blocked its first choice
    assert seen_steps[0] == (True, len(prompt)) and seen_steps[-1][1] == len(prompt) + len(gen.token_ids) - 1
