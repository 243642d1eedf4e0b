"""The LongMem model: a frozen backbone, a memory bank it writes, and a SideNet that reads it.

This module builds the model, reads text into memory and runs the forward pass (with the two-thread decode
step). Generation (``generation.py``), scoring (``scoring.py``), checkpoints (``checkpoint.py``), prompts
(``prompts.py``) and caches (``kv_cache.py``) live in their own modules; ``LongMemModel`` keeps one method per
use, each delegating there. Shapes follow ``shapes.py`` (B batch, T tokens, V vocabulary, G kv heads, D head dim).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from . import checkpoint as checkpoints
from . import generation, scoring, search
from .backbone import FrozenBackbone, load_backbone
from .checkpoint import CHECKPOINT_FORMAT, CheckpointMismatchError, read_checkpoint_meta  # noqa: F401 (public here)
from ..config import LongMemConfig
from .decode_schedule import DecodeSchedule
from .generation import Generation, sample_token  # noqa: F401 (public here)
from .kv_cache import KVCache, ModelCaches  # noqa: F401 (public here)
from ..memory.memory_bank import BankMismatchError, MemoryBank
from ..precision import computing_in, memorize_dtype
from .prompts import chat_prompt, sink_token_id
from .retrieved import Retrieved  # noqa: F401 (public here)
from .scoring import PromptCache
from .side_network import RetrievalTrace, SideNetwork
from .threads import HiddenStream, default_workers, ordered_map, side_thread, single_threaded_ops

Progress = Callable[[int, int], None]  # (tokens done, tokens total)


@dataclass
class LongMemOutput:
    logits: torch.Tensor  # [B, T, V]
    trace: RetrievalTrace | None = None
    memory_keys: torch.Tensor | None = None  # [B, T, G, D] this input's memory-layer keys (before rotation)
    memory_values: torch.Tensor | None = None  # [B, T, G, D], ready to be written to a bank after reading
    hidden: torch.Tensor | None = None  # [B, T, W] the final hidden states (before the final norm and LM head)


@dataclass
class MemorizeStats:
    tokens: int
    chunks: int
    seconds: float


class LongMemModel(nn.Module):
    """The frozen backbone and its trainable SideNet, and every use of them: reading into memory, the forward pass
    and retrieval here; generation, scoring, checkpoints and prompts through their modules."""

    def __init__(self, cfg: LongMemConfig, backbone: FrozenBackbone | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = backbone if backbone is not None else load_backbone(cfg.backbone, seed=cfg.seed)
        self.side = SideNetwork(self.backbone, cfg)
        self.tokenizer = self.backbone.tokenizer
        self.memory_layer = self.side.memory_layer
        self._fingerprint = self.backbone.fingerprint()
        self.segment_length = min(cfg.segment_length, self.backbone.max_positions)  # tokens read at once
        self.checkpoint_path: str | None = None  # the checkpoint last loaded into the SideNet, if any
        self.loaded_parameter_names: set[str] = set()  # what a loaded checkpoint set: saved again even when frozen now
        self.decode_schedule = DecodeSchedule()  # SideNet beside the backbone or after it: measured, then kept

    # -- construction --

    @classmethod
    def load(cls, backbone: str | None = None, checkpoint: str | None = None, device: str | torch.device | None = None,
             **overrides) -> "LongMemModel":
        """A model from a checkpoint (its config, then its trained weights) or from a fresh config, on ``device``
        ("cpu" by default; "cuda" or "auto" = cuda where there is one: tensors and exact search stay on it)."""
        model = cls._build(backbone, checkpoint, **overrides)
        return model.to(resolve_device(device))

    @classmethod
    def _build(cls, backbone: str | None, checkpoint: str | None, **overrides) -> "LongMemModel":
        if checkpoint:
            cfg_dict = read_checkpoint_meta(checkpoint)["config"]
            checkpoints.check_backbone_name(checkpoint, cfg_dict["backbone"], backbone)
            model = cls(LongMemConfig.from_dict({**cfg_dict, **overrides}))
            model.load_checkpoint(checkpoint)
            return model
        return cls(LongMemConfig(**({"backbone": backbone} if backbone else {}), **overrides))

    @property
    def device(self) -> torch.device:
        return self.backbone.embed_tokens.weight.device

    @property
    def fingerprint(self) -> str:
        """The backbone's fingerprint (architecture and a digest of its weights): banks and checkpoints carry it."""
        return self._fingerprint

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.named_parameters() if p.requires_grad}

    # -- checkpoints (checkpoint.py) --

    def save_checkpoint(self, path: str | Path, note: str = "") -> Path:
        """Only the trained parameters (those training now and those a loaded checkpoint set, e.g. a frozen
        memory-query delta under a newly trained memory layer), in safetensors, with the config that built them."""
        return checkpoints.save_checkpoint(self, path, note)

    def load_checkpoint(self, path: str | Path) -> None:
        """Load a checkpoint's parameters into the SideNet (``CheckpointMismatchError`` for another backbone)."""
        self.loaded_parameter_names = checkpoints.load_checkpoint(self, path)
        self.checkpoint_path = str(path)

    def trained_parts(self) -> set[str]:
        """What the loaded checkpoint set: "search" (the memory-query delta), "memory_layer" (the memory side layer
        or the gates), "side_layers" (any other side layer or scale). Empty for an untrained SideNet."""
        return checkpoints.trained_parts(self.loaded_parameter_names, self.side.memory_index)

    # -- memory --

    def new_bank(self, capacity: int | None = None, chunk_size: int | None = None) -> MemoryBank:
        """An empty memory bank that fits this model."""
        bb = self.backbone
        return MemoryBank(n_kv_heads=bb.n_kv_heads, head_dim=bb.head_dim,
                          chunk_size=chunk_size or self.cfg.chunk_size, capacity=capacity or self.cfg.capacity,
                          index=self.cfg.index, backbone=self._fingerprint, memory_layer=self.memory_layer,
                          device=self.device)

    def check_bank(self, bank: MemoryBank) -> None:
        """Refuse a bank written by another backbone or memory layer."""
        if bank.backbone != self._fingerprint:
            raise BankMismatchError(f"this memory bank was written by another backbone ({bank.backbone or 'unknown'}), "
                                    f"not by {self.cfg.backbone} ({self._fingerprint})")
        if bank.memory_layer != self.memory_layer:
            raise BankMismatchError(f"this memory bank holds keys of block {bank.memory_layer}, "
                                    f"but the model's memory layer is block {self.memory_layer}")
        if self.cfg.top_k % bank.chunk_size:
            raise BankMismatchError(f"top_k={self.cfg.top_k} is not a multiple of the bank's chunk size {bank.chunk_size}")

    # -- prompts (prompts.py) --

    @property
    def sink_id(self) -> int | None:
        """The document-start token that opens every segment (never stored in memory)."""
        return sink_token_id(self.tokenizer) if self.cfg.sink_token else None

    def with_sink(self, ids: list[int]) -> list[int]:
        """``ids`` opened by the segment-start (sink) token, as every segment is read."""
        return ([self.sink_id] if self.sink_id is not None else []) + ids

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` opened by the segment-start token, as every segment is read."""
        return self.with_sink(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def chat_ids(self, question: str, history: list[dict] | None = None, system: str | None = None) -> list[int]:
        """Prompt ids for a chat turn through the backbone's chat template."""
        prompt = chat_prompt(self.tokenizer, question, history, system)
        return self.with_sink(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    # -- reading into memory --

    @torch.no_grad()
    def memorize(self, text: str, bank: MemoryBank, source: str = "text", progress: Progress | None = None,
                 batch_size: int = 1, workers: int | None = None, pages: list[int] | None = None,
                 page_labels: list[str] | None = None) -> MemorizeStats:
        """Read ``text`` into ``bank`` in segments of ``cfg.segment_length`` tokens (the backbone runs only up to the
        memory layer). Every chunk keeps its source and character span; ``pages``: where each page of ``text``
        starts (characters, a PDF's ``Document.pages``), so chunks know their page; ``page_labels``: the label
        printed on each page (``Document.page_labels``).

        ``workers``: segments read side by side, each in its own thread with one intra-op thread (default: as many
        as torch's CPU threads; 1 on an accelerator). In float32 the keys do not depend on the count (bit for bit in
        the tiny-model tests); in bfloat16 (``cfg.memorize_precision``) they agree within its rounding. The bank
        receives them in reading order."""
        self.check_bank(bank)
        t0 = time.perf_counter()
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        if not ids:
            raise ValueError(f"{source}: no tokens to memorize")
        src = bank.add_source(source, text, pages=pages, page_labels=page_labels)
        prefix = self.with_sink([])
        step = self.segment_length - len(prefix)
        starts = list(range(0, len(ids), step))
        groups = [starts[b:b + batch_size] for b in range(0, len(starts), batch_size)]
        pad = self.tokenizer.pad_token_id or 0

        def read(group: list[int]):  # -> memory keys, values [B, T, G, D] of these segments
            segments = [prefix + ids[s:s + step] for s in group]
            width = max(len(s) for s in segments)
            batch = torch.tensor([s + [pad] * (width - len(s)) for s in segments], device=self.device)  # right-padded
            return self.memory_kv(batch)

        chunks = 0
        if progress:
            progress(0, len(ids))
        workers = default_workers(self.device) if workers is None else workers
        for group, (keys, values) in zip(groups, ordered_map(read, groups, min(workers, len(groups)))):
            for row, s in enumerate(group):
                n = min(step, len(ids) - s)
                sl = slice(len(prefix), len(prefix) + n)
                chunks += bank.add(keys[row, sl], values[row, sl], source=src, token_start=s,
                                   char_spans=offsets[s:s + n])
            if progress:
                progress(min(group[-1] + step, len(ids)), len(ids))
        return MemorizeStats(tokens=len(ids), chunks=chunks, seconds=time.perf_counter() - t0)

    @torch.no_grad()
    def segment_kv(self, ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The memory-layer keys and values [T, G, D] of one segment of token ids (without the sink token, which
        opens the segment but is not returned): what a bank stores for it."""
        x = torch.tensor([self.with_sink(ids)], device=self.device)
        keys, values = self.memory_kv(x)
        start = x.shape[1] - len(ids)
        return keys[0, start:], values[0, start:]

    @torch.no_grad()
    def memory_kv(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """input_ids [B, T] -> the memory layer's keys and values [B, T, G, D] in float32, the backbone run only up
        to the memory layer, in ``cfg.memorize_precision`` (precision.py): what memorizing stores."""
        dtype = memorize_dtype(self.cfg.memorize_precision, self.device)
        with computing_in(dtype, self.device):
            out = self.backbone(input_ids, memory_layer=self.memory_layer, stop_after=self.memory_layer,
                                last_kv_only=True)
        if dtype is None:
            return out.memory_keys, out.memory_values
        return out.memory_keys.float(), out.memory_values.float()

    @torch.no_grad()
    def memorize_ids(self, ids: list[int], bank: MemoryBank, source: int = -1, token_start: int = 0,
                     char_spans=None) -> int:
        """Write one segment of token ids (without the sink token) into ``bank``; returns chunks added."""
        keys, values = self.segment_kv(ids)
        return bank.add(keys, values, source=source, token_start=token_start, char_spans=char_spans)

    # -- forward --

    def forward(self, input_ids: torch.Tensor, bank: MemoryBank | None = None, *, trace: bool = False,
                position_ids: torch.Tensor | None = None, caches: ModelCaches | None = None,
                top_k: int | None = None, logits_from: int = 0) -> LongMemOutput:
        """input_ids [B, T] -> logits [B, T - logits_from, V]; every row reads the same bank (None: no memory).
        ``logits_from``: the first position whose logits are computed (a prompt read only to be cached or scored
        at its end needs none or few: [B, T, V] float32 logits of a long prompt would cost more than the model).

        ``top_k``: tokens retrieved from memory per query token and head for this call (default: the config's);
        a multiple of the bank's chunk size, so ``top_k // chunk_size`` chunks are retrieved."""
        top_k = top_k or self.cfg.top_k
        if bank is not None:
            self.check_bank(bank)
            if top_k % bank.chunk_size or top_k < bank.chunk_size:
                raise ValueError(f"top_k={top_k} must be a positive multiple of the bank's chunk size {bank.chunk_size}")
        chunks_per_query = top_k // bank.chunk_size if bank is not None else 0  # R
        retrieve = (lambda q: bank.search(q, chunks_per_query).to(q.device)) if bank is not None else None
        parallel = self._side_beside_backbone(input_ids, caches)
        beside = parallel and self.decode_schedule.pick()
        t0 = time.perf_counter()
        if beside:
            out, (hidden, record) = self._decode_in_two_threads(input_ids, position_ids, caches, retrieve, trace)
        else:
            out = self.backbone(input_ids, position_ids, caches=caches.backbone if caches else None,
                                memory_layer=self.memory_layer)
            hidden, record = self.side(out.hidden_states, out.rope, retrieve, caches.side if caches else None, trace)
        if parallel:  # the first such steps measure which schedule pays on this machine (decode_schedule.py)
            self.decode_schedule.record(beside, time.perf_counter() - t0)
        return LongMemOutput(logits=self.backbone.logits(hidden[:, logits_from:]), trace=record, memory_keys=out.memory_keys,
                             memory_values=out.memory_values, hidden=hidden)

    def _side_beside_backbone(self, input_ids: torch.Tensor, caches: ModelCaches | None) -> bool:
        """May a cached step decode with the SideNet in a second thread beside the backbone (``threads.HiddenStream``)?
        Only where it can pay: one new token per row (bandwidth-bound; a prompt is compute-bound and splits each op
        over the cores better), on a CPU with two or more threads, no gradients, and ``cfg.parallel_decode``.
        Whether it does is measured on the first such steps (``decode_schedule``)."""
        return (self.cfg.parallel_decode and caches is not None and input_ids.shape[1] == 1
                and self.device.type == "cpu" and torch.get_num_threads() >= 2 and not torch.is_grad_enabled())

    def _decode_in_two_threads(self, input_ids, position_ids, caches: ModelCaches, retrieve, trace: bool):
        """The backbone in this thread and the SideNet in a pool thread, one intra-op thread each; the SideNet
        reads each backbone hidden state as soon as its block has run. Same results as one after the other (tested)."""
        if position_ids is None:
            position_ids = self.backbone.positions(input_ids, caches.backbone)
        stream = HiddenStream()

        def side():
            with torch.no_grad():  # grad mode is per thread
                rope = self.backbone.rope(stream[0], position_ids)  # as the backbone computes it for these positions
                return self.side(stream, rope, retrieve, caches.side, trace)

        with single_threaded_ops():
            side_result = side_thread(side)
            try:
                out = self.backbone(input_ids, position_ids, caches=caches.backbone, memory_layer=self.memory_layer,
                                    hidden_out=stream)
            except BaseException as error:
                stream.fail(error)
                side_result.exception()  # let the SideNet stop before the error goes up
                raise
            return out, side_result.result()

    # -- retrieval --

    def retrieve(self, query: str, bank: MemoryBank, search_top: int = 5) -> list[Retrieved]:
        """The ``search_top`` chunks the memory search finds for ``query``, best first, each with the score that
        ranked it (``search.rank_chunks``: what is listed is what the search scored)."""
        return search.rank_chunks(self, bank, query, search_top)

    @torch.no_grad()
    def attention_mass(self, query: str, bank: MemoryBank, chunks_listed: int = 5,
                       top_k: int | None = None) -> list[Retrieved]:
        """The ``chunks_listed`` chunks the memory layer's attention over ``query`` weighs most (memory attention
        mass, summed over the query's tokens and heads, normalised to 1): what the memory layer *used*, which is not
        how the search ranks (see ``retrieve``). ``top_k``: tokens retrieved per query token and head."""
        ids = self.encode(query)
        out = self(torch.tensor([ids], device=self.device), bank, trace=True, top_k=top_k)
        start = 1 if self.sink_id is not None else 0
        totals = out.trace.chunk_totals(0, slice(start, None))
        best = sorted(totals.items(), key=lambda kv: -kv[1])[:chunks_listed]
        return [Retrieved(bank.chunk_info(cid), w) for cid, w in best]

    def retrieved_for(self, gen: Generation, bank: MemoryBank, chunks_listed: int = 5) -> list[Retrieved]:
        """The ``chunks_listed`` chunks a finished generation attended to most, normalised to sum to 1 over all
        chunks (``fusion`` lists its ``search_top``)."""
        total = sum(gen.chunk_mass.values()) or 1.0
        best = sorted(gen.chunk_mass.items(), key=lambda kv: -kv[1])[:chunks_listed]
        return [Retrieved(bank.chunk_info(cid), w / total) for cid, w in best if cid >= bank.first_id]

    # -- generation (generation.py) --

    def generate(self, prompt_ids: list[int], bank: MemoryBank | None = None, *, max_new_tokens: int = 128,
                 temperature: float = 0.0, top_p: float = 0.9, backbone_only: bool = False,
                 seed: int | None = None, top_k: int | None = None) -> Generation:
        """Stream a continuation of ``prompt_ids`` (KV-cached). ``backbone_only`` uses the frozen backbone alone.
        ``top_p``: nucleus sampling mass; ``top_k``: tokens retrieved from memory per query token and head."""
        return generation.generate(self, prompt_ids, bank, max_new_tokens=max_new_tokens, temperature=temperature,
                                   top_p=top_p, backbone_only=backbone_only, seed=seed, top_k=top_k)

    # -- scoring (scoring.py) --

    def cache_prompt(self, prompt: str | list[int], bank: MemoryBank | None = None,
                     top_k: int | None = None) -> PromptCache:
        """Read a prompt prefix once (e.g. the in-context demonstrations shared by every test text) and keep
        every layer's keys/values, so ``score_labels``/``score_continuations`` with ``cache=`` read only what
        follows it. ``prompt``: text, or token ids already opened by the sink token. The cache belongs to
        ``bank`` (None: no memory) and ``top_k``."""
        return scoring.cache_prompt(self, prompt, bank, top_k)

    def score_labels(self, prompt: str, labels: list[str], bank: MemoryBank | None = None,
                     trace: bool = False, top_k: int | None = None,
                     cache: PromptCache | None = None) -> tuple[torch.Tensor, RetrievalTrace | None]:
        """Sum of log-probabilities of each label's tokens after ``prompt``: [n_labels], and the prompt's trace
        (see ``score_continuations``)."""
        return scoring.score_labels(self, prompt, labels, bank, trace=trace, top_k=top_k, cache=cache)

    def score_continuations(self, prompt_ids: list[int], continuations: list[list[int]],
                            bank: MemoryBank | None = None, *, trace: bool = False, top_k: int | None = None,
                            cache: PromptCache | None = None) -> tuple[torch.Tensor, RetrievalTrace | None]:
        """Sum of log-probabilities of each continuation's tokens after ``prompt_ids`` (opened by the sink token):
        [n_continuations], all read in one batch, and the trace of the batch's first row.

        ``cache`` (from ``cache_prompt`` with the same bank and top_k): the prompt's tokens it shares are not read
        again; the scores are the same up to float rounding, and the trace then covers only the tokens after the
        ``cache.shared(prompt_ids)`` shared ones."""
        return scoring.score_continuations(self, prompt_ids, continuations, bank, trace=trace, top_k=top_k,
                                           cache=cache)

    def score_prompts(self, prompts: list[list[int]], continuations: list[list[int]],
                      bank: MemoryBank | None = None, *, top_k: int | None = None,
                      cache: PromptCache | None = None) -> torch.Tensor:
        """Sum of log-probabilities of each continuation's tokens after each prompt (ids opened by the sink token):
        [n_prompts, n_continuations], the prompts read in batches after ``cache`` (row i: ``score_continuations``
        of prompt i, up to float rounding; see ``scoring.score_prompts``)."""
        return scoring.score_prompts(self, prompts, continuations, bank, top_k=top_k, cache=cache)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """None -> cpu; "auto" -> cuda if available, else cpu; anything else as torch reads it (checked)."""
    if device is None or device == "auto":
        return torch.device("cuda" if device == "auto" and torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but torch sees no CUDA GPU here")
    return device
