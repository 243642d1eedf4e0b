import numpy as np
import pytest
import torch

from longmem_core import MemoryBank


def _bank(**kw):
    args = dict(n_kv_heads=2, head_dim=8, chunk_size=4, capacity=64)
    args.update(kw)
    return MemoryBank(**args)


def test_search_returns_an_added_chunk_as_its_own_top1():
    bank = _bank(capacity=4096)
    # every chunk's mean key is a distinct unit vector, so by inner product it is its own best match
    unit = torch.nn.functional.normalize(torch.randn(100, 1, 2, 8), dim=-1)
    jitter = torch.randn(100, 4, 2, 8) * 0.1
    keys = (unit + jitter - jitter.mean(1, keepdim=True)).reshape(400, 2, 8)
    bank.add(keys, torch.randn(400, 2, 8))
    chunk_means = keys.view(100, 4, 2, 8).mean(1)  # [100, G, D]
    # query head h uses kv head h // 2 (4 query heads over 2 kv heads)
    queries = chunk_means.repeat_interleave(2, dim=1)  # [100, 4, D]
    hits = bank.search(queries, n_chunks=3)
    own = torch.arange(100).view(100, 1)
    assert torch.equal(hits.chunk_ids[:, :, 0], own.expand(100, 4))
    assert hits.keys.shape == (100, 4, 12, 8) and hits.mask.all()
    # the retrieved tokens are the chunk's own keys, in order (16-bit storage)
    assert torch.allclose(hits.keys[5, 2, :4].float(), keys[20:24, 1], atol=1e-2)


def test_empty_bank_search_is_all_masked():
    hits = _bank().search(torch.randn(3, 4, 8), n_chunks=2)
    assert not hits.mask.any() and (hits.chunk_ids == -1).all()
    assert hits.keys.shape == (3, 4, 8, 8)


def test_fewer_chunks_than_requested_are_masked():
    bank = _bank()
    bank.add(torch.randn(8, 2, 8), torch.randn(8, 2, 8))  # 2 chunks
    hits = bank.search(torch.randn(1, 2, 8), n_chunks=4)
    assert (hits.chunk_ids[0, :, 2:] == -1).all()
    assert hits.mask[0, :, :8].all() and not hits.mask[0, :, 8:].any()


def test_partial_last_chunk_is_padded_and_masked():
    bank = _bank()
    bank.add(torch.randn(6, 2, 8), torch.randn(6, 2, 8))
    assert bank.n_chunks == 2 and len(bank) == 6
    assert bank.token_mask.tolist() == [[True] * 4, [True, True, False, False]]


def test_fifo_eviction_keeps_size_within_capacity_and_drops_the_oldest():
    bank = _bank(capacity=16)
    for step in range(5):
        keys = torch.full((8, 2, 8), float(step))
        bank.add(keys, keys, token_start=8 * step)
        assert len(bank) <= 16
    assert bank.n_chunks == 4 and bank.first_id == 6
    assert bank.chunk_tokens[:, 0].tolist() == [24, 28, 32, 36]  # the newest 16 tokens survive
    assert set(bank.keys[:, :2].float().unique().tolist()) == {3.0} and set(bank.keys[:, 2:].float().unique().tolist()) == {4.0}
    assert all(index.ntotal == 4 for index in bank.indexes)
    hits = bank.search(torch.ones(1, 2, 8), n_chunks=4)
    assert sorted(hits.chunk_ids[0, 0].tolist()) == [6, 7, 8, 9]  # global ids, still valid after eviction
    with pytest.raises(KeyError):
        bank.chunk_info(0)


def test_one_add_larger_than_capacity_keeps_its_newest_chunks():
    bank = _bank(capacity=8)
    keys = torch.arange(20, dtype=torch.float32).view(20, 1, 1).expand(20, 2, 8)
    bank.add(keys, keys)
    assert len(bank) == 8 and bank.chunk_tokens[:, 0].tolist() == [12, 16]
    assert bank.first_id == 3


