"""The memory bank: past keys/values of one memory layer, in chunks, searched per kv head.

Shape legend: T tokens added, N query vectors, H query heads, G kv heads, D head dim, c chunk size,
Nc chunks stored, A chunk slots allocated, C chunks retrieved per query, K = C * c tokens retrieved per query.

Tokens are grouped into chunks of ``chunk_size``; every chunk is represented per kv head by the mean of its
keys. A query of head h searches the chunk means of its kv head h // (H / G) and gets the C best chunks,
flattened back into their K token keys/values (token-to-chunk retrieval). Beyond ``capacity`` tokens the
oldest chunks are evicted (FIFO). Every chunk remembers its source, token span and character span, so it can
be shown as the exact text.

Storage is a ring buffer: chunk ``id`` lives in slot ``id % max_chunks``; slots are allocated by doubling up
to ``max_chunks``, so adding is amortised O(tokens added) and eviction moves nothing. The search structure
(``ChunkIndex``) is one of:
- ``FlatIndex``: exact inner product (faiss ``IndexFlatIP`` on the CPU, as the paper's code; a blocked
  matmul + top-k on the bank's device when the bank lives on a GPU);
- ``IVFIndex``: approximate (faiss ``IndexIVFFlat``, inner product), trained on the chunks in the bank.
The bank's ``index`` policy picks: "flat" always exact, "ivf" approximate as soon as there are enough chunks to
train it, "auto" (the default) exact below ``AUTO_APPROX_CHUNKS`` chunks and approximate above (the size is
chosen by measurement: docs/RESULTS.md, ``python -m longmem_core bench``).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

FORMAT_VERSION = 1
STORAGE_DTYPE = torch.float16  # keys/values are kept in 16 bits
INDEX_POLICIES = ("auto", "flat", "ivf")
AUTO_APPROX_CHUNKS = 32_768  # "auto": exact search below this many chunks (131,072 tokens of chunk size 4)
IVF_POINTS_PER_LIST = 32  # an IVF index is trained once there are this many chunks per inverted list
IVF_KMEANS_ITERATIONS = 10  # k-means iterations when (re)training an IVF index (faiss' IVF default)
IVF_TRAIN_POINTS_PER_LIST = 32  # k-means trains on at most this many sampled chunks per list
IVF_RETRAIN_GROWTH = 4  # retrain (re-cluster) an IVF index when the bank has grown this much since training


class BankMismatchError(ValueError):
    """A memory bank does not fit the model (another backbone, layer or head layout)."""


@dataclass
class MemoryHits:
    """The result of one search; slots with nothing behind them are masked, never missing."""

    keys: torch.Tensor  # [N, H, K, D] float16
    values: torch.Tensor  # [N, H, K, D] float16
    mask: torch.Tensor  # [N, H, K] bool, True where a slot is a real stored token
    chunk_ids: torch.Tensor  # [N, H, C] int64 global chunk ids, -1 where nothing was found
    scores: torch.Tensor  # [N, H, C] float32 inner product of the query with the chunk's mean key

    def to(self, device: torch.device) -> "MemoryHits":
        if self.keys.device == device:
            return self
        return MemoryHits(*(t.to(device) for t in (self.keys, self.values, self.mask, self.chunk_ids, self.scores)))


@dataclass
class ChunkInfo:
    chunk_id: int
    source: str
    token_start: int  # token span in the source's token stream, [start, end)
    token_end: int
    char_start: int  # character span in the source text, [start, end)
    char_end: int
    text: str


def chunk_means(keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean key of each chunk over its real tokens: keys [G, n, c, D], mask [n, c] -> [G, n, D] float32
    (what the search structures hold)."""
    m = mask[None, :, :, None]
    return (keys.float() * m).sum(2) / m.sum(2).clamp(min=1)


# -- search structures over chunk-mean keys; ids are global chunk ids --

