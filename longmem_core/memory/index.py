"""Search structures over chunk-mean keys, and the rules that size them.

Shape legend: G kv heads, D head dim, n chunks, M queries of one kv head, k results per query.

Every structure keeps, per kv head, one vector per stored chunk (the mean of its keys) and answers inner-product
top-k queries with global chunk ids:
- ``FlatIndex``: exact (faiss ``IndexFlatIP`` on the CPU, as the paper's code; a blocked matmul + top-k on the
  bank's device when the bank lives on a GPU);
- ``IVFIndex``: approximate (faiss ``IndexIVFFlat``, inner product), trained on the chunks in the bank.
A bank's index kind (one of ``config.INDEX_KINDS``) picks between them: "flat" always exact, "ivf" approximate as soon
as there are enough chunks to train it, "auto" (the default) exact below ``settings.INDEX.auto_approx_chunks`` chunks
and approximate above (the size is chosen by measurement: docs/results/index.md, ``python -m longmem_core
bench``).
"""
from __future__ import annotations

import importlib.util
import math

import numpy as np
import torch

from . import settings

RING_BLOCK_CPU, RING_BLOCK_DEVICE = 8192, 1 << 20  # vectors a torch exact search scores at once (CPU: small temporaries)
QUERY_BLOCK = 1024  # queries a torch exact search scores at once


def ivf_lists(max_chunks: int) -> int:
    """Inverted lists of an IVF index for a bank of ``max_chunks`` chunks: ~64 chunks a list when full, a power
    of two in 64..4096 (4096 for a 1M-token bank; measured against 1024: docs/results/index.md)."""
    return int(min(4096, max(64, 2 ** round(math.log2(max_chunks / 64)))))


def default_nprobe(nlist: int) -> int:
    """Lists searched per query: twice sqrt(nlist) rounded up to a power of two (32 of 128 lists, 64 of 512, 128
    of 2048 or 4096): recall@16 against exact >= 0.9 at 16k-1M tokens, measured (docs/results/index.md)."""
    return min(nlist, 2 * 2 ** math.ceil(math.log2(nlist) / 2))


