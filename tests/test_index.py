"""The search structures over chunk means and the rules that size them (longmem_core/memory/index.py)."""
import math

import numpy as np
import pytest
import torch

from longmem_core.memory.index import (FlatIndex, IVFIndex, approximate_from, default_nprobe,
                                       ivf_lists)
from longmem_core.config import INDEX_KINDS, MAX_CAPACITY, check_capacity, check_index_kind
from longmem_core.memory.settings import INDEX


def test_sizing_rules():
    assert [ivf_lists(n) for n in (64, 4096, 16_384, 262_144, 1 << 24)] == [64, 64, 256, 4096, 4096]
    assert [default_nprobe(n) for n in (64, 128, 512, 2048, 4096)] == [16, 32, 64, 128, 128]
    assert all(1 <= default_nprobe(n) <= n for n in (1, 2, 3, 64))


def test_when_a_bank_wants_an_approximate_index():
    cpu, gpu = torch.device("cpu"), torch.device("meta")
    assert approximate_from("flat", 1 << 20, cpu) == math.inf
    assert approximate_from("ivf", 1 << 20, gpu) == math.inf  # no approximate index off the CPU
    assert approximate_from("ivf", 4096, cpu) == 64 * 32  # enough chunks to train its lists
    assert approximate_from("ivf", 16, cpu) == 8 and approximate_from("ivf", 1, cpu) == 1  # a tiny bank: half of it
    assert approximate_from("auto", 4096, cpu) == INDEX.auto_approx_chunks  # auto: exact below the measured size
    # a bank growing towards 1M tokens switches at the measured size too, not once it could fill 4,096 lists
    assert approximate_from("auto", (1 << 20) // 4, cpu) == INDEX.auto_approx_chunks


def test_one_capacity_rule_and_one_tuple_of_kinds():
    check_capacity(4, 4)
    check_capacity(MAX_CAPACITY, 4)
    for capacity, chunk, message in [(3, 4, "at least one chunk"), (MAX_CAPACITY + 1, 4, "over the limit"),
                                     (8, 0, "chunk_size must be"), ("8", 4, "capacity must be an integer"),
                                     (8.0, 4, "capacity must be an integer"), (True, 1, "capacity must be")]:
        with pytest.raises(ValueError, match=message):
            check_capacity(capacity, chunk)
    assert [check_index_kind(k) for k in INDEX_KINDS] == list(INDEX_KINDS)
    with pytest.raises(ValueError, match="index must be one of"):
        check_index_kind("hnsw")


def test_the_config_and_the_bank_share_the_rules():
    from longmem_core import LongMemConfig, MemoryBank
    for make in (lambda **kw: LongMemConfig(**kw), lambda **kw: MemoryBank(n_kv_heads=1, head_dim=2, **kw)):
        with pytest.raises(ValueError, match="over the limit"):
            make(capacity=MAX_CAPACITY + 4, chunk_size=4)
        with pytest.raises(ValueError, match="index must be one of"):
            make(index="hnsw")


def _means(n: int, seed: int = 0) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(2, n, 8, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_flat_index_head_by_head_equals_all_heads_at_once():
    means = _means(50)
    a, b = FlatIndex(2, 8), FlatIndex(2, 8)
    a.add(means, 7)
    for g in range(2):
        b.add_head(g, means[g], 7)
    q = torch.randn(5, 8)
    for g in range(2):
        sa, ia = a.search(g, q, 4, 7)
        sb, ib = b.search(g, q, 4, 7)
        assert torch.equal(sa, sb) and torch.equal(ia, ib) and ia.min() >= 7


def test_ivf_index_rebuilt_from_its_centroids_searches_the_same():
    means = _means(2000)
    trained = IVFIndex(means, nlist=16, nprobe=4)
    trained.add(means, 100)
    rebuilt = IVFIndex.from_centroids(trained.centroids(), trained_on=2000, nprobe=4)
    for g in range(2):
        rebuilt.add_head(g, means[g], 100)
    assert rebuilt.ntotal == trained.ntotal == 2000 and rebuilt.nlist == 16 and rebuilt.nprobe == 4
    q = torch.randn(20, 8)
    for g in range(2):
        s1, i1 = trained.search(g, q, 8, 100)
        s2, i2 = rebuilt.search(g, q, 8, 100)
        assert torch.equal(i1, i2) and torch.equal(s1, s2)
    trained.remove_oldest(500, 100)
    assert trained.ntotal == 1500 and np.all(trained.search(0, q, 8, 600)[1].numpy() >= 600)


def test_a_float16_ring_searches_like_faiss_and_never_outgrows_its_limit():
    """The torch ring (a CPU bank of 1-token chunks: its chunk means are float16 keys) keeps float16 vectors,
    wraps around within ``limit`` vectors, and finds what faiss finds over the same (float16-exact) vectors, with
    the same scores whichever slot the ring starts at."""
    g = torch.Generator().manual_seed(3)
    ring = FlatIndex(2, 8, use_faiss=False, dtype=torch.float16, limit=100)
    ring.block = 16  # several blocks per search
    exact = FlatIndex(2, 8, use_faiss=True)
    first = 0
    for _ in range(30):  # a bank of at most 100 chunks reading on past its capacity
        means = torch.randn(2, 9, 8, generator=g).half().float()
        if ring.ntotal + 9 > 100:
            for index in (ring, exact):
                index.remove_oldest(9, first)
            first += 9
        for index in (ring, exact):
            index.add(means, first + index.ntotal)
    assert ring._buf.shape[1] == 100 and ring._buf.dtype == torch.float16 and ring._head > 0  # it wrapped
    assert ring.nbytes() == 2 * 100 * 8 * 2
    q = torch.randn(6, 8, generator=g)
    for h in range(2):
        (s1, i1), (s2, i2) = ring.search(h, q, 5, first), exact.search(h, q, 5, first)
        assert torch.equal(i1, i2) and torch.allclose(s1, s2, atol=1e-5) and i1.min() >= first
    unwrapped = FlatIndex(2, 8, use_faiss=False, dtype=torch.float16)
    unwrapped.block = 16
    unwrapped.add(ring.means, first)
    assert torch.equal(unwrapped.search(0, q, 5, first)[0], ring.search(0, q, 5, first)[0])  # bit for bit
    assert ring.search(0, q, 200, first)[1][:, ring.ntotal:].eq(-1).all()  # more asked than held: -1
