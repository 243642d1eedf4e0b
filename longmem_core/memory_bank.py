"""The memory bank: past keys/values of one memory layer, in chunks, searched per kv head.

Shape legend: T tokens added, N query vectors, H query heads, G kv heads, D head dim, c chunk size,
Nc chunks stored, C chunks retrieved per query, K = C * c tokens retrieved per query.

Tokens are grouped into chunks of ``chunk_size``; every chunk is represented per kv head by the mean of its
keys in one faiss inner-product index per kv head (exact ``IndexFlatIP``, as the paper's code). A query of
head h searches the index of its kv head h // (H / G) and gets the C best chunks, flattened back into their
K token keys/values (token-to-chunk retrieval). Beyond ``capacity`` tokens the oldest chunks are evicted.
Every chunk remembers its source, token span and character span, so it can be shown as the exact text.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

FORMAT_VERSION = 1
STORAGE_DTYPE = torch.float16  # keys/values are kept in 16 bits


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


@dataclass
class ChunkInfo:
    chunk_id: int
    source: str
    token_start: int  # token span in the source's token stream, [start, end)
    token_end: int
    char_start: int  # character span in the source text, [start, end)
    char_end: int
    text: str


def make_index(kind: str, dim: int):
    """The faiss index behind each kv head (one factory, so the index type is a visible choice)."""
    import faiss
    if kind == "flat":
        return faiss.IndexFlatIP(dim)  # exact inner product, no training
    raise ValueError(f"index kind {kind!r} is not implemented; use 'flat'")


class MemoryBank:
    """Chunked key/value memory for one caller (one user session, one document stream). Nothing is global."""

    def __init__(self, *, n_kv_heads: int, head_dim: int, chunk_size: int = 4, capacity: int = 65_536,
                 index: str = "flat", backbone: str = "", memory_layer: int = -1) -> None:
        if capacity < chunk_size:
            raise ValueError(f"capacity ({capacity}) must hold at least one chunk of {chunk_size} tokens")
        self.n_kv_heads, self.head_dim, self.chunk_size = n_kv_heads, head_dim, chunk_size
        self.capacity, self.index_kind = capacity, index
        self.backbone, self.memory_layer = backbone, memory_layer  # who wrote it (checked by the model)
        self.sources: list[dict] = []  # {"name", "text"} per source, in order of addition
        self.reset()

    # -- state --

    def reset(self) -> None:
        """Forget everything (sources too)."""
        G, D, c = self.n_kv_heads, self.head_dim, self.chunk_size
        self.keys = torch.empty(G, 0, c, D, dtype=STORAGE_DTYPE)  # [G, Nc, c, D]
        self.values = torch.empty(G, 0, c, D, dtype=STORAGE_DTYPE)  # [G, Nc, c, D]
        self.token_mask = torch.empty(0, c, dtype=torch.bool)  # [Nc, c] False for padding in a last, partial chunk
        self.chunk_source = np.empty(0, dtype=np.int64)  # [Nc] index into self.sources
        self.chunk_tokens = np.empty((0, 2), dtype=np.int64)  # [Nc, 2] token span in its source
        self.chunk_chars = np.empty((0, 2), dtype=np.int64)  # [Nc, 2] character span in its source text
        self.first_id = 0  # global id of the oldest stored chunk; ids are contiguous (FIFO)
        self.indexes = [make_index(self.index_kind, self.head_dim) for _ in range(G)]
        self.sources = []

    def __len__(self) -> int:
        """Tokens stored."""
        return int(self.token_mask.sum())

    @property
    def n_chunks(self) -> int:
        return self.token_mask.shape[0]

    @property
    def max_chunks(self) -> int:
        return self.capacity // self.chunk_size

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
        k = torch.nn.functional.pad(keys.detach().float(), (0, 0, 0, 0, 0, pad))  # [n_new * c, G, D]
        v = torch.nn.functional.pad(values.detach().float(), (0, 0, 0, 0, 0, pad))
        k = k.view(n_new, c, G, D).permute(2, 0, 1, 3)  # [G, n_new, c, D]
        v = v.view(n_new, c, G, D).permute(2, 0, 1, 3)
        tmask = (torch.arange(n_new * c) < T).view(n_new, c)  # [n_new, c]
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
            self.first_id += drop
            k, v, tmask, tok, chars = k[:, drop:], v[:, drop:], tmask[drop:], tok[drop:], chars[drop:]
            n_new -= drop
        self._evict(self.n_chunks + n_new - self.max_chunks)
        k16 = k.to(STORAGE_DTYPE)
        means = (k16.float() * tmask[None, :, :, None]).sum(2) / tmask.sum(1)[None, :, None]  # [G, n_new, D]
        for g, index in enumerate(self.indexes):
            index.add(np.ascontiguousarray(means[g].numpy(), dtype=np.float32))
        self.keys = torch.cat([self.keys, k16], dim=1)
        self.values = torch.cat([self.values, v.to(STORAGE_DTYPE)], dim=1)
        self.token_mask = torch.cat([self.token_mask, tmask], dim=0)
        self.chunk_source = np.concatenate([self.chunk_source, np.full(n_new, source, dtype=np.int64)])
        self.chunk_tokens = np.concatenate([self.chunk_tokens, tok])
        self.chunk_chars = np.concatenate([self.chunk_chars, chars])
        return n_new

    def _evict(self, n: int) -> None:
        """Drop the n oldest chunks (FIFO)."""
        if n <= 0:
            return
        import faiss
        n = min(n, self.n_chunks)
        for index in self.indexes:
            index.remove_ids(faiss.IDSelectorRange(0, n))  # flat index ids are positions: survivors shift to 0..
        self.keys, self.values = self.keys[:, n:].clone(), self.values[:, n:].clone()
        self.token_mask = self.token_mask[n:].clone()
        self.chunk_source, self.chunk_tokens, self.chunk_chars = (
            self.chunk_source[n:], self.chunk_tokens[n:], self.chunk_chars[n:])
        self.first_id += n

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
        q = queries.detach().float().reshape(N, G, per_group, D)  # [N, G, H/G, D]
        scores = np.full((N, G, per_group, n_chunks), -np.inf, dtype=np.float32)
        ids = np.full((N, G, per_group, n_chunks), -1, dtype=np.int64)
        if self.n_chunks:
            for g, index in enumerate(self.indexes):
                s, i = index.search(np.ascontiguousarray(q[:, g].reshape(-1, D).numpy()), n_chunks)  # [N*H/G, C]
                scores[:, g], ids[:, g] = s.reshape(N, per_group, n_chunks), i.reshape(N, per_group, n_chunks)
        pos = torch.from_numpy(ids.reshape(N, H, n_chunks))  # [N, H, C] positions in storage, -1 = none
        found = pos >= 0
        pos_safe = pos.clamp(min=0)
        if self.n_chunks:
            head_group = (torch.arange(H) // per_group).view(1, H, 1)  # [1, H, 1] kv head of each query head
            keys = self.keys[head_group, pos_safe]  # [N, H, C, c, D]
            values = self.values[head_group, pos_safe]
            mask = self.token_mask[pos_safe] & found[..., None]  # [N, H, C, c]
        else:
            keys = torch.zeros(N, H, n_chunks, c, D, dtype=STORAGE_DTYPE)
            values = torch.zeros_like(keys)
            mask = torch.zeros(N, H, n_chunks, c, dtype=torch.bool)
        K = n_chunks * c
        chunk_ids = torch.where(found, pos + self.first_id, torch.full_like(pos, -1))
        return MemoryHits(keys=keys.reshape(N, H, K, D), values=values.reshape(N, H, K, D),
                          mask=mask.reshape(N, H, K), chunk_ids=chunk_ids,
                          scores=torch.from_numpy(scores.reshape(N, H, n_chunks)))

    def chunk_info(self, chunk_id: int) -> ChunkInfo:
        """Where chunk ``chunk_id`` came from and its exact text."""
        pos = int(chunk_id) - self.first_id
        if not 0 <= pos < self.n_chunks:
            raise KeyError(f"chunk {chunk_id} is not in memory (stored ids {self.first_id}..{self.first_id + self.n_chunks - 1})")
        src = int(self.chunk_source[pos])
        name, text = (self.sources[src]["name"], self.sources[src]["text"]) if src >= 0 else ("", "")
        cs, ce = (int(x) for x in self.chunk_chars[pos])
        ts, te = (int(x) for x in self.chunk_tokens[pos])
        return ChunkInfo(chunk_id=int(chunk_id), source=name, token_start=ts, token_end=te,
                         char_start=cs, char_end=ce, text=text[cs:ce] if cs >= 0 else "")

    def chunk_keys(self) -> np.ndarray:
        """Mean key of every stored chunk per kv head, [G, Nc, D] float32 (what the indexes search)."""
        m = self.token_mask[None, :, :, None]
        return ((self.keys.float() * m).sum(2) / m.sum(2).clamp(min=1)).numpy()

    @property
    def chunk_ids(self) -> np.ndarray:
        """Global ids of the stored chunks, oldest first, [Nc]."""
        return np.arange(self.first_id, self.first_id + self.n_chunks)

    def stats(self) -> dict:
        """Size and use, for display."""
        per_source: dict[str, int] = {}
        for s in self.chunk_source:
            name = self.sources[s]["name"] if s >= 0 else ""
            per_source[name] = per_source.get(name, 0) + 1
        return {"tokens": len(self), "chunks": self.n_chunks, "capacity": self.capacity,
                "used": self.n_chunks * self.chunk_size / self.capacity, "sources": per_source,
                "bytes": 2 * self.keys.numel() * self.keys.element_size()}

    # -- persistence --

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the bank to ``directory`` atomically (safetensors + one faiss file per kv head + JSON)."""
        import faiss
        from safetensors.torch import save_file
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            save_file({"keys": self.keys.contiguous(), "values": self.values.contiguous(),
                       "token_mask": self.token_mask.contiguous(),
                       "chunk_source": torch.from_numpy(self.chunk_source.copy()),
                       "chunk_tokens": torch.from_numpy(self.chunk_tokens.copy()),
                       "chunk_chars": torch.from_numpy(self.chunk_chars.copy())}, tmp / "tensors.safetensors")
            for g, index in enumerate(self.indexes):
                faiss.write_index(index, str(tmp / f"index_{g}.faiss"))
            meta = {"format": FORMAT_VERSION, "n_kv_heads": self.n_kv_heads, "head_dim": self.head_dim,
                    "chunk_size": self.chunk_size, "capacity": self.capacity, "index": self.index_kind,
                    "backbone": self.backbone, "memory_layer": self.memory_layer, "first_id": self.first_id,
                    "sources": self.sources}
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
    def load(cls, directory: str | os.PathLike) -> "MemoryBank":
        """Read a bank written by ``save``."""
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
                   memory_layer=meta["memory_layer"])
        t = load_file(directory / "tensors.safetensors")
        bank.keys, bank.values, bank.token_mask = t["keys"], t["values"], t["token_mask"]
        bank.chunk_source, bank.chunk_tokens, bank.chunk_chars = (
            t["chunk_source"].numpy(), t["chunk_tokens"].numpy(), t["chunk_chars"].numpy())
        bank.indexes = [faiss.read_index(str(directory / f"index_{g}.faiss")) for g in range(bank.n_kv_heads)]
        bank.first_id, bank.sources = meta["first_id"], meta["sources"]
        if any(index.ntotal != bank.n_chunks for index in bank.indexes):
            raise ValueError(f"{directory}: index sizes do not match the stored chunks (corrupt bank)")
        return bank