def ivf_lists(max_chunks: int) -> int:
    """Inverted lists of an IVF index for a bank of ``max_chunks`` chunks: ~64 chunks a list when full, a power
    of two in 64..4096 (4096 for a 1M-token bank; measured against 1024: docs/RESULTS.md)."""
    return int(min(4096, max(64, 2 ** round(math.log2(max_chunks / 64)))))


def default_nprobe(nlist: int) -> int:
    """Lists searched per query: twice sqrt(nlist) rounded up to a power of two (32 of 128 lists, 64 of 512, 128
    of 2048 or 4096): recall@16 against exact >= 0.9 at 16k-1M tokens, measured (docs/RESULTS.md)."""
    return min(nlist, 2 * 2 ** math.ceil(math.log2(nlist) / 2))


def _have_faiss() -> bool:
    import importlib.util
    return importlib.util.find_spec("faiss") is not None


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
        """[G, Nc, D] float32 chunk means, oldest first (torch path only): a view, no copy."""
        return self._buf[:, self._start:self._end]

    def add(self, means: torch.Tensor, first_new_id: int) -> None:
        """means [G, n, D]: the newest n chunks, ids first_new_id .. first_new_id + n - 1."""
        if self.on_cpu:
            for g, index in enumerate(self.heads):
                index.add(np.ascontiguousarray(means[g].float().cpu().numpy()))
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
            s, pos = self.heads[g].search(np.ascontiguousarray(queries.float().numpy()), k)
            pos = torch.from_numpy(pos)
            return torch.from_numpy(s), torch.where(pos >= 0, pos + first_id, pos)
        n = self.means.shape[1]
        kk = min(k, n)
        scores = torch.full((queries.shape[0], k), -math.inf, device=self.device)
        ids = torch.full((queries.shape[0], k), -1, dtype=torch.long, device=self.device)
        q = queries.float().to(self.device)
        for b in range(0, q.shape[0], 1024):  # blocks of queries keep the [M, Nc] score matrix small
            top = torch.topk(q[b:b + 1024] @ self.means[g].T, kk, dim=1)
            scores[b:b + 1024, :kk], ids[b:b + 1024, :kk] = top.values, top.indices + first_id
        return scores, ids

    def to_faiss(self, g: int):
        """The faiss index of kv head g (for saving)."""
        if self.on_cpu:
            return self.heads[g]
        import faiss
        index = faiss.IndexFlatIP(self.means.shape[2])
        index.add(np.ascontiguousarray(self.means[g].cpu().numpy()))
        return index

    @classmethod
    def from_faiss(cls, heads: list) -> "FlatIndex":
        """A CPU flat index around faiss indexes read from disk."""
        self = cls.__new__(cls)
        self.device, self.on_cpu, self.heads = torch.device("cpu"), True, heads
        return self

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
            index = faiss.index_factory(D, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)  # owns its quantizer
            index.cp.min_points_per_centroid = 1  # no warning when a list gets few training points
            index.cp.niter = IVF_KMEANS_ITERATIONS
            index.cp.max_points_per_centroid = IVF_TRAIN_POINTS_PER_LIST  # k-means on a sample: half the time
            index.train(np.ascontiguousarray(train_means[g].float().cpu().numpy()))
            self.heads.append(index)
        self.nprobe = nprobe or default_nprobe(nlist)

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
        ids = np.arange(first_new_id, first_new_id + means.shape[1], dtype=np.int64)
        for g, index in enumerate(self.heads):
            index.add_with_ids(np.ascontiguousarray(means[g].float().cpu().numpy()), ids)

    def remove_oldest(self, n: int, first_id: int) -> None:
        import faiss
        for index in self.heads:
            index.remove_ids(faiss.IDSelectorRange(first_id, first_id + n))

    def search(self, g: int, queries: torch.Tensor, k: int, first_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        s, ids = self.heads[g].search(np.ascontiguousarray(queries.float().cpu().numpy()), k)
        return torch.from_numpy(s), torch.from_numpy(ids)

    def to_faiss(self, g: int):
        return self.heads[g]

    @classmethod
    def from_faiss(cls, heads: list) -> "IVFIndex":
        self = cls.__new__(cls)
        self.heads, self.nlist, self.trained_on = heads, heads[0].nlist, heads[0].ntotal
        return self

    def nbytes(self) -> int:  # vectors + ids in the inverted lists, centroids
        return sum(i.ntotal * (i.d * 4 + 8) + i.nlist * i.d * 4 for i in self.heads)


class MemoryBank:
    """Chunked key/value memory for one caller (one user session, one document stream). Nothing is global."""

    def __init__(self, *, n_kv_heads: int, head_dim: int, chunk_size: int = 4, capacity: int = 65_536,
                 index: str = "auto", backbone: str = "", memory_layer: int = -1,
                 device: torch.device | str = "cpu") -> None:
        if capacity < chunk_size:
            raise ValueError(f"capacity ({capacity}) must hold at least one chunk of {chunk_size} tokens")
        if index not in INDEX_POLICIES:
            raise ValueError(f"index must be one of {INDEX_POLICIES}, got {index!r}")
        self.n_kv_heads, self.head_dim, self.chunk_size = n_kv_heads, head_dim, chunk_size
        self.capacity, self.index_kind = capacity, index
        self.device = torch.device(device)
        self.backbone, self.memory_layer = backbone, memory_layer  # who wrote it (checked by the model)
        self.nprobe: int | None = None  # lists an IVF index searches (None: default_nprobe)
        self.reset()

    # -- state --

    def reset(self) -> None:
        """Forget everything (sources too)."""
        self._allocate(0)
        self.first_id = 0  # global id of the oldest stored chunk; ids are contiguous (FIFO)
        self._count = 0  # chunks stored
        self._tokens = 0  # tokens stored (a partial chunk counts its real tokens)
        self.index: FlatIndex | IVFIndex = FlatIndex(self.n_kv_heads, self.head_dim, self.device)
        self.sources: list[dict] = []  # {"name", "text"} per source, in order of addition

    def _allocate(self, slots: int) -> None:
        """Fresh, empty storage of ``slots`` chunk slots."""
        G, D, c = self.n_kv_heads, self.head_dim, self.chunk_size
        self._k = torch.zeros(G, slots, c, D, dtype=STORAGE_DTYPE, device=self.device)  # [G, A, c, D]
        self._v = torch.zeros(G, slots, c, D, dtype=STORAGE_DTYPE, device=self.device)  # [G, A, c, D]
        self._mask = torch.zeros(slots, c, dtype=torch.bool, device=self.device)  # [A, c] False: padding
        self._source = np.full(slots, -1, dtype=np.int64)  # [A] index into self.sources
        self._tok = np.zeros((slots, 2), dtype=np.int64)  # [A, 2] token span in its source
        self._chr = np.full((slots, 2), -1, dtype=np.int64)  # [A, 2] character span in its source text

    def _grow(self, end_id: int) -> None:
        """Make room for ids up to ``end_id`` (exclusive): doubling, up to max_chunks slots (then a ring)."""
        A = self._k.shape[1]
        need = self.max_chunks if end_id > self.max_chunks else end_id
        if need <= A:
            return
        new = min(self.max_chunks, max(need, 2 * A, 256))
        old = (self._k, self._v, self._mask, self._source, self._tok, self._chr)
        self._allocate(new)  # before the bank first fills, ids equal slots, so the old slots copy over as they are
        self._k[:, :A], self._v[:, :A], self._mask[:A] = old[0], old[1], old[2]
        self._source[:A], self._tok[:A], self._chr[:A] = old[3], old[4], old[5]

    def __len__(self) -> int:
        """Tokens stored."""
        return self._tokens

    @property
    def n_chunks(self) -> int:
        return self._count

    @property
    def max_chunks(self) -> int:
        return self.capacity // self.chunk_size

    def _slots(self, ids) -> torch.Tensor | np.ndarray:
        return ids % self.max_chunks

    def _ordered_slots(self) -> np.ndarray | slice:
        """Slots of the stored chunks, oldest first (a slice while they do not wrap around)."""
        start = self.first_id % self.max_chunks
        if start + self._count <= self._k.shape[1]:
            return slice(start, start + self._count)
        return (np.arange(self.first_id, self.first_id + self._count) % self.max_chunks)

    def _ordered(self, array, dim: int = 0):
        sl = self._ordered_slots()
        if isinstance(sl, slice):
            return array[(slice(None),) * dim + (sl,)]
        if isinstance(array, torch.Tensor):
            sl = torch.from_numpy(sl).to(array.device)
        return array[(slice(None),) * dim + (sl,)]

    # oldest-first views of the stored chunks
    @property
    def keys(self) -> torch.Tensor:  # [G, Nc, c, D] float16
        return self._ordered(self._k, 1)

    @property
    def values(self) -> torch.Tensor:  # [G, Nc, c, D] float16
        return self._ordered(self._v, 1)

    @property
    def token_mask(self) -> torch.Tensor:  # [Nc, c] bool
        return self._ordered(self._mask)

    @property
    def chunk_source(self) -> np.ndarray:  # [Nc] index into sources
        return self._ordered(self._source)

    @property
    def chunk_tokens(self) -> np.ndarray:  # [Nc, 2]
        return self._ordered(self._tok)

    @property
    def chunk_chars(self) -> np.ndarray:  # [Nc, 2]
        return self._ordered(self._chr)

    @property
    def indexes(self) -> list:
        """The faiss index of each kv head (what is saved)."""
        return [self.index.to_faiss(g) for g in range(self.n_kv_heads)]

    def add_source(self, name: str, text: str) -> int:
        """Register a source document; returns its index for ``add``."""
        self.sources.append({"name": name, "text": text})
        return len(self.sources) - 1

    # -- writing --

    def add(self, keys: torch.Tensor, values: torch.Tensor, *, source: int = -1, token_start: int = 0,
            char_spans: torch.Tensor | np.ndarray | None = None) -> int:
        """Append T consecutive tokens of one source.

        keys, values: [T, G, D] (the memory layer's keys before rotation, and values)
        token_start: position of the first of these tokens in the source's token stream
        char_spans: [T, 2] character span of each token in the source text (optional)
        Returns the number of chunks added. A last partial chunk is padded and masked.
        """
        T, G, D = keys.shape
        if (G, D) != (self.n_kv_heads, self.head_dim) or values.shape != keys.shape:
            raise ValueError(f"keys/values must be [T, {self.n_kv_heads}, {self.head_dim}], "
                             f"got {tuple(keys.shape)} and {tuple(values.shape)}")
        if T == 0:
            return 0
        c = self.chunk_size
        n_new = -(-T // c)
        pad = n_new * c - T
        k = torch.nn.functional.pad(keys.detach().to(self.device, STORAGE_DTYPE), (0, 0, 0, 0, 0, pad))  # [n_new*c, G, D]
        v = torch.nn.functional.pad(values.detach().to(self.device, STORAGE_DTYPE), (0, 0, 0, 0, 0, pad))
        k = k.view(n_new, c, G, D).permute(2, 0, 1, 3)  # [G, n_new, c, D]
        v = v.view(n_new, c, G, D).permute(2, 0, 1, 3)
        tmask = (torch.arange(n_new * c, device=self.device) < T).view(n_new, c)  # [n_new, c]
        starts = np.arange(n_new) * c
        ends = np.minimum(starts + c, T)
        tok = np.stack([token_start + starts, token_start + ends], axis=1)
        if char_spans is not None:
            spans = np.asarray(char_spans, dtype=np.int64).reshape(T, 2)
            chars = np.stack([spans[starts, 0], spans[ends - 1, 1]], axis=1)
        else:
            chars = np.full((n_new, 2), -1, dtype=np.int64)
        if n_new > self.max_chunks:  # a single add larger than the bank: only its newest chunks fit
            drop = n_new - self.max_chunks
            self._evict(self._count)
            self.first_id += drop
            k, v, tmask, tok, chars = k[:, drop:], v[:, drop:], tmask[drop:], tok[drop:], chars[drop:]
            n_new -= drop
        self._evict(self._count + n_new - self.max_chunks)
        first_new = self.first_id + self._count
        self._grow(first_new + n_new)
        slots = self._slots(np.arange(first_new, first_new + n_new))
        ts = torch.from_numpy(slots).to(self.device)
        self._k[:, ts], self._v[:, ts], self._mask[ts] = k, v, tmask
        self._source[slots], self._tok[slots], self._chr[slots] = source, tok, chars
        self._count += n_new
        self._tokens += int(tmask.sum())
        self.index.add(chunk_means(k, tmask), first_new)
        self._maybe_switch_index()
        return n_new

    def _evict(self, n: int) -> None:
        """Drop the n oldest chunks (FIFO): their slots are simply reused later."""
        n = min(n, self._count)
        if n <= 0:
            return
        self.index.remove_oldest(n, self.first_id)
        sl = self._slots(np.arange(self.first_id, self.first_id + n))
        ts = torch.from_numpy(sl).to(self.device)
        self._tokens -= int(self._mask[ts].sum())
        self._mask[ts] = False
        self._source[sl] = -1
        self.first_id += n
        self._count -= n

    # -- the search structure --

    def _approx_from(self) -> float:
        """Chunks from which the policy wants an approximate index."""
        nlist = ivf_lists(self.max_chunks)
        if self.index_kind == "flat" or self.device.type != "cpu":  # no approximate GPU index here
            return math.inf
        floor = min(nlist * IVF_POINTS_PER_LIST, self.max_chunks // 2)  # enough chunks to train the lists
        return floor if self.index_kind == "ivf" else max(floor, AUTO_APPROX_CHUNKS)

    def _maybe_switch_index(self) -> None:
        """Move from exact to IVF search once the bank is big enough, and re-cluster an IVF index after growth."""
        if self._count < self._approx_from():
            return
        if isinstance(self.index, IVFIndex) and self._count < IVF_RETRAIN_GROWTH * self.index.trained_on:
            return
        self.rebuild_index(approximate=True)

    def rebuild_index(self, approximate: bool) -> None:
        """Rebuild the search structure from the stored keys (exact, or IVF trained on the stored chunks)."""
        means = torch.from_numpy(self.chunk_keys()) if self._count else torch.empty(self.n_kv_heads, 0, self.head_dim)
        if approximate:
            nlist = min(ivf_lists(self.max_chunks), max(1, self._count // IVF_POINTS_PER_LIST))
            index = IVFIndex(means, nlist, self.nprobe)
        else:
            index = FlatIndex(self.n_kv_heads, self.head_dim, self.device)
        if self._count:
            index.add(means, self.first_id)
        self.index = index

    def set_nprobe(self, nprobe: int) -> None:
        """Lists an IVF index searches (more: slower, closer to exact); kept across re-clustering."""
        self.nprobe = int(nprobe)
        if isinstance(self.index, IVFIndex):
            self.index.nprobe = self.nprobe

    # -- reading --

    def search(self, queries: torch.Tensor, n_chunks: int) -> MemoryHits:
        """Token-to-chunk retrieval for queries [N, H, D] (H a multiple of the kv heads G).

        Returns the best ``n_chunks`` chunks per query and head, flattened to K = n_chunks * chunk_size tokens.
        """
        N, H, D = queries.shape
        G, c = self.n_kv_heads, self.chunk_size
        if D != self.head_dim or H % G:
            raise ValueError(f"queries must be [N, H, {self.head_dim}] with H a multiple of {G}, got {tuple(queries.shape)}")
        per_group = H // G
        q = queries.detach().reshape(N, G, per_group, D)  # [N, G, H/G, D]
        scores = torch.full((N, G, per_group, n_chunks), -math.inf, device=self.device)
        ids = torch.full((N, G, per_group, n_chunks), -1, dtype=torch.long, device=self.device)
        if self._count:
            for g in range(G):
                s, i = self.index.search(g, q[:, g].reshape(-1, D), n_chunks, self.first_id)  # [N*H/G, C]
                scores[:, g] = s.to(self.device).view(N, per_group, n_chunks)
                ids[:, g] = i.to(self.device).view(N, per_group, n_chunks)
        ids = ids.reshape(N, H, n_chunks)  # [N, H, C] global ids, -1 = none
        found = ids >= 0
        slot = self._slots(ids.clamp(min=0))
        head_group = (torch.arange(H, device=self.device) // per_group).view(1, H, 1)  # [1, H, 1] kv head of each query head
        if self._count:
            keys = self._k[head_group, slot]  # [N, H, C, c, D]
            values = self._v[head_group, slot]
            mask = self._mask[slot] & found[..., None]  # [N, H, C, c]
        else:
            keys = torch.zeros(N, H, n_chunks, c, D, dtype=STORAGE_DTYPE, device=self.device)
            values = torch.zeros_like(keys)
            mask = torch.zeros(N, H, n_chunks, c, dtype=torch.bool, device=self.device)
        K = n_chunks * c
        return MemoryHits(keys=keys.reshape(N, H, K, D), values=values.reshape(N, H, K, D),
                          mask=mask.reshape(N, H, K), chunk_ids=ids, scores=scores.reshape(N, H, n_chunks))

    def chunk_info(self, chunk_id: int) -> ChunkInfo:
        """Where chunk ``chunk_id`` came from and its exact text."""
        chunk_id = int(chunk_id)
        if not self.first_id <= chunk_id < self.first_id + self._count:
            raise KeyError(f"chunk {chunk_id} is not in memory (stored ids {self.first_id}..{self.first_id + self._count - 1})")
        s = self._slots(chunk_id)
        src = int(self._source[s])
        name, text = (self.sources[src]["name"], self.sources[src]["text"]) if src >= 0 else ("", "")
        cs, ce = (int(x) for x in self._chr[s])
        ts, te = (int(x) for x in self._tok[s])
        return ChunkInfo(chunk_id=chunk_id, source=name, token_start=ts, token_end=te,
                         char_start=cs, char_end=ce, text=text[cs:ce] if cs >= 0 else "")

    def chunk_keys(self) -> np.ndarray:
        """Mean key of every stored chunk per kv head, oldest first, [G, Nc, D] float32 (what the index searches)."""
        out = np.empty((self.n_kv_heads, self._count, self.head_dim), dtype=np.float32)
        for b in range(0, self._count, 65_536):  # in blocks: a float32 copy of all keys would be 2x their size
            ids = np.arange(self.first_id + b, self.first_id + min(self._count, b + 65_536))
            sl = torch.from_numpy(self._slots(ids)).to(self.device)
            out[:, b:b + len(ids)] = chunk_means(self._k[:, sl], self._mask[sl]).cpu().numpy()
        return out

    @property
    def chunk_ids(self) -> np.ndarray:
        """Global ids of the stored chunks, oldest first, [Nc]."""
        return np.arange(self.first_id, self.first_id + self._count)

    def nbytes(self) -> int:
        """RAM held by the bank: allocated key/value/mask slots, metadata, and the search structure."""
        tensors = sum(t.numel() * t.element_size() for t in (self._k, self._v, self._mask))
        meta = self._source.nbytes + self._tok.nbytes + self._chr.nbytes
        return tensors + meta + self.index.nbytes()

    def stored_bytes(self) -> int:
        """Bytes of what is stored (keys, values and mask of the stored chunks, their metadata, the index),
        without the free slots allocated ahead."""
        per_chunk = 2 * self.n_kv_heads * self.chunk_size * self.head_dim * 2 + self.chunk_size + 5 * 8
        return self._count * per_chunk + self.index.nbytes()

    def stats(self) -> dict:
        """Size and use, for display."""
        per_source: dict[str, int] = {}
        for s, n in zip(*np.unique(self.chunk_source, return_counts=True)):
            name = self.sources[s]["name"] if s >= 0 else ""
            per_source[name] = per_source.get(name, 0) + int(n)
        return {"tokens": len(self), "chunks": self.n_chunks, "capacity": self.capacity,
                "used": self.n_chunks * self.chunk_size / self.capacity, "sources": per_source,
                "bytes": self.stored_bytes(), "index": self.index.kind}

    # -- persistence --

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the bank to ``directory`` atomically (safetensors + one faiss file per kv head + JSON)."""
        import faiss
        from safetensors.torch import save_file
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            save_file({"keys": self.keys.cpu().contiguous(), "values": self.values.cpu().contiguous(),
                       "token_mask": self.token_mask.cpu().contiguous(),
                       "chunk_source": torch.from_numpy(self.chunk_source.copy()),
                       "chunk_tokens": torch.from_numpy(self.chunk_tokens.copy()),
                       "chunk_chars": torch.from_numpy(self.chunk_chars.copy())}, tmp / "tensors.safetensors")
            for g in range(self.n_kv_heads):
                faiss.write_index(self.index.to_faiss(g), str(tmp / f"index_{g}.faiss"))
            meta = {"format": FORMAT_VERSION, "n_kv_heads": self.n_kv_heads, "head_dim": self.head_dim,
                    "chunk_size": self.chunk_size, "capacity": self.capacity, "index": self.index_kind,
                    "nprobe": self.nprobe, "backbone": self.backbone, "memory_layer": self.memory_layer,
                    "first_id": self.first_id, "sources": self.sources}
            (tmp / "meta.json").write_text(json.dumps(meta))
            if directory.exists():
                old = directory.with_name(f".{directory.name}.old{os.getpid()}")
                directory.rename(old)
                tmp.rename(directory)
                shutil.rmtree(old, ignore_errors=True)
            else:
                tmp.rename(directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike, device: torch.device | str = "cpu") -> "MemoryBank":
        """Read a bank written by ``save`` (onto ``device``)."""
        import faiss
        from safetensors.torch import load_file
        directory = Path(directory)
        meta_path = directory / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{directory} is not a memory bank (no meta.json)")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"{directory}: unsupported memory bank format {meta.get('format')!r}")
        bank = cls(n_kv_heads=meta["n_kv_heads"], head_dim=meta["head_dim"], chunk_size=meta["chunk_size"],
                   capacity=meta["capacity"], index=meta["index"], backbone=meta["backbone"],
                   memory_layer=meta["memory_layer"], device=device)
        bank.nprobe = meta.get("nprobe")
        t = load_file(directory / "tensors.safetensors")
        n = t["token_mask"].shape[0]
        bank.first_id, bank.sources = meta["first_id"], meta["sources"]
        bank._grow(bank.first_id + n)
        sl = bank._slots(np.arange(bank.first_id, bank.first_id + n))
        ts = torch.from_numpy(sl).to(bank.device)
        bank._k[:, ts], bank._v[:, ts] = t["keys"].to(bank.device), t["values"].to(bank.device)
        bank._mask[ts] = t["token_mask"].to(bank.device)
        bank._source[sl], bank._tok[sl], bank._chr[sl] = (
            t["chunk_source"].numpy(), t["chunk_tokens"].numpy(), t["chunk_chars"].numpy())
        bank._count, bank._tokens = n, int(t["token_mask"].sum())
        heads = [faiss.read_index(str(directory / f"index_{g}.faiss")) for g in range(bank.n_kv_heads)]
        if any(index.ntotal != n for index in heads):
            raise ValueError(f"{directory}: index sizes do not match the stored chunks (corrupt bank)")
        if isinstance(heads[0], faiss.IndexIVF):
            bank.index = IVFIndex.from_faiss(heads)
            if bank.nprobe:
                bank.index.nprobe = bank.nprobe
        elif bank.device.type == "cpu":
            bank.index = FlatIndex.from_faiss(heads)
        else:
            bank.rebuild_index(approximate=False)
        return bank