def test_save_load_round_trips_bit_exactly(tmp_path):
    bank = _bank(capacity=32, backbone="fp", memory_layer=3)
    src = bank.add_source("a.txt", "abcdefghijklmnopqrstuvwxyz" * 3)
    for i in range(4):
        bank.add(torch.randn(10, 2, 8), torch.randn(10, 2, 8), source=src, token_start=10 * i,
                 char_spans=np.stack([np.arange(10) + 10 * i, np.arange(10) + 10 * i + 1], axis=1))
    bank.save(tmp_path / "bank")
    bank.save(tmp_path / "bank")  # overwriting an existing bank works and leaves no temp dirs behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bank"]
    loaded = MemoryBank.load(tmp_path / "bank")
    for name in ("keys", "values", "token_mask"):
        assert torch.equal(getattr(bank, name), getattr(loaded, name))
    for name in ("chunk_source", "chunk_tokens", "chunk_chars"):
        assert np.array_equal(getattr(bank, name), getattr(loaded, name))
    assert (loaded.first_id, loaded.sources, loaded.backbone, loaded.memory_layer) == (bank.first_id, bank.sources, "fp", 3)
    q = torch.randn(5, 4, 8)
    a, b = bank.search(q, 3), loaded.search(q, 3)
    assert torch.equal(a.chunk_ids, b.chunk_ids) and torch.equal(a.scores, b.scores) and torch.equal(a.keys, b.keys)
    assert loaded.chunk_info(int(a.chunk_ids[0, 0, 0])) == bank.chunk_info(int(a.chunk_ids[0, 0, 0]))


def test_load_refuses_what_is_not_a_bank(tmp_path):
    with pytest.raises(FileNotFoundError):
        MemoryBank.load(tmp_path)


def test_spans_a_saved_bank_could_not_load_are_refused_when_added():
    bank = _bank()
    src = bank.add_source("a.txt", "abcdef")
    with pytest.raises(ValueError, match="char_spans"):
        bank.add(torch.randn(4, 2, 8), torch.randn(4, 2, 8), source=src, char_spans=[[0, 1], [1, 2], [2, 3], [3, 99]])
    with pytest.raises(ValueError, match="char_spans"):
        bank.add(torch.randn(4, 2, 8), torch.randn(4, 2, 8), source=src, char_spans=[[5, 6], [1, 2], [2, 3], [3, 4]])
    with pytest.raises(ValueError, match="source must be"):
        bank.add(torch.randn(4, 2, 8), torch.randn(4, 2, 8), source=1)
    with pytest.raises(ValueError, match="token_start"):
        bank.add(torch.randn(4, 2, 8), torch.randn(4, 2, 8), token_start=-4)
    assert bank.n_chunks == 0


def test_wrong_shapes_are_refused():
    bank = _bank()
    with pytest.raises(ValueError):
        bank.add(torch.randn(4, 3, 8), torch.randn(4, 3, 8))
    with pytest.raises(ValueError):
        bank.search(torch.randn(2, 3, 8), 2)  # 3 query heads over 2 kv heads


def test_banks_are_independent():
    a, b = _bank(), _bank()
    a.add(torch.randn(8, 2, 8), torch.randn(8, 2, 8))
    assert len(a) == 8 and len(b) == 0


def _reference_top(keys_by_id: dict, q: torch.Tensor, g: int, k: int) -> list[int]:
    """Brute-force exact top-k chunk ids for one query of kv head g."""
    ids = sorted(keys_by_id)
    means = torch.stack([keys_by_id[i][:, g].float().mean(0) for i in ids])  # [n, D]
    order = torch.argsort(means @ q, descending=True)[:k]
    return [ids[i] for i in order.tolist()]


