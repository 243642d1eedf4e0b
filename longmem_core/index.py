"""Search structures over chunk-mean keys, and the rules that size them.

Shape legend: G kv heads, D head dim, n chunks, M queries of one kv head, k results per query.

Every structure keeps, per kv head, one vector per stored chunk (the mean of its keys) and answers inner-product
top-k queries with global chunk ids:
- ``FlatIndex``: exact (faiss ``IndexFlatIP`` on the CPU, as the paper's code; a blocked matmul + top-k on the
  bank's device when the bank lives on a GPU);
- ``IVFIndex``: approximate (faiss ``IndexIVFFlat``, inner product), trained on the chunks in the bank.
A bank's index kind (one of ``INDEX_KINDS``) picks between them: "flat" always exact, "ivf" approximate as soon
as there are enough chunks to train it, "auto" (the default) exact below ``AUTO_APPROX_CHUNKS`` chunks and
approximate above (the size is chosen by measurement: docs/RESULTS.md, ``python -m longmem_core bench``).
"""
from __future__ import annotations

import importlib.util
import math
import numbers

import numpy as np
import torch

INDEX_KINDS = ("auto", "flat", "ivf")  # the policies a bank (and LongMemConfig.index) may name
MAX_CAPACITY = 1 << 24  # tokens: the largest bank anyone may create or load (16M tokens)
AUTO_APPROX_CHUNKS = 32_768  # "auto": exact search below this many chunks (131,072 tokens of chunk size 4)
IVF_POINTS_PER_LIST = 32  # an IVF index is trained once there are this many chunks per inverted list
IVF_KMEANS_ITERATIONS = 10  # k-means iterations when (re)training an IVF index (faiss' IVF default)
IVF_TRAIN_POINTS_PER_LIST = 32  # k-means trains on at most this many sampled chunks per list
IVF_RETRAIN_GROWTH = 4  # retrain (re-cluster) an IVF index when the bank has grown this much since training


def check_index_kind(kind: object) -> str:
    """``kind`` if it is one of ``INDEX_KINDS``, else ValueError."""
    if kind not in INDEX_KINDS:
        raise ValueError(f"index must be one of {INDEX_KINDS}, got {kind!r}")
    return kind  # type: ignore[return-value]


def check_capacity(capacity: object, chunk_size: object) -> None:
    """ValueError unless ``capacity`` tokens hold at least one chunk of ``chunk_size`` tokens and stay within
    ``MAX_CAPACITY`` (the one capacity rule of configs, new banks and banks read from disk)."""
    if not isinstance(chunk_size, numbers.Integral) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    if not isinstance(capacity, numbers.Integral) or isinstance(capacity, bool):
        raise ValueError(f"capacity must be an integer, got {capacity!r}")
    if capacity < chunk_size:
        raise ValueError(f"capacity ({capacity}) must hold at least one chunk of {chunk_size} tokens")
    if capacity > MAX_CAPACITY:
        raise ValueError(f"capacity ({capacity}) is over the limit of {MAX_CAPACITY} tokens")


def ivf_lists(max_chunks: int) -> int:
    """Inverted lists of an IVF index for a bank of ``max_chunks`` chunks: ~64 chunks a list when full, a power
    of two in 64..4096 (4096 for a 1M-token bank; measured against 1024: docs/RESULTS.md)."""
    return int(min(4096, max(64, 2 ** round(math.log2(max_chunks / 64)))))


def default_nprobe(nlist: int) -> int:
    """Lists searched per query: twice sqrt(nlist) rounded up to a power of two (32 of 128 lists, 64 of 512, 128
    of 2048 or 4096): recall@16 against exact >= 0.9 at 16k-1M tokens, measured (docs/RESULTS.md)."""
    return min(nlist, 2 * 2 ** math.ceil(math.log2(nlist) / 2))


