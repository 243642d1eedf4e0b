"""The memory bank: past keys/values of one memory layer, in chunks, searched per kv head.

Shape legend: T tokens added, N query vectors, H query heads, G kv heads, D head dim, c chunk size,
Nc chunks stored, A chunk slots allocated, C chunks retrieved per query, K = C * c tokens retrieved per query.

Tokens are grouped into chunks of ``chunk_size``; every chunk is represented per kv head by the mean of its
keys. A query of head h searches the chunk means of its kv head h // (H / G) and gets the C best chunks,
flattened back into their K token keys/values (token-to-chunk retrieval). Beyond ``capacity`` tokens the
oldest chunks are evicted (FIFO). Every chunk remembers its source, token span and character span, so it can
be shown as the exact text (and, for a PDF, its page).

Storage is a ring buffer: chunk ``id`` lives in slot ``(id - base) % max_chunks`` (``base`` is the id of the
first chunk the storage was laid out for: 0 for a new bank, the oldest stored chunk for a loaded one); slots are
allocated by doubling up to ``max_chunks``, so adding is amortised O(tokens added) and eviction moves nothing.
The search structure is a ``FlatIndex`` or an ``IVFIndex`` (``index.py``), chosen by the bank's index kind.
Saving and loading (with the checks of a bank read from disk) live in ``bank_files.py``. (Over 400 lines: storage,
writing, search and reading of one ring buffer are one concept; splitting them would split its invariants.)
"""
from __future__ import annotations

import bisect
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import INDEX_KINDS, check_capacity, check_index_kind  # noqa: F401 (INDEX_KINDS re-exported)
from . import bank_files, settings
from .index import ChunkIndex, FlatIndex, IVFIndex, approximate_from, default_nprobe, ivf_lists

STORAGE_DTYPE = torch.float16  # keys/values are kept in 16 bits
MEANS_BLOCK = 256  # chunks whose float32 means are computed at once (rebuilding an index)


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
    page: int | None = None  # 1-based page of the chunk's first character (a PDF source), else None
    page_label: str | None = None  # the label printed on that page ("iv", "38"), else None


