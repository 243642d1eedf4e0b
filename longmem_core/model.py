"""LongMem: a frozen backbone, a memory bank it writes, and a SideNet that reads it.

Shape legend: B batch, T tokens, V vocabulary, H query heads, R chunks retrieved per query and head.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn

from .backbone import FrozenBackbone, LayerCache, load_backbone
from .config import LongMemConfig
from .memory_bank import BankMismatchError, ChunkInfo, MemoryBank
from .side_network import RetrievalTrace, SideNetwork
from .threads import HiddenStream, default_workers, ordered_map, side_thread, single_threaded_ops

CHECKPOINT_FORMAT = "longmem-checkpoint-1"
Progress = Callable[[int, int], None]  # (tokens done, tokens total)


@dataclass
class LongMemOutput:
    logits: torch.Tensor  # [B, T, V]
    trace: RetrievalTrace | None = None
    memory_keys: torch.Tensor | None = None  # [B, T, G, D] this input's memory-layer keys (before rotation)
    memory_values: torch.Tensor | None = None  # [B, T, G, D], ready to be written to a bank after reading


@dataclass
class MemorizeStats:
    tokens: int
    chunks: int
    seconds: float


@dataclass
class Retrieved:
    """One retrieved chunk, with its exact text and how much weight it got."""

    info: ChunkInfo
    score: float

    def to_dict(self) -> dict:
        i = self.info
        return {"chunk_id": i.chunk_id, "source": i.source, "char_start": i.char_start, "char_end": i.char_end,
                "text": i.text, "score": round(self.score, 6), "token_start": i.token_start, "token_end": i.token_end}


@dataclass
class Generation:
    """A streaming generation: iterate for text pieces; afterwards ``text``, ``token_ids`` and ``retrieved``."""

    steps: Iterator[str]
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    chunk_mass: dict[int, float] = field(default_factory=dict)  # chunk id -> summed memory attention mass
    memory_share: float = 0.0  # mean share of the memory layer's output that came from memory

    def __iter__(self) -> Iterator[str]:
        return self.steps


class LongMemModel(nn.Module):
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
        self._loaded_names: set[str] = set()  # parameters a loaded checkpoint set: saved again even when frozen now

    # -- construction and checkpoints --

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
            meta = read_checkpoint_meta(checkpoint)
            cfg_dict = meta["config"]
            if backbone and backbone != cfg_dict["backbone"]:
                raise BankMismatchError(f"checkpoint {checkpoint} was trained for backbone {cfg_dict['backbone']!r}, "
                                        f"not {backbone!r}")
            model = cls(LongMemConfig.from_dict({**cfg_dict, **overrides}))
            model.load_checkpoint(checkpoint)
            return model
        return cls(LongMemConfig(**({"backbone": backbone} if backbone else {}), **overrides))

    @property
    def device(self) -> torch.device:
        return self.backbone.embed_tokens.weight.device

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.named_parameters() if p.requires_grad}

    def save_checkpoint(self, path: str | Path, note: str = "") -> Path:
        """Only the trained parameters (those training now and those a loaded checkpoint set, e.g. a frozen
        memory-query delta under a newly trained memory layer), in safetensors, with the config that built them."""
        from safetensors.torch import save_file
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {n: p.detach().contiguous() for n, p in self.named_parameters()
                   if p.requires_grad or n in self._loaded_names}
        meta = {"format": CHECKPOINT_FORMAT, "config": self.cfg.to_json(), "backbone": self._fingerprint, "note": note}
        tmp = path.with_name(path.name + ".tmp")
        save_file(tensors, tmp, metadata=meta)
        tmp.replace(path)
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        from safetensors.torch import load_file
        meta = read_checkpoint_meta(path)
        theirs = meta.get("backbone", "")
        if theirs and _architecture(theirs) != _architecture(self._fingerprint):
            raise BankMismatchError(f"checkpoint {path} was trained on another backbone ({theirs})")
        if theirs and theirs != self._fingerprint:  # same shapes, other weights (e.g. GGUF vs hub copy of a model)
            import warnings
            warnings.warn(f"checkpoint {path} was trained on another copy of this backbone's weights ({theirs}, "
                          f"here {self._fingerprint}); loading it anyway", stacklevel=2)
        tensors = load_file(str(path))
        own = dict(self.side.named_parameters(prefix="side"))
        unknown = sorted(set(tensors) - set(own))
        if unknown:
            raise ValueError(f"checkpoint {path} has parameters this model lacks: {unknown[:3]}")
        with torch.no_grad():
            for name, t in tensors.items():
                own[name].copy_(t)
        self.checkpoint_path = str(path)
        self._loaded_names = set(tensors)

    def trained_parts(self) -> set[str]:
        """What the loaded checkpoint set: "search" (the memory-query delta), "memory_layer" (the memory side layer
        or the gates), "side_layers" (any other side layer or scale). Empty for an untrained SideNet."""
        memory = f"side.layers.{self.side.memory_index}."
        parts = set()
        for name in self._loaded_names:
            if name.startswith("side.q_mem_"):
                parts.add("search")
            elif name == "side.gate" or name.startswith(memory):
                parts.add("memory_layer")
            elif name.startswith("side."):
                parts.add("side_layers")
        return parts

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

    @property
    def sink_id(self) -> int | None:
        """The document-start token that opens every segment (never stored in memory)."""
        if not self.cfg.sink_token:
            return None
        tok = self.tokenizer
        for token in ("<|endoftext|>", tok.bos_token, tok.eos_token):
            tid = _token_id(tok, token)
            if tid is not None:
                return tid
        return None

    def with_sink(self, ids: list[int]) -> list[int]:
        """``ids`` opened by the segment-start (sink) token, as every segment is read."""
        return ([self.sink_id] if self.sink_id is not None else []) + ids

    @torch.no_grad()
    def memorize(self, text: str, bank: MemoryBank, source: str = "text", progress: Progress | None = None,
                 batch_size: int = 1, workers: int | None = None) -> MemorizeStats:
        """Read ``text`` into ``bank`` in segments of ``cfg.segment_length`` tokens (the backbone runs only up to the
        memory layer). Every chunk keeps its source and character span.

        ``workers``: segments read side by side, each in its own thread with one intra-op thread (default: as many
        as torch's CPU threads; 1 on an accelerator). The keys do not depend on the count (bit for bit in the tiny-model tests); the bank
        receives them in reading order."""
        self.check_bank(bank)
        t0 = time.perf_counter()
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        if not ids:
            raise ValueError(f"{source}: no tokens to memorize")
        src = bank.add_source(source, text)
        prefix = self.with_sink([])
        step = self.segment_length - len(prefix)
        starts = list(range(0, len(ids), step))
        groups = [starts[b:b + batch_size] for b in range(0, len(starts), batch_size)]
        pad = self.tokenizer.pad_token_id or 0

        def read(group: list[int]):  # -> memory keys, values [B, T, G, D] of these segments
            segments = [prefix + ids[s:s + step] for s in group]
            width = max(len(s) for s in segments)
            batch = torch.tensor([s + [pad] * (width - len(s)) for s in segments], device=self.device)  # right-padded
            out = self.backbone(batch, memory_layer=self.memory_layer, stop_after=self.memory_layer, last_kv_only=True)
            return out.memory_keys, out.memory_values

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
        """The memory-layer keys and values [n, G, D] of one segment of token ids (without the sink token, which
        opens the segment but is not returned): what a bank stores for it."""
        x = torch.tensor([self.with_sink(ids)], device=self.device)
        out = self.backbone(x, memory_layer=self.memory_layer, stop_after=self.memory_layer,
                            last_kv_only=True)
        start = x.shape[1] - len(ids)
        return out.memory_keys[0, start:], out.memory_values[0, start:]

    @torch.no_grad()
    def memorize_ids(self, ids: list[int], bank: MemoryBank, source: int = -1, token_start: int = 0,
                     char_spans=None) -> int:
        """Write one segment of token ids (without the sink token) into ``bank``; returns chunks added."""
        keys, values = self.segment_kv(ids)
        return bank.add(keys, values, source=source, token_start=token_start, char_spans=char_spans)

    # -- forward --

    def forward(self, input_ids: torch.Tensor, bank: MemoryBank | None = None, *, trace: bool = False,
                position_ids: torch.Tensor | None = None, caches: "ModelCaches | None" = None,
                top_k: int | None = None) -> LongMemOutput:
        """input_ids [B, T] -> logits [B, T, V]; every row reads the same bank (None: no memory).

        ``top_k``: tokens retrieved per query token and head for this call (default: the config's)."""
        top_k = top_k or self.cfg.top_k
        if bank is not None:
            self.check_bank(bank)
            if top_k % bank.chunk_size or top_k < bank.chunk_size:
                raise ValueError(f"top_k={top_k} must be a positive multiple of the bank's chunk size {bank.chunk_size}")
        n_chunks = top_k // bank.chunk_size if bank is not None else 0
        retrieve = (lambda q: bank.search(q, n_chunks).to(q.device)) if bank is not None else None
        if self._side_beside_backbone(input_ids, caches):
            out, (hidden, record) = self._decode_in_two_threads(input_ids, position_ids, caches, retrieve, trace)
        else:
            out = self.backbone(input_ids, position_ids, caches=caches.backbone if caches else None,
                                memory_layer=self.memory_layer)
            hidden, record = self.side(out.hidden_states, out.rope, retrieve, caches.side if caches else None, trace)
        return LongMemOutput(logits=self.backbone.logits(hidden), trace=record, memory_keys=out.memory_keys,
                             memory_values=out.memory_values)

    def _side_beside_backbone(self, input_ids: torch.Tensor, caches: "ModelCaches | None") -> bool:
        """Decode a cached step with the SideNet in a second thread beside the backbone (``threads.HiddenStream``)?
        Only where it pays: one new token per row (bandwidth-bound; a prompt is compute-bound and splits each op
        over the cores better), on a CPU with two or more threads, no gradients, and ``cfg.parallel_decode``."""
        return (self.cfg.parallel_decode and caches is not None and input_ids.shape[1] == 1
                and self.device.type == "cpu" and torch.get_num_threads() >= 2 and not torch.is_grad_enabled())

    def _decode_in_two_threads(self, input_ids, position_ids, caches: "ModelCaches", retrieve, trace: bool):
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

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` opened by the segment-start token, as every segment is read."""
        return self.with_sink(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    @torch.no_grad()
    def retrieve(self, query: str, bank: MemoryBank, top: int = 5, top_k: int | None = None) -> list[Retrieved]:
        """The chunks the memory layer's queries over ``query`` attend to most (memory attention mass,
        summed over the query's tokens and heads, normalised to 1)."""
        ids = self.encode(query)
        out = self(torch.tensor([ids], device=self.device), bank, trace=True, top_k=top_k)
        start = 1 if self.sink_id is not None else 0
        totals = out.trace.chunk_totals(0, slice(start, None))
        best = sorted(totals.items(), key=lambda kv: -kv[1])[:top]
        return [Retrieved(bank.chunk_info(cid), w) for cid, w in best]

    # -- generation --

    def chat_ids(self, question: str, history: list[dict] | None = None, system: str | None = None) -> list[int]:
        """Prompt ids for a chat turn through the backbone's chat template."""
        messages = ([{"role": "system", "content": system}] if system else []) + list(history or [])
        messages.append({"role": "user", "content": question})
        prompt = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return self.with_sink(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    def generate(self, prompt_ids: list[int], bank: MemoryBank | None = None, *, max_new_tokens: int = 128,
                 temperature: float = 0.0, top_p: float = 0.9, backbone_only: bool = False,
                 seed: int | None = None, top_k: int | None = None) -> Generation:
        """Stream a continuation of ``prompt_ids`` (KV-cached). ``backbone_only`` uses the frozen backbone alone."""
        if bank is not None and not backbone_only:
            self.check_bank(bank)
        max_ctx = min(self.backbone.max_positions, 8192)
        if len(prompt_ids) + max_new_tokens > max_ctx:
            prompt_ids = prompt_ids[-(max_ctx - max_new_tokens):]
        gen = Generation(steps=iter(()))
        gen.steps = self._generate_steps(gen, prompt_ids, bank, max_new_tokens, temperature, top_p, backbone_only, seed,
                                         top_k)
        return gen

    @torch.no_grad()
    def _generate_steps(self, gen: Generation, prompt_ids, bank, max_new_tokens, temperature, top_p,
                        backbone_only, seed, top_k=None) -> Iterator[str]:
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        stop = self._stop_ids()
        caches = ModelCaches.empty(self)
        ids = torch.tensor([prompt_ids], device=self.device)
        shares: list[float] = []
        for _ in range(max_new_tokens):
            if backbone_only:
                h = self.backbone(ids, caches=caches.backbone).hidden_states[-1]
                logits = self.backbone.logits(h[:, -1:])
            else:
                out = self(ids, bank, trace=bank is not None, caches=caches, top_k=top_k)
                logits = out.logits[:, -1:]
                if out.trace is not None:
                    for cid, w in out.trace.chunk_totals(0).items():
                        gen.chunk_mass[cid] = gen.chunk_mass.get(cid, 0.0) + w
                    shares.append(float(out.trace.memory_share.mean()))
            token = sample_token(logits[0, -1].float().cpu(), temperature, top_p, generator)
            if token in stop:
                break
            gen.token_ids.append(token)
            text = self.tokenizer.decode(gen.token_ids, skip_special_tokens=True)
            if not text.endswith("\ufffd"):  # wait for the rest of a multi-byte character
                delta, gen.text = text[len(gen.text):], text
                if delta:
                    yield delta
            ids = torch.tensor([[token]], device=self.device)
        gen.memory_share = sum(shares) / len(shares) if shares else 0.0

    def _stop_ids(self) -> set[int]:
        tok = self.tokenizer
        ids = (_token_id(tok, t) for t in (tok.eos_token, "<|im_end|>", "<|endoftext|>", "<|eot_id|>"))
        return {tid for tid in ids if tid is not None}

    def retrieved_for(self, gen: Generation, bank: MemoryBank, top: int = 5) -> list[Retrieved]:
        """The chunks a finished generation attended to most, normalised to sum to 1 over all chunks."""
        total = sum(gen.chunk_mass.values()) or 1.0
        best = sorted(gen.chunk_mass.items(), key=lambda kv: -kv[1])[:top]
        return [Retrieved(bank.chunk_info(cid), w / total) for cid, w in best if cid >= bank.first_id]

    # -- classification --

    @torch.no_grad()
    def cache_prompt(self, prompt: str | list[int], bank: MemoryBank | None = None,
                     top_k: int | None = None) -> "PromptCache":
        """Read a prompt prefix once (e.g. the in-context demonstrations shared by every test text) and keep
        every layer's keys/values, so ``score_labels``/``score_continuations`` with ``cache=`` read only what
        follows it. ``prompt``: text, or token ids already opened by the sink token. The cache belongs to
        ``bank`` (None: no memory) and ``top_k``."""
        ids = self.encode(prompt) if isinstance(prompt, str) else list(prompt)
        caches = ModelCaches.empty(self)
        self(torch.tensor([ids], device=self.device), bank, caches=caches, top_k=top_k)
        return PromptCache(ids=ids, caches=caches, bank=bank, top_k=top_k)

    @torch.no_grad()
    def score_labels(self, prompt: str, labels: list[str], bank: MemoryBank | None = None,
                     trace: bool = False, top_k: int | None = None,
                     cache: "PromptCache | None" = None) -> tuple[torch.Tensor, RetrievalTrace | None]:
        """Sum of log-probabilities of each label's tokens after ``prompt``: [n_labels], and the prompt's trace
        (see ``score_continuations``)."""
        label_ids = [self.tokenizer(label, add_special_tokens=False)["input_ids"] for label in labels]
        if any(not ids for ids in label_ids):
            raise ValueError("every label must contain at least one token")
        return self.score_continuations(self.encode(prompt), label_ids, bank, trace=trace, top_k=top_k, cache=cache)

    @torch.no_grad()
    def score_continuations(self, prompt_ids: list[int], continuations: list[list[int]],
                            bank: MemoryBank | None = None, *, trace: bool = False, top_k: int | None = None,
                            cache: "PromptCache | None" = None) -> tuple[torch.Tensor, RetrievalTrace | None]:
        """Sum of log-probabilities of each continuation's tokens after ``prompt_ids`` (opened by the sink token):
        [n_continuations], all read in one batch, and the trace of the batch's first row.

        ``cache`` (from ``cache_prompt`` with the same bank and top_k): the prompt's tokens it shares are not read
        again; the scores are the same up to float rounding, and the trace then covers only the tokens after the
        ``cache.shared(prompt_ids)`` shared ones."""
        if not continuations or any(not ids for ids in continuations):
            raise ValueError("every continuation must contain at least one token")
        n = 0
        if cache is not None:
            if cache.bank is not bank or cache.top_k != top_k:
                raise ValueError("this prompt cache was made with another bank or top_k")
            n = cache.shared(prompt_ids)
        width = len(prompt_ids) + max(len(ids) for ids in continuations)
        pad = self.tokenizer.pad_token_id or 0
        rows = [prompt_ids[n:] + ids + [pad] * (width - len(prompt_ids) - len(ids)) for ids in continuations]
        caches = cache.expand(n, len(rows)) if n else None
        out = self(torch.tensor(rows, device=self.device), bank, trace=trace, top_k=top_k, caches=caches)  # right padding never changes earlier positions
        logp = torch.log_softmax(out.logits.float(), dim=-1)  # [rows, width - n, V]
        scores = []
        for row, ids in enumerate(continuations):
            pos = torch.arange(len(prompt_ids) - 1 - n, len(prompt_ids) - 1 - n + len(ids), device=logp.device)
            scores.append(logp[row, pos, torch.tensor(ids, device=logp.device)].sum())
        return torch.stack(scores).cpu(), out.trace


@dataclass
class ModelCaches:
    backbone: list[LayerCache]
    side: list[LayerCache]

    @classmethod
    def empty(cls, model: LongMemModel) -> "ModelCaches":
        return cls([LayerCache() for _ in range(model.backbone.n_layers)],
                   [LayerCache() for _ in range(len(model.side.layers))])

    def expand(self, length: int, batch: int) -> "ModelCaches":
        """New caches holding the first ``length`` tokens of row 0, repeated for ``batch`` rows (these stay
        untouched: appending to the new caches copies)."""
        def cut(c: LayerCache) -> LayerCache:
            new = LayerCache()
            if c.k is not None:
                new.k = c.k[:1, :, :length].expand(batch, -1, -1, -1)
                new.v = c.v[:1, :, :length].expand(batch, -1, -1, -1)
            return new
        return ModelCaches([cut(c) for c in self.backbone], [cut(c) for c in self.side])


@dataclass
class PromptCache:
    """A prompt prefix read once (``LongMemModel.cache_prompt``): its token ids and every layer's keys/values."""

    ids: list[int]
    caches: ModelCaches
    bank: MemoryBank | None
    top_k: int | None

    def shared(self, prompt_ids: list[int]) -> int:
        """How many leading tokens of ``prompt_ids`` the cache can stand for: the common prefix, less one so the
        prompt's last position is always read (its logits score the first label token)."""
        n = 0
        for a, b in zip(self.ids, prompt_ids):
            if a != b:
                break
            n += 1
        return min(n, len(prompt_ids) - 1)

    def expand(self, length: int, batch: int) -> ModelCaches:
        return self.caches.expand(length, batch)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """None -> cpu; "auto" -> cuda if available, else cpu; anything else as torch reads it (checked)."""
    if device is None or device == "auto":
        return torch.device("cuda" if device == "auto" and torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but torch sees no CUDA GPU here")
    return device


def _architecture(fingerprint: str) -> str:
    """The shape part of a backbone fingerprint ("llama-L30-C576-H9-G3"), without the weight digest."""
    return fingerprint.rsplit("-", 1)[0]


def _token_id(tokenizer, token: str | None) -> int | None:
    """The id of a token that really is in the vocabulary (not mapped to the unknown token), else None."""
    if not token:
        return None
    tid = tokenizer.convert_tokens_to_ids(token)
    return tid if isinstance(tid, int) and tokenizer.convert_ids_to_tokens(tid) == token else None


def sample_token(logits: torch.Tensor, temperature: float, top_p: float, generator=None) -> int:
    """Greedy at temperature 0, else nucleus sampling. logits: [V]."""
    if temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    sorted_p, order = probs.sort(descending=True)
    keep = sorted_p.cumsum(0) - sorted_p < top_p  # smallest set whose mass reaches top_p
    sorted_p = sorted_p * keep
    return int(order[torch.multinomial(sorted_p / sorted_p.sum(), 1, generator=generator)])


def read_checkpoint_meta(path: str | Path) -> dict:
    """The metadata of a checkpoint file (its config as a dict under "config")."""
    from safetensors import safe_open
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = dict(fh.metadata() or {})
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise ValueError(f"{path} is not a safetensors checkpoint ({exc})") from exc
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a LongMem checkpoint")
    meta["config"] = json.loads(meta["config"])
    return meta
