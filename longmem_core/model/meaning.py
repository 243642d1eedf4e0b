"""The meaning search (beyond the paper): which sentences in memory mean what a question asks, in other words too.

Shape legend: G kv heads, D head dim, F = G * D value features, R the search's width, Nc chunks, S sentences.

The bank already stores every token's memory-layer values (what the memory attention reads). A sentence of a
source is represented by the mean of its tokens' values [F], a question by the mean of its own tokens' values,
read alone up to the memory layer as memorizing reads a segment (opened by the sink token). Both are centred on
the bank's mean sentence and taken by the SideNet's trained pair of linear maps (``MeaningProjection``: one for
questions, one for sentences) into a shared space [R]; a sentence's score is its cosine with the question, and
every chunk of a sentence gets its sentence's score. The maps are trained by ``train-meaning`` on facts asked in
other words and on questions about real book sentences, this project's own (``data/train/``), every other
sentence of the document a negative (InfoNCE).

With ``meaning_pool`` "tokens" (late interaction, as ColBERT, Khattab and Zaharia 2020), the same maps take each
token instead of the means: each question token finds its best-matching token of a sentence, and the sentence's
score is that cosine averaged over the question (``maxsim``). On held-out questions about a book the maps never saw
it ranked the asked sentence first more often than the means did (docs/DESIGN.md section 6).

The paper's own search scores 4-token chunks by a query token's attention to their mean key; that search is
``search.chunk_scores`` and is unchanged. This one adds a second score from the same stored values, pooled by
sentence, and is used only when the loaded checkpoint trained its maps (``available``).
"""
from __future__ import annotations

import re
import threading
import weakref
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from ..memory.memory_bank import MemoryBank

if TYPE_CHECKING:
    from .model import LongMemModel

# a sentence ends at . ! ? (closing quotes or brackets may follow) before a capital, digit or opening quote, or at
# a blank line
SENTENCE_END = re.compile(r"(?<=[.!?])([\"'\u201d\u2019)\]]*)\s+(?=[\"'\u201c\u2018(\[]*[A-Z0-9])|\n\s*\n")
ABBREVIATION = re.compile(r"\b(?:Mr|Mrs|Ms|Dr|St|Mt|No|Fig|Vol|pp|cf|e\.g|i\.e|vs|etc)\.$")  # no sentence end after these
MAX_SENTENCE_CHARS = 600  # a longer run without a sentence end (a table, a list) is cut into pieces this long