def chunk_means(keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean key of each chunk over its real tokens: keys [G, n, c, D], mask [n, c] -> [G, n, D] float32
    (what the search structures hold)."""
    m = mask[None, :, :, None]
    return (keys.float() * m).sum(2) / m.sum(2).clamp(min=1)


def page_of(pages: list[int] | None, char: int) -> int | None:
    """1-based page holding character ``char`` of a text whose pages start at offsets ``pages`` (None: unknown)."""
    if not pages or char < 0:
        return None
    return max(1, bisect.bisect_right(pages, char))


def label_of(source: dict, page: int | None) -> str | None:
    """The printed label of 1-based ``page`` of ``source`` (its number where the source has no labels)."""
    if page is None:
        return None
    labels = source.get("page_labels")
    return labels[page - 1] if labels and page <= len(labels) else str(page)


class MemoryBank:
    """Chunked key/value memory for one caller (one user session, one document stream). Nothing is global."""

    def __init__(self, *, n_kv_heads: int, head_dim: int, chunk_size: int = 4, capacity: int = 65_536,
                 index: str = "auto", backbone: str = "", memory_layer: int = -1,
                 device: torch.device | str = "cpu") -> None:
        check_capacity(capacity, chunk_size)
        check_index_kind(index)
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
        self._base = 0  # the id stored in slot 0 before the ring first wraps (see _slots)
        self._count = 0  # chunks stored
        self._tokens = 0  # tokens stored (a partial chunk counts its real tokens)
        self.index: ChunkIndex = self._exact_index()
        self.sources: list[dict] = []  # {"name", "text"[, "pages", "page_labels"]} per source, in order of addition

    def _allocate(self, slots: int) -> None:
        """Fresh, empty storage of ``slots`` chunk slots."""
        G, D, c = self.n_kv_heads, self.head_dim, self.chunk_size
        # Keys and values start uninitialized: only stored slots are ever read (a stored chunk's padding is
        # written as zeros by add), so zero-filling each fresh, larger tensor when the bank grows is wasted work.
        self._k = torch.empty(G, slots, c, D, dtype=STORAGE_DTYPE, device=self.device)  # [G, A, c, D]
        self._v = torch.empty(G, slots, c, D, dtype=STORAGE_DTYPE, device=self.device)  # [G, A, c, D]
        self._mask = torch.zeros(slots, c, dtype=torch.bool, device=self.device)  # [A, c] False: padding
        self._source = np.full(slots, -1, dtype=np.int64)  # [A] index into self.sources
        self._tok = np.zeros((slots, 2), dtype=np.int64)  # [A, 2] token span in its source
        self._chr = np.full((slots, 2), -1, dtype=np.int64)  # [A, 2] character span in its source text

    def _grow(self, end_id: int, exact: bool = False) -> None:
        """Make room for ids up to ``end_id`` (exclusive): doubling (``exact``: just that), up to max_chunks slots
        (then a ring)."""
        A = self._k.shape[1]
        need = min(self.max_chunks, end_id - self._base)
        if need <= A:
            return
        new = need if exact else min(self.max_chunks, max(need, 2 * A, 256))
        old = (self._k, self._v, self._mask, self._source, self._tok, self._chr)
        self._allocate(new)  # before the ring first wraps, slot = id - base, so the old slots copy over as they are
        self._k[:, :A], self._v[:, :A], self._mask[:A] = old[0], old[1], old[2]
        self._source[:A], self._tok[:A], self._chr[:A] = old[3], old[4], old[5]

    def reserve(self, tokens: int) -> None:
        """Room for ``tokens`` more tokens (up to the capacity), allocated once at that size: a caller that knows
        how much it will read (the app, before reading a long PDF) spares the bank doubling's spare slots and
        copies. Adding beyond it grows by doubling as usual."""
        self._grow(self.first_id + self._count + -(-max(0, int(tokens)) // self.chunk_size), exact=True)

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
        return (ids - self._base) % self.max_chunks

    def _ordered_slots(self) -> np.ndarray | slice:
        """Slots of the stored chunks, oldest first (a slice while they do not wrap around)."""
        start = int(self._slots(self.first_id))
        if start + self._count <= self._k.shape[1]:
            return slice(start, start + self._count)
        return self._slots(np.arange(self.first_id, self.first_id + self._count))

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
        """The faiss index of each kv head."""
        return [self.index.to_faiss(g) for g in range(self.n_kv_heads)]

    @property
    def version(self) -> tuple[int, int, int]:
        """Changes whenever what the bank holds changes (a new source, an eviction, new chunks): (sources, oldest
        chunk id, chunks). Whatever is derived from a bank and kept beside it is stale once this differs."""
        return len(self.sources), self.first_id, self.n_chunks

    def add_source(self, name: str, text: str, pages: list[int] | None = None,
                   page_labels: list[str] | None = None) -> int:
        """Register a source document; returns its index for ``add``. ``pages``: the character offset where each
        page starts in ``text`` (a PDF), increasing from 0; None when the text has no pages. ``page_labels``: the
        label printed on each page (one per page)."""
        source = {"name": name, "text": text}
        if pages is not None:
            pages = [int(p) for p in pages]
            if not pages or pages[0] != 0 or any(b < a for a, b in zip(pages, pages[1:])) or pages[-1] > len(text):
                raise ValueError(f"pages must be increasing character offsets from 0 within the text, got {pages[:8]}")
            source["pages"] = pages
            if page_labels is not None:
                if len(page_labels) != len(pages) or not all(isinstance(x, str) for x in page_labels):
                    raise ValueError(f"page_labels must be one string per page ({len(pages)}), got {len(page_labels)}")
                source["page_labels"] = list(page_labels)
        self.sources.append(source)
        return len(self.sources) - 1

    # -- writing --

    def add(self, keys: torch.Tensor, values: torch.Tensor, *, source: int = -1, token_start: int = 0,
            char_spans: torch.Tensor | np.ndarray | None = None) -> int:
        """Append T consecutive tokens of one source.

        keys, values: [T, G, D] (the memory layer's keys before rotation, and values)
        token_start: position of the first of these tokens in the source's token stream
        char_spans: [T, 2] character span of each token in the source text (optional; a chunk spans from its
            first token's start to its last token's end, which must lie within the source text)
        Returns the number of chunks added. A last partial chunk is padded and masked.
        """
        T, G, D = keys.shape
        if (G, D) != (self.n_kv_heads, self.head_dim) or values.shape != keys.shape:
            raise ValueError(f"keys/values must be [T, {self.n_kv_heads}, {self.head_dim}], "
                             f"got {tuple(keys.shape)} and {tuple(values.shape)}")
        if not -1 <= source < len(self.sources) or token_start < 0:
            raise ValueError(f"source must be -1 or one of the {len(self.sources)} sources and token_start >= 0, "
                             f"got {source} and {token_start}")
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
            limit = len(self.sources[source]["text"]) if source >= 0 else np.iinfo(np.int64).max
            if not ((0 <= chars[:, 0]) & (chars[:, 0] <= chars[:, 1]) & (chars[:, 1] <= limit)).all():
                raise ValueError("char_spans must give every chunk a character span within its source text")
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
        evicted = {int(s) for s in np.unique(self._source[sl])} - {-1}
        self._source[sl] = -1
        self.first_id += n
        self._count -= n
        self._forget_texts(evicted)

    def _forget_texts(self, candidates: set[int]) -> None:
        """Drop the text of sources none of whose chunks is left (the name stays, so indices keep their meaning):
        evicted text is not memory any more, and a long-running bank must not keep every document it ever read."""
        left = {int(s) for s in np.unique(self.chunk_source)} if self._count else set()
        for s in candidates - left:
            self.sources[s] = {"name": self.sources[s]["name"], "text": ""}

    # -- the search structure --

    def _exact_index(self) -> FlatIndex:
        """An empty exact index: faiss on a CPU, a torch ring on another device. Chunks of one token on a CPU get
        a float16 torch ring: their means are their float16 keys, so float16 loses nothing, and a float32 copy
        would cost as much as the keys themselves (the bank would hold twice its file's size)."""
        if self.chunk_size == 1 and self.device.type == "cpu":
            return FlatIndex(self.n_kv_heads, self.head_dim, self.device, use_faiss=False, dtype=STORAGE_DTYPE,
                             limit=self.max_chunks)
        return FlatIndex(self.n_kv_heads, self.head_dim, self.device, limit=self.max_chunks)

    @property
    def _fp16_lists(self) -> bool:
        """An IVF index keeps float16 vectors for chunks of one token (exact: their means are float16 keys)."""
        return self.chunk_size == 1

    def _maybe_switch_index(self) -> None:
        """Move from exact to IVF search once the bank is big enough, and re-cluster an IVF index after growth."""
        if self._count < approximate_from(self.index_kind, self.max_chunks, self.device):
            return
        if isinstance(self.index, IVFIndex) and self._count < settings.INDEX.ivf_retrain_growth * self.index.trained_on:
            return
        self.rebuild_index(approximate=True)

    def rebuild_index(self, approximate: bool, centroids: torch.Tensor | None = None,
                      lists: torch.Tensor | None = None) -> None:
        """Rebuild the search structure from the stored keys: exact, or IVF (trained on the stored chunks, or
        around given ``centroids`` [G, nlist, D] float32, with ``lists`` [G, Nc] the inverted list of each chunk)."""
        if centroids is not None:
            index: ChunkIndex = IVFIndex.from_centroids(centroids, self._count, self.nprobe, self._fp16_lists)
        elif approximate:  # k-means on an even sample of the chunks (what faiss would sample itself), then every
            tuned = settings.INDEX
            nlist = min(ivf_lists(self.max_chunks), max(1, self._count // tuned.ivf_points_per_list))  # chunk by block
            sample = np.unique(np.linspace(0, self._count - 1, min(self._count, nlist * tuned.ivf_train_points_per_list))
                               .astype(np.int64)) if self._count else np.zeros(0, np.int64)
            train = self._means_at(sample) if self._count else torch.empty(self.n_kv_heads, 0, self.head_dim)
            index = IVFIndex(train, nlist, self.nprobe, self._fp16_lists, trained_on=self._count)
        else:
            index = self._exact_index()
        if isinstance(index, FlatIndex) and not index.on_cpu:  # block by block: no float32 means of every chunk
            for b in range(0, self._count, MEANS_BLOCK):
                index.add(self._block_means(b, min(self._count, b + MEANS_BLOCK)), self.first_id + b)
        elif isinstance(index, IVFIndex):  # head by head, block by block, into lists sized once
            for g in range(self.n_kv_heads):
                head = slice(g, g + 1)
                blocks = range(0, self._count, MEANS_BLOCK)
                owned = lists[g] if lists is not None else torch.cat(  # [Nc] the list of each chunk
                    [index.lists_of(g, self._block_means(b, min(self._count, b + MEANS_BLOCK), head)[0]) for b in blocks]
                    or [torch.zeros(0, dtype=torch.long)])
                index.reserve(g, owned)
                for b in blocks:
                    end = min(self._count, b + MEANS_BLOCK)
                    index.add_head(g, self._block_means(b, end, head)[0], self.first_id + b, owned[b:end])
        elif self._count:  # faiss flat: one kv head at a time, in one add (its storage is then sized exactly); the
            for g in range(self.n_kv_heads):  # float32 means of every head at once would cost as much as the index
                index.add_head(g, torch.from_numpy(self.chunk_keys(g)), self.first_id)
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
        slot = self._slots(torch.where(found, ids, self.first_id))  # [N, H, C]; none found: any stored slot (masked)
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
        source = self.sources[src] if src >= 0 else {"name": "", "text": ""}
        cs, ce = (int(x) for x in self._chr[s])
        ts, te = (int(x) for x in self._tok[s])
        return ChunkInfo(chunk_id=chunk_id, source=source["name"], token_start=ts, token_end=te,
                         char_start=cs, char_end=ce, text=source["text"][cs:ce] if cs >= 0 else "",
                         page=(page := page_of(source.get("pages"), cs)), page_label=label_of(source, page))

    def chunk_keys(self, head: int | None = None) -> np.ndarray:
        """Mean key of every stored chunk, oldest first (what the index searches): per kv head [G, Nc, D] float32,
        or [Nc, D] of kv head ``head`` alone."""
        heads = slice(None) if head is None else slice(head, head + 1)
        out = np.empty((self._k[heads].shape[0], self._count, self.head_dim), dtype=np.float32)
        for b in range(0, self._count, MEANS_BLOCK):  # in small blocks: the float32 temporaries of all keys would
            end = min(self._count, b + MEANS_BLOCK)   # be 4x their size
            out[:, b:end] = self._block_means(b, end, heads).cpu().numpy()
        return out if head is None else out[0]

    def _block_means(self, begin: int, end: int, heads: slice = slice(None)) -> torch.Tensor:
        """[G, end - begin, D] float32 mean keys of the stored chunks begin..end-1 (0: the oldest)."""
        return self._means_at(np.arange(begin, end), heads)

    def _means_at(self, positions: np.ndarray, heads: slice = slice(None)) -> torch.Tensor:
        """[G, len(positions), D] float32 mean keys of the stored chunks at these positions (0: the oldest)."""
        sl = torch.from_numpy(self._slots(self.first_id + positions)).to(self.device)
        return chunk_means(self._k[heads][:, sl], self._mask[sl])

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

    # -- persistence (bank_files.py) --

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the bank to ``directory``, replacing what is there in one atomic step (see ``bank_files.save``)."""
        return bank_files.save(self, directory)

    @classmethod
    def load(cls, directory: str | os.PathLike, device: torch.device | str = "cpu", *,
             documents: bool = True) -> "MemoryBank":
        """A new bank read from ``directory`` (onto ``device``), checked whole before anything is allocated for
        it; BankFileError (a ValueError) names what is wrong (see ``bank_files.read``). ``documents``: every chunk
        must name one of the bank's sources (what answering and the app need); False for a bank of bare keys."""
        contents = bank_files.read(directory, documents=documents)
        try:
            return cls.adopt(**contents, device=device)
        except RuntimeError as exc:  # faiss refusing the centroids
            raise bank_files.BankFileError(f"{bank_files.shown_name(directory)}: the search index cannot be rebuilt "
                                           f"({str(exc).splitlines()[0]})") from exc

    @classmethod
    def adopt(cls, *, keys: torch.Tensor, values: torch.Tensor, token_mask: torch.Tensor, chunk_source: np.ndarray,
              chunk_tokens: np.ndarray, chunk_chars: np.ndarray, first_id: int, sources: list[dict],
              capacity: int, index: str = "auto", nprobe: int | None = None, backbone: str = "",
              memory_layer: int = -1, centroids: torch.Tensor | None = None, lists: torch.Tensor | None = None,
              device: torch.device | str = "cpu") -> "MemoryBank":
        """A bank that takes over already-checked arrays of n stored chunks, oldest first, as its storage (no copy
        on the CPU): keys/values [G, n, c, D] float16, token_mask [n, c] bool, chunk_source [n], chunk_tokens
        [n, 2], chunk_chars [n, 2] int64. The search structure is rebuilt from the keys (IVF around
        ``centroids`` [G, nlist, D] when given, with ``lists`` [G, n] the inverted list of each chunk). Callers
        check consistency first (``bank_files.read`` does)."""
        G, n, c, D = keys.shape
        bank = cls(n_kv_heads=G, head_dim=D, chunk_size=c, capacity=capacity, index=index, backbone=backbone,
                   memory_layer=memory_layer, device=device)
        bank.nprobe = nprobe
        bank._k, bank._v = keys.to(bank.device), values.to(bank.device)  # [G, n, c, D]: slot = id - first_id
        bank._mask = token_mask.to(bank.device)
        bank._source, bank._tok, bank._chr = chunk_source, chunk_tokens, chunk_chars
        bank.first_id = bank._base = first_id
        bank.sources = sources
        bank._count, bank._tokens = n, int(token_mask.sum())
        if centroids is not None and bank.device.type == "cpu":
            bank.rebuild_index(approximate=True, centroids=centroids, lists=lists)
        else:  # what the bank's policy holds for n chunks (never an exact index built only to be replaced)
            bank.rebuild_index(approximate=n >= approximate_from(bank.index_kind, bank.max_chunks, bank.device))
        return bank
