import math

import pytest
import torch

from longmem_core.answer import neural_cache, settings


def test_projection_is_orthonormal_and_keys_unit_length():
    cache = neural_cache.TokenCache(width=64, dim=16, seed=3)
    p = cache.projection
    assert p.shape == (64, 16) and torch.allclose(p.T @ p, torch.eye(16), atol=1e-5)
    cache.add(torch.randn(5, 64), [1, 2, 3, 4, 5], [2, 3, 4, 5, 6])
    assert len(cache) == 5 and torch.allclose(cache.keys.float().norm(dim=-1), torch.ones(5), atol=1e-2)
    assert cache.nbytes() == 5 * (16 * 2 + 4 + 4)
    with pytest.raises(ValueError):
        cache.add(torch.randn(2, 64), [1], [2])


def test_cache_distribution_puts_the_weight_on_what_followed_the_nearest_state():
    cache = neural_cache.TokenCache(width=8, dim=8)
    states = torch.eye(8)[:3]
    cache.add(states, [10, 11, 12], [7, 8, 9])
    p, best = cache.distribution(states[1:2] + 0.01, vocab=20, theta=40)
    assert p.shape == (1, 20) and p.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert int(p.argmax()) == 8 and p[0, 8] > 0.99 and best[0] > 0.99
    empty, best = neural_cache.TokenCache(width=8, dim=8).distribution(states, vocab=20)
    assert empty.sum() == 0 and (best == -1).all()


def test_mix_interpolates_probabilities():
    logits = torch.tensor([[0.0, 0.0]])
    p_cache = torch.tensor([[1.0, 0.0]])
    mixed = neural_cache.mix(logits, p_cache, 0.5).exp()
    assert torch.allclose(mixed, torch.tensor([[0.75, 0.25]]))
    assert torch.allclose(neural_cache.mix(logits, p_cache, 0.0), torch.log_softmax(logits, -1))


def test_exact_match_finds_the_longest_repeat_and_what_followed():
    cache = neural_cache.TokenCache(width=4, dim=4)
    stream = [5, 1, 2, 3, 9, 7, 2, 3, 8, 1]
    cache.add(torch.randn(len(stream) - 1, 4), stream[:-1], stream[1:])
    p, n = cache.match([4, 1, 2, 3], vocab=12)  # "1 2 3" occurs once, followed by 9; "2 3" also before 8
    assert n == 3 and p[9] == 1.0 and p.sum() == 1.0
    p, n = cache.match([6, 2, 3], vocab=12)
    assert n == 2 and p[9] == 0.5 and p[8] == 0.5
    assert cache.match([11], vocab=12)[1] == 0


def test_copy_weight_grows_with_the_match():
    least = settings.NEURAL_CACHE.min_match
    weights = [neural_cache.copy_weight(n) for n in range(least, least + 5)]
    assert weights == sorted(weights) and 0 < weights[0] and weights[-1] < 1


def test_memorize_writes_bank_and_cache_in_one_read(tiny_model, book_text):
    text = book_text[:600]
    bank = tiny_model.new_bank(capacity=4096)
    cache = neural_cache.new_cache(tiny_model)
    stats = neural_cache.memorize(tiny_model, text, bank, cache, source="book")
    ids = tiny_model.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert stats.tokens == len(ids) == len(bank) and len(cache) == len(ids) - 1
    assert cache.ids.tolist() == ids[:-1] and cache.next_ids.tolist() == ids[1:]
    assert neural_cache.cache_for(bank) is cache
    plain = tiny_model.new_bank(capacity=4096)
    tiny_model.memorize(text, plain, source="book")
    assert torch.allclose(bank.keys.float(), plain.keys.float(), atol=1e-2)  # the same keys as model.memorize
    assert bank.sources == plain.sources and (bank.chunk_chars == plain.chunk_chars).all()


def test_cache_from_sources_rebuilds_a_missing_cache(tiny_model, book_text):
    bank = tiny_model.new_bank(capacity=4096)
    tiny_model.memorize(book_text[:300], bank, source="book")
    assert neural_cache.cache_for(bank) is None
    cache = neural_cache.cache_from_sources(tiny_model, bank)
    assert len(cache) == len(bank) - 1 and neural_cache.cache_from_sources(tiny_model, bank) is cache
    assert cache.dim == 0 and cache.distribution(torch.randn(2, tiny_model.backbone.d_model), 50)[0].sum() == 0
    full = neural_cache.cache_from_sources(tiny_model, tiny_model_bank(tiny_model, book_text), dim=8)
    assert full.dim == 8 and full.keys.shape == (len(full), 8)


def test_generation_copies_a_stored_continuation(make_model):
    model = make_model("tiny")
    ids = model.tokenizer("abcdefghijklmnopqrstuvwxyz", add_special_tokens=False)["input_ids"]  # no sentence end
    assert len(set(ids)) == len(ids) > 12
    cache = neural_cache.new_cache(model)
    x = torch.tensor([model.with_sink(ids)])
    cache.add(neural_cache.final_states(model, model.backbone(x).hidden_states[-1][0, 1:-1]), ids[:-1], ids[1:])
    gen = neural_cache.generate(model, model.with_sink(ids[:6]), cache, max_new_tokens=5, lam=0.0)
    text = "".join(gen)
    assert neural_cache.copy_weight(6) >= 0.95  # a 6-token repeat: what followed it is copied, token by token
    assert gen.token_ids == ids[6:11]
    assert text == gen.text