def approximate_from(kind: str, max_chunks: int, device: torch.device) -> float:
    """Chunks from which a bank of ``max_chunks`` chunks wants an approximate (IVF) index under policy ``kind``
    (infinite: never)."""
    if kind == "flat" or device.type != "cpu":  # no approximate GPU index here
        return math.inf
    floor = max(1, min(ivf_lists(max_chunks) * IVF_POINTS_PER_LIST, max_chunks // 2))  # enough to train the lists
    return floor if kind == "ivf" else max(floor, AUTO_APPROX_CHUNKS)


def _have_faiss() -> bool:
    return importlib.util.find_spec("faiss") is not None


def _f32(x: torch.Tensor) -> np.ndarray:
    """A contiguous float32 numpy copy (what faiss takes)."""
    return np.ascontiguousarray(x.float().cpu().numpy())


class FlatIndex:
    """Exact inner-product search, one faiss IndexFlatIP per kv head (CPU), or a torch ring on another device."""

    kind = "flat"

    def __init__(self, n_kv_heads: int, dim: int, device: torch.device | str = "cpu", use_faiss: bool | None = None) -> None:
        self.device = torch.device(device)
        if use_faiss is None:  # faiss is ~2x torch on a CPU; a GPU machine may not have it installed at all
            use_faiss = self.device.type == "cpu" and _have_faiss()
        self.on_cpu = use_faiss
        if self.on_cpu:  # faiss positions are oldest-first: position p holds chunk first_id + p
            import faiss
            self.heads = [faiss.IndexFlatIP(dim) for _ in range(n_kv_heads)]
        else:  # chunk means live in a growing buffer on the device (GPU search); see ``means``
            self._buf = torch.empty(n_kv_heads, 0, dim, device=self.device)  # [G, allocated, D] float32
            self._start = self._end = 0  # the stored means are _buf[:, _start:_end], oldest first

    @property
    def ntotal(self) -> int:
        return self.heads[0].ntotal if self.on_cpu else self._end - self._start

    @property
    def means(self) -> torch.Tensor:
        """[G, n, D] float32 chunk means, oldest first (torch path only): a view, no copy."""
        return self._buf[:, self._start:self._end]

    def add(self, means: torch.Tensor, first_new_id: int) -> None:
        """means [G, n, D]: the newest n chunks, ids first_new_id .. first_new_id + n - 1."""
        if self.on_cpu:
            for g in range(len(self.heads)):
                self.add_head(g, means[g], first_new_id)
        else:
            n = means.shape[1]
            if self._end + n > self._buf.shape[1]:  # full: compact and double (amortised O(1) per chunk; a
                live = self.means                       # copy per add would cost O(N^2) over a long read)
                grown = torch.empty(live.shape[0], max(2 * (live.shape[1] + n), 1024), live.shape[2],
                                    device=self.device)
                grown[:, :live.shape[1]] = live
                self._buf, self._start, self._end = grown, 0, live.shape[1]
            self._buf[:, self._end:self._end + n] = means.float().to(self.device)
            self._end += n

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
            self._start += min(n, self.ntotal)

    def search(self, g: int, queries: torch.Tensor, k: int, first_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        """queries [M, D] of kv head g -> scores [M, k] float32, global ids [M, k] int64 (-1: none)."""
        if self.on_cpu:
            s, pos = self.heads[g].search(_f32(queries), k)
            pos = torch.from_numpy(pos)
            return torch.from_numpy(s), torch.where(pos >= 0, pos + first_id, pos)
        n = self.means.shape[1]
        kk = min(k, n)
        scores = torch.full((queries.shape[0], k), -math.inf, device=self.device)
        ids = torch.full((queries.shape[0], k), -1, dtype=torch.long, device=self.device)
        q = queries.float().to(self.device)
        for b in range(0, q.shape[0], 1024):  # blocks of queries keep the [M, n] score matrix small
            top = torch.topk(q[b:b + 1024] @ self.means[g].T, kk, dim=1)
            scores[b:b + 1024, :kk], ids[b:b + 1024, :kk] = top.values, top.indices + first_id
        return scores, ids

    def to_faiss(self, g: int):
        """The faiss index of kv head g."""
        if self.on_cpu:
            return self.heads[g]
        import faiss
        index = faiss.IndexFlatIP(self.means.shape[2])
        index.add(np.ascontiguousarray(self.means[g].cpu().numpy()))
        return index

    def nbytes(self) -> int:
        return sum(i.ntotal * i.d * 4 for i in self.heads) if self.on_cpu else self._buf.numel() * 4


class IVFIndex:
    """Approximate inner-product search: one faiss IndexIVFFlat per kv head, trained on the bank's own chunks.

    Ids are global chunk ids (``add_with_ids``), so eviction removes an id range and nothing shifts."""

    kind = "ivf"

    def __init__(self, train_means: torch.Tensor, nlist: int, nprobe: int | None = None) -> None:
        """train_means [G, n, D] float32 (n >= nlist) -> trained, empty indexes."""
        import faiss
        G, n, D = train_means.shape
        self.nlist, self.trained_on = nlist, n
        self.heads = []
        for g in range(G):
            index = self._empty(D, nlist)
            index.cp.min_points_per_centroid = 1  # no warning when a list gets few training points
            index.cp.niter = IVF_KMEANS_ITERATIONS
            index.cp.max_points_per_centroid = IVF_TRAIN_POINTS_PER_LIST  # k-means on a sample: half the time
            index.train(_f32(train_means[g]))
            self.heads.append(index)
        self.nprobe = nprobe or default_nprobe(nlist)

    @staticmethod
    def _empty(dim: int, nlist: int):
        import faiss
        return faiss.index_factory(dim, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)  # owns its quantizer

    @classmethod
    def from_centroids(cls, centroids: torch.Tensor, trained_on: int, nprobe: int | None = None) -> "IVFIndex":
        """Empty indexes around centroids [G, nlist, D] float32 saved from another IVFIndex (no training: the
        same centroids put every chunk in the same list, so searches give what the saved index gave)."""
        import faiss
        self = cls.__new__(cls)
        G, nlist, D = centroids.shape
        self.nlist, self.trained_on, self.heads = nlist, trained_on, []
        for g in range(G):
            index = self._empty(D, nlist)
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
        return sum(i.ntotal * (i.d * 4 + 8) + i.nlist * i.d * 4 for i in self.heads)


ChunkIndex = FlatIndex | IVFIndex