def test_ring_buffer_wraps_around_and_stays_exact():
    """Many adds of odd sizes through a small bank: storage wraps, search equals brute force on what is left."""
    torch.manual_seed(0)
    bank = _bank(capacity=40, index="flat")  # 10 chunks
    kept: dict[int, torch.Tensor] = {}
    next_id, pos = 0, 0
    for size in [8, 12, 4, 16, 8, 20, 4, 8, 12]:  # multiples of the chunk size: every chunk is full
        keys = torch.randn(size, 2, 8).half().float()
        bank.add(keys, keys * 2, token_start=pos)
        for j in range(size // 4):
            kept[next_id + j] = keys[4 * j:4 * j + 4]
        next_id, pos = next_id + size // 4, pos + size
        while len(kept) > 10:
            kept.pop(min(kept))
        assert bank.n_chunks == len(kept) and len(bank) == 4 * len(kept)
        assert bank.chunk_ids.tolist() == sorted(kept)
        assert bank.chunk_tokens[:, 0].tolist() == [4 * i for i in sorted(kept)]
    q = torch.randn(3, 4, 8)
    hits = bank.search(q, n_chunks=3)
    for n in range(3):
        for h in range(4):
            assert hits.chunk_ids[n, h].tolist() == _reference_top(kept, q[n, h], h // 2, 3)
            cid = int(hits.chunk_ids[n, h, 0])
            assert torch.allclose(hits.keys[n, h, :4].float(), kept[cid][:, h // 2]) and torch.allclose(
                hits.values[n, h, :4].float(), 2 * kept[cid][:, h // 2])
    assert torch.allclose(bank.keys.float(), torch.stack([kept[i] for i in sorted(kept)]).permute(2, 0, 1, 3))


def test_torch_exact_search_equals_faiss():
    """The device (GPU) path's exact search, run on the CPU, gives faiss's ids and scores."""
    from longmem_core.memory.memory_bank import FlatIndex
    means = torch.randn(2, 50, 8)
    a, b = FlatIndex(2, 8, use_faiss=True), FlatIndex(2, 8, use_faiss=False)
    for index in (a, b):
        index.add(means[:, :30], 0)
        index.add(means[:, 30:], 30)
        index.remove_oldest(5, 0)
    q = torch.randn(7, 8)
    for g in range(2):
        (sa, ia), (sb, ib) = a.search(g, q, 4, 5), b.search(g, q, 4, 5)
        assert torch.equal(ia, ib) and torch.allclose(sa, sb, atol=1e-5)
    assert b.search(0, q, 60, 5)[1][:, 45:].eq(-1).all()  # fewer chunks than asked: -1


def test_torch_exact_index_over_a_long_ring_stays_exact_and_bounded():
    """Many small adds with evictions (a long read into a full bank): the device index keeps answering like
    faiss, and its buffer stays within a constant factor of what it holds (no copy of everything per add)."""
    from longmem_core.memory.memory_bank import FlatIndex
    g = torch.Generator().manual_seed(0)
    a, b = FlatIndex(2, 8, use_faiss=True), FlatIndex(2, 8, use_faiss=False)
    first, q = 0, torch.randn(5, 8, generator=g)
    for _ in range(300):
        means = torch.randn(2, 7, 8, generator=g)
        for index in (a, b):
            index.add(means, first + index.ntotal)
        if b.ntotal > 500:  # a ring of ~500 chunks
            for index in (a, b):
                index.remove_oldest(7, first)
            first += 7
    assert a.ntotal == b.ntotal and 490 <= b.ntotal <= 507
    assert b._buf.shape[1] <= 4 * (b.ntotal + 7)
    for h in range(2):
        (sa, ia), (sb, ib) = a.search(h, q, 6, first), b.search(h, q, 6, first)
        assert torch.equal(ia, ib) and torch.allclose(sa, sb, atol=1e-5)


def _clustered_keys(n_tokens: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(32, 2, 8, generator=g) * 3
    which = torch.randint(0, 32, (n_tokens // 4,), generator=g).repeat_interleave(4)
    return centres[which] + torch.randn(n_tokens, 2, 8, generator=g)


def test_ivf_policy_switches_to_an_approximate_index_with_high_recall():
    from longmem_core.memory.memory_bank import IVFIndex, ivf_lists
    keys = _clustered_keys(16_384)
    exact = _bank(capacity=16_384, index="flat")
    approx = _bank(capacity=16_384, index="ivf")
    for b in range(0, 16_384, 1024):
        exact.add(keys[b:b + 1024], keys[b:b + 1024])
        approx.add(keys[b:b + 1024], keys[b:b + 1024])
    assert isinstance(approx.index, IVFIndex) and exact.index.kind == "flat"
    assert approx.index.ntotal == exact.index.ntotal == 4096 and ivf_lists(4096) == 64 and ivf_lists(262_144) == 4096
    q = _clustered_keys(400, seed=1)[:100].repeat_interleave(2, dim=1)  # [100, 4, 8]
    a, e = approx.search(q, 16), exact.search(q, 16)
    recall = sum(len(set(x) & set(y)) for x, y in zip(a.chunk_ids.view(-1, 16).tolist(), e.chunk_ids.view(-1, 16).tolist()))
    assert recall / (400 * 16) >= 0.9
    approx.set_nprobe(approx.index.nlist)  # every list searched: exact again
    assert torch.equal(approx.search(q, 16).chunk_ids.sort(-1).values, e.chunk_ids.sort(-1).values)


def test_ivf_bank_evicts_and_round_trips(tmp_path):
    keys = _clustered_keys(8192)
    bank = _bank(capacity=4096, index="ivf")
    for b in range(0, 8192, 512):
        bank.add(keys[b:b + 512], keys[b:b + 512], token_start=b)
        assert bank.index.ntotal == bank.n_chunks <= 1024
    assert bank.index.kind == "ivf" and bank.first_id == 1024 and bank.chunk_tokens[0, 0] == 4096
    bank.set_nprobe(8)
    bank.save(tmp_path / "b")
    loaded = MemoryBank.load(tmp_path / "b", documents=False)  # bare keys: no source to name
    assert loaded.index.kind == "ivf" and loaded.index.nprobe == 8
    q = torch.randn(5, 4, 8)
    a, b = bank.search(q, 4), loaded.search(q, 4)
    assert torch.equal(a.chunk_ids, b.chunk_ids) and torch.equal(a.keys, b.keys)
    assert (a.chunk_ids >= 1024).all()


def test_storage_grows_by_doubling_not_per_add():
    bank = _bank(capacity=1 << 20)
    sizes = set()
    for _ in range(64):
        bank.add(torch.randn(64, 2, 8), torch.randn(64, 2, 8))
        sizes.add(bank._k.shape[1])
    assert bank.n_chunks == 1024 and len(sizes) <= 4  # 256, 512, 1024 slots
    assert bank.nbytes() < 2 * (2 * 2 * 1024 * 4 * 8 * 2) + 1024 * 100


# -- pages of PDF sources --

def test_chunks_of_a_pdf_source_know_their_page(tmp_path):
    text = "a" * 30 + "\n\n" + "b" * 30 + "\n\n" + "c" * 30  # three pages, starting at 0, 32 and 64
    bank = _bank(capacity=256)
    pdf = bank.add_source("book.pdf", text, pages=[0, 32, 64])
    txt = bank.add_source("notes.txt", text)
    spans = np.stack([np.arange(94), np.arange(94) + 1], axis=1)
    bank.add(torch.randn(94, 2, 8), torch.randn(94, 2, 8), source=pdf, char_spans=spans)  # chunks start at 0, 4, 8..
    bank.add(torch.randn(8, 2, 8), torch.randn(8, 2, 8), source=txt, char_spans=spans[:8])
    pages = [bank.chunk_info(i).page for i in range(bank.n_chunks)]
    assert pages[:8] == [1] * 8 and pages[8] == 2 and pages[15] == 2 and pages[16] == 3 and pages[23] == 3
    assert pages[24:] == [None, None]  # a text file has no pages
    loaded = MemoryBank.load(bank.save(tmp_path / "bank"))
    assert [loaded.chunk_info(i).page for i in range(bank.n_chunks)] == pages
    assert loaded.sources[0]["pages"] == [0, 32, 64] and "pages" not in loaded.sources[1]
    for bad in ([], [5], [0, 40, 20], [0, 1000]):
        with pytest.raises(ValueError, match="pages must be"):
            bank.add_source("bad.pdf", text, pages=bad)


# -- property: any bank round-trips through save/load --

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@st.composite
def _banks(draw):
    G, D, c = draw(st.sampled_from([1, 2])), draw(st.sampled_from([2, 8])), draw(st.sampled_from([1, 2, 4]))
    bank = MemoryBank(n_kv_heads=G, head_dim=D, chunk_size=c, capacity=c * draw(st.integers(1, 24)),
                      index=draw(st.sampled_from(["auto", "flat", "ivf"])), backbone=draw(st.text(max_size=5)),
                      memory_layer=draw(st.integers(-1, 30)))
    seed = draw(st.integers(0, 2 ** 16))
    gen = torch.Generator().manual_seed(seed)
    for _ in range(draw(st.integers(0, 6))):
        text = draw(st.text(max_size=80))
        pages = draw(st.none() | st.lists(st.integers(0, len(text)), max_size=4).map(lambda p: sorted({0, *p})))
        src = bank.add_source(draw(st.text(max_size=10)), text, pages=pages)
        T = draw(st.integers(0, 40))
        bounds = np.sort(np.random.default_rng(seed).integers(0, len(text) + 1, size=T + 1))
        spans = np.stack([bounds[:-1], bounds[1:]], axis=1) if draw(st.booleans()) else None  # [T, 2] increasing
        bank.add(torch.randn(T, G, D, generator=gen), torch.randn(T, G, D, generator=gen),
                 source=src if draw(st.booleans()) or spans is not None else -1,
                 token_start=draw(st.integers(0, 1000)), char_spans=spans)
    return bank


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bank=_banks())
def test_save_load_round_trips_any_bank(tmp_path_factory, bank):
    path = bank.save(tmp_path_factory.mktemp("prop") / "bank")
    if (bank.chunk_source < 0).any():  # a chunk naming no source: refused as a bank of documents, loads as keys
        with pytest.raises(ValueError, match="every chunk must name one of them"):
            MemoryBank.load(path)
    loaded = MemoryBank.load(path, documents=False)
    for name in ("keys", "values", "token_mask"):
        assert torch.equal(getattr(bank, name), getattr(loaded, name))
    for name in ("chunk_source", "chunk_tokens", "chunk_chars", "chunk_ids"):
        assert np.array_equal(getattr(bank, name), getattr(loaded, name))
    assert (loaded.first_id, loaded.sources, loaded.capacity, loaded.index_kind, loaded.index.kind, len(loaded)) == (
        bank.first_id, bank.sources, bank.capacity, bank.index_kind, bank.index.kind, len(bank))
    assert [loaded.chunk_info(i) for i in loaded.chunk_ids] == [bank.chunk_info(i) for i in bank.chunk_ids]
    q = torch.randn(3, 2 * bank.n_kv_heads, bank.head_dim)
    a, b = bank.search(q, bank.n_chunks + 2), loaded.search(q, bank.n_chunks + 2)  # more than stored: some masked
    assert torch.equal(a.chunk_ids, b.chunk_ids) and torch.equal(a.scores, b.scores) and torch.equal(a.keys, b.keys)
    more = torch.randn(9, bank.n_kv_heads, bank.head_dim)  # both go on alike after the round trip
    bank.add(more, more)
    loaded.add(more, more)
    assert np.array_equal(bank.chunk_ids, loaded.chunk_ids) and torch.equal(bank.keys, loaded.keys)


def test_an_empty_one_chunk_ivf_bank_round_trips(tmp_path):
    """Found by the property test: an empty bank whose policy wants IVF from its first chunk."""
    bank = MemoryBank(n_kv_heads=1, head_dim=2, chunk_size=1, capacity=1, index="ivf")
    loaded = MemoryBank.load(bank.save(tmp_path / "empty"))
    assert loaded.n_chunks == 0 and loaded.index.kind == "flat"
    loaded.add(torch.randn(3, 1, 2), torch.randn(3, 1, 2))
    assert loaded.n_chunks == 1 and loaded.index.kind == "ivf"


def test_a_two_page_pdf_read_into_a_bank_cites_each_chunk_s_page(tmp_path):
    import io

    from pypdf import PdfReader, PdfWriter

    from longmem_core import read_document
    from pdf_util import make_pdf
    writer = PdfWriter()
    for lines in (["Alpha page words."], ["Beta page: the pass key is 4071."]):
        writer.add_page(PdfReader(io.BytesIO(make_pdf(lines))).pages[0])
    with open(tmp_path / "two.pdf", "wb") as f:
        writer.write(f)
    doc = read_document(tmp_path / "two.pdf")
    bank = _bank(capacity=1024)
    src = bank.add_source(doc.name, doc.text, pages=doc.pages)
    T = len(doc.text)  # one token per character
    bank.add(torch.randn(T, 2, 8), torch.randn(T, 2, 8), source=src,
             char_spans=np.stack([np.arange(T), np.arange(T) + 1], axis=1))
    infos = [bank.chunk_info(i) for i in bank.chunk_ids]
    key = next(i for i in infos if "4071" in doc.text[i.char_start:i.char_end + 4])
    assert infos[0].page == 1 and key.page == 2
    assert all(i.page == (1 if i.char_start < doc.pages[1] else 2) for i in infos)


def test_eviction_forgets_the_text_of_fully_evicted_sources(tmp_path):
    """A bank that keeps reading past its capacity does not keep every document it ever read."""
    bank = MemoryBank(n_kv_heads=1, head_dim=4, chunk_size=4, capacity=64)
    for i in range(6):
        text = f"d{i:02d}" * 32  # 96 characters, 32 tokens of 3 characters
        src = bank.add_source(f"d{i}", text)
        bank.add(torch.randn(32, 1, 4), torch.randn(32, 1, 4), source=src,
                 char_spans=[(3 * t, 3 * t + 3) for t in range(32)])
    assert len(bank) == 64 and [s["text"] != "" for s in bank.sources] == [False] * 4 + [True] * 2
    assert [s["name"] for s in bank.sources] == [f"d{i}" for i in range(6)]
    again = MemoryBank.load(bank.save(tmp_path / "b"))
    assert again.sources == bank.sources and again.chunk_info(int(again.chunk_ids[0])).text == "d04" * 4