def approximate_from(kind: str, max_chunks: int, device: torch.device) -> float:
    """Chunks from which a bank of ``max_chunks`` chunks wants an approximate (IVF) index under policy ``kind``
    (infinite: never)."""
    if kind == "flat" or device.type != "cpu":  # no approximate GPU index here
        return math.inf
    floor = max(1, min(ivf_lists(max_chunks) * settings.INDEX.ivf_points_per_list, max_chunks // 2))  # enough to train the lists
    # auto: the measured size whatever the capacity (before, a 1M-token bank waited for 131,072 chunks, enough for
    # its full 4,096 lists): a bank growing towards a large capacity switches where the bench says IVF pays, with the
    # lists its chunks can train (MemoryBank.rebuild_index), re-clustered with more lists as it grows
    return floor if kind == "ivf" else settings.INDEX.auto_approx_chunks


def _have_faiss() -> bool:
    return importlib.util.find_spec("faiss") is not None


def _f32(x: torch.Tensor) -> np.ndarray:
    """A contiguous float32 numpy copy (what faiss takes)."""
    return np.ascontiguousarray(x.float().cpu().numpy())


class FlatIndex:
    """Exact inner-product search: one faiss IndexFlatIP per kv head (float32, CPU), or a torch ring of vectors in
    ``dtype`` searched block by block (the device path of a GPU bank, and a CPU bank of 1-token chunks, whose
    chunk means are its float16 keys: kept in float16 they cost half, and lose nothing)."""

    kind = "flat"

    def __init__(self, n_kv_heads: int, dim: int, device: torch.device | str = "cpu", use_faiss: bool | None = None,
                 dtype: torch.dtype = torch.float32, limit: int | None = None) -> None:
        """``limit``: the most vectors it will ever hold at once (a bank's max_chunks): the torch ring never
        allocates more. ``dtype`` applies to the torch path only (faiss keeps float32)."""
        self.device = torch.device(device)
        if use_faiss is None:  # faiss is ~2x torch on a CPU; a GPU machine may not have it installed at all
            use_faiss = self.device.type == "cpu" and _have_faiss() and dtype == torch.float32
        self.on_cpu = use_faiss
        if self.on_cpu:  # faiss positions are oldest-first: position p holds chunk first_id + p
            import faiss
            self.heads = [faiss.IndexFlatIP(dim) for _ in range(n_kv_heads)]
        else:  # a ring: the stored vectors are _buf[:, (_head + p) % A] for p in 0.._count-1, oldest first
            self._buf = torch.empty(n_kv_heads, 0, dim, dtype=dtype, device=self.device)  # [G, A, D]
            self._head = self._count = 0
            self.limit = limit
            self.block = RING_BLOCK_CPU if self.device.type == "cpu" else RING_BLOCK_DEVICE

    @property
    def ntotal(self) -> int:
        return self.heads[0].ntotal if self.on_cpu else self._count

    @property
    def means(self) -> torch.Tensor:
        """[G, n, D] the stored vectors, oldest first (torch path only; a copy once the ring wraps)."""
        parts = [seg for seg, _ in self._segments()]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def _segments(self) -> list[tuple[torch.Tensor, int]]:
        """The stored vectors as at most two views [G, L, D] of the ring, each with the position of its first."""
        A = self._buf.shape[1]
        end = self._head + self._count
        if end <= A:
            return [(self._buf[:, self._head:end], 0)]
        return [(self._buf[:, self._head:], 0), (self._buf[:, :end - A], A - self._head)]

    def add(self, means: torch.Tensor, first_new_id: int) -> None:
        """means [G, n, D]: the newest n chunks, ids first_new_id .. first_new_id + n - 1."""
        if self.on_cpu:
            for g in range(len(self.heads)):
                self.add_head(g, means[g], first_new_id)
            return
        n = means.shape[1]
        A = self._buf.shape[1]
        if n == 0:
            return
        if self._count + n > A:  # full: copy into a larger ring, oldest first (doubling: amortised O(1) a chunk)
            size = max(2 * A, self._count + n, 1024)
            if self.limit is not None:
                size = max(min(size, self.limit), self._count + n)
            grown = torch.empty(self._buf.shape[0], size, self._buf.shape[2], dtype=self._buf.dtype, device=self.device)
            for seg, at in self._segments():
                grown[:, at:at + seg.shape[1]] = seg
            self._buf, self._head, A = grown, 0, size
        start = (self._head + self._count) % A
        first = min(n, A - start)  # the new vectors up to the end of the ring, then from its start
        self._buf[:, start:start + first] = means[:, :first].to(self.device, self._buf.dtype)
        self._buf[:, :n - first] = means[:, first:].to(self.device, self._buf.dtype)
        self._count += n

    def add_head(self, g: int, means: torch.Tensor, first_new_id: int) -> None:
        """means [n, D] of kv head g alone (an index being filled head by head: every head the same chunks)."""
        if not self.on_cpu:
            raise NotImplementedError("the torch path fills every kv head at once (add)")
        self.heads[g].add(_f32(means))

    def remove_oldest(self, n: int, first_id: int) -> None:
        if self.on_cpu:
            import faiss
            for index in self.heads:
                index.remove_ids(faiss.IDSelectorRange(0, n))  # survivors shift to positions 0..
        else:
            n = min(n, self._count)
            self._head = (self._head + n) % max(self._buf.shape[1], 1)
            self._count -= n

    def search(self, g: int, queries: torch.Tensor, k: int, first_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        """queries [M, D] of kv head g -> scores [M, k] float32, global ids [M, k] int64 (-1: none)."""
        if self.on_cpu:
            s, pos = self.heads[g].search(_f32(queries), k)
            pos = torch.from_numpy(pos)
            return torch.from_numpy(s), torch.where(pos >= 0, pos + first_id, pos)
        M = queries.shape[0]
        scores = torch.full((M, k), -math.inf, device=self.device)
        ids = torch.full((M, k), -1, dtype=torch.long, device=self.device)
        q = queries.float().to(self.device)
        for m in range(0, M, QUERY_BLOCK):
            values, found = [], []  # the best <= k of each block of vectors, then the best k of those
            for b in range(0, self._count, self.block):  # blocks: small float32 copies and [M, block] scores; laid
                block = self._ordered(g, b, min(self._count, b + self.block)).float()  # out by position, not by
                top = torch.topk(q[m:m + QUERY_BLOCK] @ block.T, min(k, block.shape[0]), dim=1)  # ring slot: the
                values.append(top.values)                        # same scores bit for bit wherever the ring starts
                found.append(top.indices + (first_id + b))
            if values:
                s, i = torch.cat(values, dim=1), torch.cat(found, dim=1)  # [m, <= k * blocks]
                best = torch.topk(s, min(k, s.shape[1]), dim=1)
                scores[m:m + QUERY_BLOCK, :best.values.shape[1]] = best.values
                ids[m:m + QUERY_BLOCK, :best.values.shape[1]] = i.gather(1, best.indices)
        return scores, ids

    def _ordered(self, g: int, begin: int, end: int) -> torch.Tensor:
        """[end - begin, D] the vectors of kv head g at positions begin..end-1 (0: the oldest)."""
        A = self._buf.shape[1]
        start, stop = (self._head + begin) % A, (self._head + end - 1) % A + 1
        if start < stop:
            return self._buf[g, start:stop]
        return torch.cat([self._buf[g, start:], self._buf[g, :stop]])

    def to_faiss(self, g: int):
        """The faiss index of kv head g."""
        if self.on_cpu:
            return self.heads[g]
        import faiss
        index = faiss.IndexFlatIP(self._buf.shape[2])
        index.add(_f32(self.means[g]))
        return index

    def nbytes(self) -> int:
        if self.on_cpu:
            return sum(i.ntotal * i.d * 4 for i in self.heads)
        return self._buf.numel() * self._buf.element_size()


class IVFIndex:
    """Approximate inner-product search: one faiss IndexIVFFlat per kv head, trained on the bank's own chunks.

    Ids are global chunk ids (``add_with_ids``), so eviction removes an id range and nothing shifts."""

    kind = "ivf"

    def __init__(self, train_means: torch.Tensor, nlist: int, nprobe: int | None = None, fp16: bool = False,
                 trained_on: int | None = None) -> None:
        """train_means [G, n, D] float32 (n >= nlist) -> trained, empty indexes; ``fp16``: the lists keep the
        vectors in float16 (half the memory; exact for vectors that are float16 numbers, as 1-token chunk means);
        ``trained_on``: the chunks the bank held when trained (default n; more when trained on a sample of them)."""
        import faiss
        G, n, D = train_means.shape
        self.nlist, self.trained_on, self.fp16 = nlist, n if trained_on is None else trained_on, fp16
        self.heads = []
        for g in range(G):
            index = self._empty(D, nlist, fp16)
            index.cp.min_points_per_centroid = 1  # no warning when a list gets few training points
            index.cp.niter = settings.INDEX.ivf_kmeans_iterations
            index.cp.max_points_per_centroid = settings.INDEX.ivf_train_points_per_list  # k-means on a sample: half the time
            index.train(_f32(train_means[g]))
            self.heads.append(index)
        self.nprobe = nprobe or default_nprobe(nlist)

    @staticmethod
    def _empty(dim: int, nlist: int, fp16: bool):
        import faiss
        codec = "SQfp16" if fp16 else "Flat"
        return faiss.index_factory(dim, f"IVF{nlist},{codec}", faiss.METRIC_INNER_PRODUCT)  # owns its quantizer

    @classmethod
    def from_centroids(cls, centroids: torch.Tensor, trained_on: int, nprobe: int | None = None,
                       fp16: bool = False) -> "IVFIndex":
        """Empty indexes around centroids [G, nlist, D] float32 saved from another IVFIndex (no training: the
        same centroids put every chunk in the same list, so searches give what the saved index gave)."""
        import faiss
        self = cls.__new__(cls)
        G, nlist, D = centroids.shape
        self.nlist, self.trained_on, self.heads, self.fp16 = nlist, trained_on, [], fp16
        for g in range(G):
            index = self._empty(D, nlist, fp16)
            faiss.downcast_index(index.quantizer).add(_f32(centroids[g]))
            index.is_trained = True
            self.heads.append(index)
        self.nprobe = nprobe or default_nprobe(nlist)
        return self

    def centroids(self) -> torch.Tensor:
        """[G, nlist, D] float32: the trained centroids of every kv head (what ``from_centroids`` takes)."""
        import faiss
        return torch.stack([torch.from_numpy(faiss.downcast_index(i.quantizer).reconstruct_n(0, self.nlist))
                            for i in self.heads])

    @property
    def nprobe(self) -> int:
        return self.heads[0].nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        for index in self.heads:
            index.nprobe = int(value)

    @property
    def ntotal(self) -> int:
        return self.heads[0].ntotal

    def add(self, means: torch.Tensor, first_new_id: int) -> None:
        """means [G, n, D]: the newest n chunks, ids first_new_id .. first_new_id + n - 1."""
        for g in range(len(self.heads)):
            self.add_head(g, means[g], first_new_id)

    def add_head(self, g: int, means: torch.Tensor, first_new_id: int, lists: torch.Tensor | None = None) -> None:
        """means [n, D] of kv head g alone; ``lists`` [n] int64: the inverted list of each (from ``assignments``;
        default: the nearest centroid, which costs n * nlist inner products)."""
        x = _f32(means)
        ids = np.arange(first_new_id, first_new_id + len(x), dtype=np.int64)
        if lists is None:
            self.heads[g].add_with_ids(x, ids)
        else:
            import faiss
            assign = np.ascontiguousarray(lists.numpy(), dtype=np.int64)
            self.heads[g].add_core(len(x), faiss.swig_ptr(x), faiss.swig_ptr(ids), faiss.swig_ptr(assign))

    def lists_of(self, g: int, means: torch.Tensor) -> torch.Tensor:
        """[n] int64: the inverted list kv head g's index puts each of means [n, D] in (its nearest centroid)."""
        return torch.from_numpy(self.heads[g].quantizer.assign(_f32(means), 1).reshape(-1))

    def reserve(self, g: int, lists: torch.Tensor) -> None:
        """Room in kv head g's inverted lists for chunks going to ``lists`` [n] int64, allocated once at its size
        (adding one chunk at a time grows each list by doubling: up to twice the memory, and freed copies)."""
        import faiss
        invlists = faiss.downcast_InvertedLists(self.heads[g].invlists)
        counts = np.bincount(lists.numpy(), minlength=self.nlist)
        for list_no in np.flatnonzero(counts):
            size = invlists.list_size(int(list_no))
            invlists.resize(int(list_no), size + int(counts[list_no]))  # std::vector keeps its capacity when
            invlists.resize(int(list_no), size)                          # shrunk back

    def assignments(self, first_id: int, n: int) -> torch.Tensor:
        """[G, n] int64: the inverted list holding each of the chunks first_id .. first_id + n - 1 (what
        ``add_head`` takes back, so a saved index is rebuilt without computing any distance)."""
        import faiss
        out = np.full((len(self.heads), n), -1, dtype=np.int64)
        for g, index in enumerate(self.heads):
            for list_no in range(index.nlist):
                size = index.invlists.list_size(list_no)
                if size:
                    out[g, faiss.rev_swig_ptr(index.invlists.get_ids(list_no), size) - first_id] = list_no
        return torch.from_numpy(out)

    def remove_oldest(self, n: int, first_id: int) -> None:
        import faiss
        for index in self.heads:
            index.remove_ids(faiss.IDSelectorRange(first_id, first_id + n))

    def search(self, g: int, queries: torch.Tensor, k: int, first_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        s, ids = self.heads[g].search(_f32(queries), k)
        return torch.from_numpy(s), torch.from_numpy(ids)

    def to_faiss(self, g: int):
        return self.heads[g]

    def nbytes(self) -> int:  # vectors + ids in the inverted lists, centroids
        return sum(i.ntotal * (i.code_size + 8) + i.nlist * i.d * 4 for i in self.heads)


ChunkIndex = FlatIndex | IVFIndex