class MeaningProjection(nn.Module):
    """Two linear maps [F] -> [R]: one for questions, one for sentences. They start random: a model whose
    checkpoint did not train them does not use them (``available``)."""

    def __init__(self, features: int, width: int) -> None:
        super().__init__()
        self.question = nn.Linear(features, width)
        self.sentence = nn.Linear(features, width)

    def forward(self, questions: torch.Tensor, sentences: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """questions [N, F], sentences [S, F], both centred -> unit vectors [N, R], [S, R]."""
        unit = nn.functional.normalize
        return unit(self.question(questions), dim=-1), unit(self.sentence(sentences), dim=-1)


def available(model: LongMemModel) -> bool:
    """Whether ``model``'s checkpoint trained the meaning search's maps."""
    return model.side.meaning is not None and "meaning" in model.trained_parts()


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """The character spans of ``text``'s sentences (``SENTENCE_END``), a long run cut every ``MAX_SENTENCE_CHARS``."""
    spans, start = [], 0
    ends = [(m.end(1) if m.group(1) is not None else m.start(), m.end()) for m in SENTENCE_END.finditer(text)]
    ends = [(e, a) for e, a in ends if not ABBREVIATION.search(text[max(0, e - 6):e])] + [(len(text), len(text))]
    for end, after in ends:
        while end - start > MAX_SENTENCE_CHARS:
            spans.append((start, start + MAX_SENTENCE_CHARS))
            start += MAX_SENTENCE_CHARS
        if text[start:end].strip():
            spans.append((start, end))
        start = after
    return spans


def chunk_sentences(bank: MemoryBank) -> np.ndarray:
    """[Nc] (oldest first) the sentence each chunk belongs to, numbered over the bank: the sentence of its source's
    text that holds the chunk's middle character (a 4-token chunk can straddle a sentence end); a chunk without a
    character span is a sentence of its own."""
    src, chars = bank.chunk_source, bank.chunk_chars
    out = np.full(len(src), -1, dtype=np.int64)
    next_id = 0
    for s in dict.fromkeys(src.tolist()):  # each source once, in order of first appearance
        rows = np.nonzero((src == s) & (chars[:, 0] >= 0))[0] if s >= 0 else []
        if len(rows) == 0:
            continue
        starts = np.array([x for x, _ in sentence_spans(bank.sources[s]["text"])] or [0], dtype=np.int64)
        middle = (chars[rows, 0] + chars[rows, 1] - 1) // 2  # [rows]
        out[rows] = next_id + np.maximum(0, np.searchsorted(starts, middle, side="right") - 1)
        next_id += len(starts)
    lone = out < 0
    out[lone] = next_id + np.arange(int(lone.sum()))
    _, dense = np.unique(out, return_inverse=True)  # sentences numbered 0..S-1 in bank order, none empty
    return dense


def token_values(bank: MemoryBank, which: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(every stored token's memory-layer value [T, F], the sentence it belongs to [T]), oldest first; a token
    belongs to its chunk's sentence (``which`` [Nc]: ``chunk_sentences``)."""
    values = bank.values.float()  # [G, Nc, c, D]
    G, Nc, c, D = values.shape
    per_token = values.permute(1, 2, 0, 3).reshape(Nc * c, G * D).cpu()  # [Nc*c, F]
    kept = bank.token_mask.reshape(-1).bool().cpu()  # [Nc*c]
    sentence = torch.from_numpy(which)[:, None].expand(Nc, c).reshape(-1)  # [Nc*c]
    return per_token[kept], sentence[kept]


def maxsim(questions: torch.Tensor, tokens: torch.Tensor, sentence: torch.Tensor, n_sentences: int) -> torch.Tensor:
    """Late interaction: each question token's best cosine with a sentence's tokens, averaged over the question.
    questions [Lq, R] and tokens [T, R] unit vectors, sentence [T] (each token's sentence) -> [S]."""
    sim = questions @ tokens.T  # [Lq, T]
    best = torch.full((len(questions), n_sentences), -1.0, dtype=sim.dtype, device=sim.device)
    best = best.scatter_reduce(1, sentence.to(sim.device).expand(len(questions), -1), sim, "amax")  # [Lq, S]
    return best.mean(0)


def sentence_values(bank: MemoryBank, which: np.ndarray) -> torch.Tensor:
    """[S, F] the mean memory-layer value of each sentence's tokens (``which`` [Nc]: ``chunk_sentences``)."""
    values = bank.values.float()  # [G, Nc, c, D]
    mask = bank.token_mask.to(values.device)  # [Nc, c]
    G, Nc, _, D = values.shape
    sums = (values * mask[None, :, :, None]).sum(2).permute(1, 0, 2).reshape(Nc, G * D).cpu()  # [Nc, F]
    counts = mask.sum(1).float().cpu()  # [Nc]
    index = torch.from_numpy(which)
    S = int(which.max()) + 1 if len(which) else 0
    total = torch.zeros(S, G * D).index_add_(0, index, sums)
    n = torch.zeros(S).index_add_(0, index, counts)
    return total / n.clamp(min=1)[:, None]


_CACHE: "weakref.WeakKeyDictionary[MemoryBank, tuple[tuple, tuple]]" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def bank_sentences(model: LongMemModel, bank: MemoryBank) -> tuple[np.ndarray, torch.Tensor, torch.Tensor,
                                                                     torch.Tensor | None]:
    """(which [Nc], the centre [F], projected units, the sentence of each unit or None), kept with the bank until
    it changes or the maps do (another checkpoint, loaded into this model or another one, or a training step).
    ``meaning_pool`` "mean": the units are the sentences [S, R], centred on the bank's mean sentence; "tokens": the
    stored tokens [T, R], centred on the bank's mean token, with each token's sentence [T]."""
    proj = model.side.meaning
    pool = model.cfg.meaning_pool
    key = (bank.version, id(proj), pool, *(p._version for p in proj.sentence.parameters()))  # bumped in place
    with _LOCK:
        cached = _CACHE.get(bank)
    if cached is not None and cached[0] == key:
        return cached[1]
    which = chunk_sentences(bank)
    if pool == "tokens":
        feats, owner = token_values(bank, which)  # [T, F], [T]
    else:
        feats, owner = sentence_values(bank, which), None  # [S, F]
    centre = feats.mean(0)
    with torch.no_grad():
        dtype = proj.sentence.weight.dtype
        units = nn.functional.normalize(proj.sentence((feats - centre).to(proj.sentence.weight.device, dtype)),
                                        dim=-1).float().cpu()
    value = (which, centre, units, owner)
    with _LOCK:
        _CACHE[bank] = (key, value)
    return value


@torch.no_grad()
def question_token_values(model: LongMemModel, question: str) -> torch.Tensor:
    """[Lq, F] the memory-layer values of the question's tokens, read alone as memorizing reads a segment."""
    ids = model.encode(question)
    x = torch.tensor([model.with_sink(ids)], device=model.device)
    _, values = model.memory_kv(x)  # [1, T, G, D]
    start = x.shape[1] - len(ids)
    return values[0, start:].flatten(1).float().cpu()


def question_values(model: LongMemModel, question: str) -> torch.Tensor:
    """[F] the mean memory-layer value of the question's tokens."""
    return question_token_values(model, question).mean(0)


def meaning_scores(model: LongMemModel, bank: MemoryBank, query: str) -> torch.Tensor:
    """[Nc] (oldest first) each chunk's sentence's score for ``query`` in the trained space, in [-1, 1]: the cosine
    of the two means (``meaning_pool`` "mean") or their tokens' late interaction (``maxsim``, "tokens")."""
    which, centre, units, owner = bank_sentences(model, bank)
    proj = model.side.meaning
    q = question_token_values(model, query)  # [Lq, F]
    q = (q.mean(0, keepdim=True) if owner is None else q) - centre  # [1 or Lq, F]
    with torch.no_grad():
        w = proj.question.weight
        qv = nn.functional.normalize(proj.question(q.to(w.device, w.dtype)), dim=-1).float().cpu()  # [1 or Lq, R]
    n_sentences = int(which.max()) + 1 if len(which) else 0
    per_sentence = units @ qv[0] if owner is None else maxsim(qv, units, owner, n_sentences)  # [S]
    return per_sentence[torch.from_numpy(which)].double()  # [S] -> [Nc]
