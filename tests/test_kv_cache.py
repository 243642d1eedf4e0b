"""The preallocated KV cache: what it hands back, when it allocates, and that it computes what joining would."""
import pytest
import torch

from longmem_core.model.kv_cache import KVCache, ModelCaches


def _kv(T, B=1, G=2, D=4):
    return torch.randn(B, G, T, D), torch.randn(B, G, T, D)


def test_update_hands_back_everything_held_in_order():
    cache = KVCache()
    parts = [_kv(3), _kv(1), _kv(2)]
    for k, v in parts:
        all_k, all_v = cache.update(k, v)
    assert cache.length == 6
    assert torch.equal(all_k, torch.cat([k for k, _ in parts], 2))
    assert torch.equal(all_v, torch.cat([v for _, v in parts], 2))
    assert torch.equal(cache.k, all_k) and torch.equal(cache.v, all_v)


def test_a_sized_cache_allocates_once_and_writes_in_place():
    cache = KVCache(max_length=10)
    cache.update(*_kv(4))
    buffer = cache._k.data_ptr()
    for _ in range(6):
        cache.update(*_kv(1))
    assert cache._k.data_ptr() == buffer and cache._k.shape[2] == 10 and cache.length == 10
    cache.update(*_kv(1))  # past its size it grows by what the update brings
    assert cache.length == 11 and cache._k.shape[2] == 11


def test_an_empty_cache_holds_nothing():
    cache = KVCache(max_length=8)
    assert cache.k is None and cache.v is None and cache.length == 0


def test_a_prefix_repeats_row_zero_and_leaves_the_source_untouched():
    source = KVCache()
    k, v = _kv(5)
    source.update(k, v)
    copy = source.prefix(3, batch=4)
    assert copy.length == 3 and copy.k.shape == (4, 2, 3, 4) and torch.equal(copy.k[2], k[0, :, :3])
    new_k, new_v = _kv(2, B=4)
    all_k, _ = copy.update(new_k, new_v)
    assert all_k.shape == (4, 2, 5, 4) and torch.equal(all_k[:, :, 3:], new_k)
    assert torch.equal(source.k, k) and source.length == 5


def test_under_autograd_earlier_graphs_stay_valid():
    cache = KVCache(max_length=8)
    k1 = torch.randn(1, 2, 3, 4, requires_grad=True)
    first, _ = cache.update(k1, torch.randn(1, 2, 3, 4))
    second, _ = cache.update(torch.randn(1, 2, 1, 4, requires_grad=True), torch.randn(1, 2, 1, 4))
    (first.sum() + second.sum()).backward()
    assert torch.equal(k1.grad, torch.full_like(k1, 2.0))  # k1 reaches both sums


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_sized_and_unsized_caches_give_the_same_decoding(tiny_backbones, name):
    bb = tiny_backbones[name]
    ids = torch.randint(0, 200, (1, 10))

    class Model:  # what ModelCaches.empty reads of a model
        backbone = bb
        side = type("Side", (), {"layers": []})()

    outs = []
    for max_length in (0, 10):
        caches = ModelCaches.empty(Model, max_length)
        steps = [bb(ids[:, :6], caches=caches.backbone).hidden_states[-1]]
        steps += [bb(ids[:, t:t + 1], caches=caches.backbone).hidden_states[-1] for t in range(6, 10)]
        outs.append(torch.cat(steps, 1))
    assert torch.equal(outs[0], outs[1])
    assert torch.allclose(outs[1], bb(ids).hidden_states[-1], atol=1e-5)