def test_lambda_zero_is_the_backbone(make_model):
    model = make_model("tiny")
    cache = neural_cache.new_cache(model)
    prompt = model.encode("hello there")
    cache.add(torch.randn(3, model.backbone.d_model), [90, 91, 92], [93, 94, 95])  # nothing in the prompt repeats
    ours = neural_cache.generate(model, prompt, cache, max_new_tokens=6, lam=0.0)
    plain = model.generate(prompt, None, max_new_tokens=6, backbone_only=True)
    assert "".join(ours) == "".join(plain)


def test_perplexity_with_lambda_zero_is_local_and_the_cache_helps_on_repeats(tiny_model):
    text = "the cat sat on the mat and the dog ran far away. " * 4
    r = neural_cache.perplexity(tiny_model, text, lams=(0.0, 0.5), thetas=(40.0,))
    assert r["ppl_cache"]["theta=40,lam=0"] == pytest.approx(r["ppl_local"], rel=1e-4)
    assert r["ppl_cache"]["theta=40,lam=0.5"] < r["ppl_local"]  # repeated text: the cache predicts it
    assert r["tokens"] == sum(s["tokens"] for s in r["segments"]) and math.isfinite(r["ppl_local"])


def tiny_model_bank(model, text):
    bank = model.new_bank(capacity=4096)
    model.memorize(text[:300], bank, source="book")
    return bank


def test_a_cache_follows_its_bank_new_documents_in_evicted_text_out(tiny_model, book_text):
    """A cache made for a bank goes stale when the bank gains a document or evicts chunks; the rebuilt one holds
    only the text the bank still has chunks of."""
    bank = tiny_model.new_bank(capacity=1024)
    tiny_model.memorize(book_text[:300], bank, source="first")
    first = neural_cache.cache_from_sources(tiny_model, bank)
    tiny_model.memorize(" zebra quartz " * 5, bank, source="second")
    assert neural_cache.cache_for(bank) is None  # stale after a new document
    second = neural_cache.cache_from_sources(tiny_model, bank)
    zebra = tiny_model.tokenizer(" zebra quartz", add_special_tokens=False)["input_ids"]
    assert len(second) > len(first) and second.match(zebra[:-1], 300)[1] == len(zebra) - 1
    tiny_model.memorize(book_text[300:3000], bank, source="third")  # overflows 1,024 tokens: the oldest go
    assert bank.first_id > 0
    texts = neural_cache.retained_texts(bank)
    assert book_text[:40] not in "".join(texts)  # the evicted opening is not copied from any more
    rebuilt = neural_cache.cache_from_sources(tiny_model, bank)
    assert rebuilt is not first and len(rebuilt) <= len(bank) + len(texts)


def test_the_copy_path_copies_stored_text_that_repeats_itself(make_model):
    """The repetition guard bans an answer's second saying of 4 tokens, except where the exact copy reproduces
    one stored stretch that holds both: a code of repeated digits is copied whole."""
    model = make_model("tiny")
    text = "zq the code word is 7 7 7 7 7 7 7 7 and then"
    ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
    cache = neural_cache.tokens_cache(model, [text])
    assert len(cache) == len(ids) - 1 and cache.dim == 0
    asked = model.tokenizer("the code word is", add_special_tokens=False)["input_ids"]
    start = next(i for i in range(len(ids)) if ids[i:i + len(asked)] == asked) + len(asked)
    digits = model.tokenizer(" 7 7 7 7 7 7 7 7", add_special_tokens=False)["input_ids"]
    assert ids[start:start + len(digits)] == digits and len(digits) >= 8  # repeated 4-grams in what is copied
    gen = neural_cache.generate(model, model.with_sink(asked), cache, max_new_tokens=len(digits), lam=0.0)
    "".join(gen)
    assert gen.token_ids == digits


def test_the_exact_copy_leaves_sentence_ends_to_the_backbone(make_model):
    """Where stored text goes on with a stop, the exact copy does not propose it (copying the stop after a needle's
    value cut lists of values short); other tokens keep their share, renormalized."""
    model = make_model("tiny")
    mix = neural_cache.CopyMix(model, neural_cache.tokens_cache(model, ["a b."]))
    vocab = model.backbone.lm_head.weight.shape[0]
    stop = model.tokenizer(".", add_special_tokens=False)["input_ids"][-1]
    word = model.tokenizer(" b", add_special_tokens=False)["input_ids"][-1]
    p = torch.zeros(vocab)
    p[stop], p[word] = 0.5, 0.5
    out = mix.without_stops(p)
    assert out[stop] == 0 and float(out[word]) == pytest.approx(1.0)
    only_stop = torch.zeros(vocab)
    only_stop[stop] = 1.0
    assert mix.without_stops(only_stop).sum() == 0
