"""Search: which memory chunks a query asks for, ranked by the score the search gave them.

Shape legend: T query tokens, H query heads, G kv heads, D head dim, Nc chunks in the bank.

Interface shared by the answer modes, the evaluations and the app: ``rank_chunks(model, bank, query, top)``
returns the ``top`` chunks best first, each ``Retrieved`` with the score that ranked it.

How it scores (chosen on the tuning books; figures and the variants that lost in
docs/results/retrieval.md): the question is read once up to the SideNet's memory layer, giving one
memory query per token and head, formed exactly as the memory layer forms the queries it searches with (the block's
query projection plus the trained low-rank delta, position policy applied). The *last* token's queries score the
mean key of every chunk in the bank (what the bank's index searches), ``q . k * D**-0.5``, as a softmax over the
whole bank per head: the attention that query would pay each chunk if it could see the whole bank. A chunk's score
is that attention summed over the heads. The last token is what the delta was trained to search with (a question's
last token retrieves the chunks holding the answer, ``retrieval_train``). On 144 needles planted in 4k and 16k
tokens (432 questions) it ranked a needle chunk first every time; all question tokens together did so for 99.3%,
the content tokens only, a mean query, multi-head voting or neighbour smoothing for 93-99%, BM25 for 97.2%, the
memory layer's attention mass (the old listing) for 39%. The search scores exactly what it lists: there is no
separate attention pass.
"""
from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..memory.memory_bank import MemoryBank
from . import meaning, settings
from .retrieved import Retrieved

if TYPE_CHECKING:  # the model calls this module (LongMemModel.retrieve); annotations only
    from .model import LongMemModel

SCORE_BLOCK = 65_536  # chunks scored at once: bounds the [T, H, block] score matrix on big banks

# words that say nothing about which passage is meant (question words, articles, auxiliaries, pronouns)
STOP_WORDS = frozenset("""
a an the and or but if of to in on at by for with from into about as is are was were be been being am do does did
done have has had having what which who whom whose when where why how that this these those there here it its i
me my we our you your he him his she her they them their can could would should will shall may might must not no
yes so than then too very just also please tell say said give know remember recall find mentioned provided text
question answer one
""".split())


@dataclass
class QueryVectors:
    """A query read up to the memory layer: its tokens and their memory queries."""

    tokens: list[str]  # T token strings, the sink token first when the model uses one
    content: torch.Tensor  # [T] bool, True for the tokens that carry the question's content
    queries: torch.Tensor  # [T, H, D] float32 memory queries (block projection + trained delta, position policy)
    own_queries: torch.Tensor  # [T, H, D] float32 the block's own queries (no delta), as the memory attention weighs


def content_mask(tokens: list[str], sink: bool) -> torch.Tensor:
    """[T] True for tokens that are neither the sink, special/chat tokens, punctuation nor stop words."""
    keep = []
    for i, t in enumerate(tokens):
        word = t.replace("Ġ", " ").replace("Ċ", " ").replace("▁", " ").strip().lower()
        special = t.startswith("<|") or t.startswith("<s") or t.startswith("</")
        keep.append(not (i == 0 and sink) and not special and any(ch.isalnum() for ch in word)
                    and word not in STOP_WORDS)
    mask = torch.tensor(keep, dtype=torch.bool)
    if not mask.any():  # a query of stop words only: fall back to every token but the sink
        mask = torch.ones(len(tokens), dtype=torch.bool)
        mask[0] = not sink
    return mask


@torch.no_grad()
def query_vectors(model: LongMemModel, query: str) -> QueryVectors:
    """Read ``query`` (opened by the sink token, as every segment is read) up to the SideNet's memory layer and
    form its memory queries as ``SideNetwork._memory_layer`` does; the memory layer's normed input is taken with a
    forward hook, so this follows whatever the side layers before it do."""
    ids = model.encode(query)
    side = model.side
    layer = side.layers[side.memory_index]
    seen: list[torch.Tensor] = []
    owner = threading.get_ident()  # the model is shared: another session's forward may run at the same time

    def keep(_module, _inputs, out) -> None:
        if threading.get_ident() == owner:
            seen.append(out)
    hook = layer.norm_attn.register_forward_hook(keep)
    try:  # an empty bank: the memory layer runs its memory path (and the hook) without searching anything
        empty = model.new_bank(capacity=model.cfg.top_k)
        model(torch.tensor([ids], device=model.device), empty)
    finally:
        hook.remove()
    xn = seen[-1].float()  # [1, T, C]
    q = layer.q_proj(xn).view(1, len(ids), layer.n_heads, layer.head_dim).transpose(1, 2)  # [1, H, T, D]
    delta = side.memory_query_delta(xn)  # [1, H, T, D] or None
    q_mem = side.memory_queries(q if delta is None else q + delta)[0].transpose(0, 1)  # [T, H, D]
    q_own = side.memory_queries(q)[0].transpose(0, 1)
    tokens = model.tokenizer.convert_ids_to_tokens(ids)
    return QueryVectors(tokens, content_mask(tokens, model.sink_id is not None), q_mem.float().cpu(),
                        q_own.float().cpu())


def chunk_attention(queries: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """queries [T, H, D], chunk mean keys [G, Nc, D] (``bank.chunk_keys()``, oldest first) -> [T, H, Nc]: each
    query's softmax over every chunk, logits ``q . k * D**-0.5`` (the attention scale)."""
    T, H, D = queries.shape
    G, Nc = means.shape[0], means.shape[1]
    logits = torch.empty(T, H, Nc)
    qg = queries.reshape(T, G, H // G, D)  # query heads grouped by the kv head whose index they search
    for b in range(0, Nc, SCORE_BLOCK):
        part = torch.einsum("tgjd,gcd->tgjc", qg, means[:, b:b + SCORE_BLOCK])  # [T, G, H/G, block]
        logits[..., b:b + SCORE_BLOCK] = part.reshape(T, H, -1) * D ** -0.5
    return torch.softmax(logits, dim=-1)


def neighbour_smooth(scores: torch.Tensor, sources: np.ndarray, share: float) -> torch.Tensor:
    """scores [Nc] (oldest first) -> each chunk's score plus ``share`` of each adjacent chunk's of the same source."""
    if share == 0 or len(scores) < 2:
        return scores
    same = torch.from_numpy(sources[1:] == sources[:-1])  # [Nc - 1] neighbours that belong together
    out = scores.clone()
    out[1:] += share * scores[:-1] * same
    out[:-1] += share * scores[1:] * same
    return out


def chunk_scores(model: LongMemModel, bank: MemoryBank, query: str) -> torch.Tensor:
    """[Nc] the search score of every chunk in the bank for ``query`` (oldest first, as ``bank.chunk_ids``): the
    whole-bank attention of the query's last token, summed over its heads (each head's share sums to 1 over the
    bank, so the scores sum to the number of heads)."""
    vectors = query_vectors(model, query)
    means = torch.from_numpy(bank.chunk_keys())  # [G, Nc, D]
    return chunk_attention(vectors.queries[-1:], means)[0].sum(dim=0)  # [H, Nc] -> [Nc]


def spread_top(scores: torch.Tensor, sources: np.ndarray, top: int, gap: int) -> list[int]:
    """scores [Nc], sources [Nc] (oldest first) -> positions of ``top`` chunks, best first: the best chunks that lie
    more than ``gap`` chunks from a better chosen one of the same source, then, if that leaves fewer than ``top``
    (a short document), the best of the rest. Neighbouring chunks score alike (they share words and context);
    without the gap the best few are often one passage. ``gap`` 0: plain top-k."""
    top = min(top, len(scores))
    if gap <= 0:
        return torch.topk(scores, top).indices.tolist()
    order = torch.argsort(scores, descending=True).tolist()
    chosen: list[int] = []
    for i in order:
        if all(abs(i - j) > gap or sources[i] != sources[j] for j in chosen):
            chosen.append(i)
            if len(chosen) == top:
                return chosen
    taken = set(chosen)
    chosen += [i for i in order if i not in taken][:top - len(chosen)]
    return sorted(chosen, key=lambda i: -float(scores[i]))


def spread_gap(bank: MemoryBank) -> int:
    """``settings.SEARCH.spread_tokens`` in chunks of this bank."""
    return settings.SEARCH.spread_tokens // bank.chunk_size


def listed(bank: MemoryBank, scores: torch.Tensor, top: int, gap: int | None = None,
           found_by: str = "") -> list[Retrieved]:
    """The chunks ``spread_top`` picks (``gap`` chunks apart; default ``spread_gap``), each with its score."""
    gap = spread_gap(bank) if gap is None else gap
    return at_positions(bank, scores, spread_top(scores, bank.chunk_source, top, gap), found_by)


def at_positions(bank: MemoryBank, scores: torch.Tensor, positions: list[int], found_by: str) -> list[Retrieved]:
    """The chunks at ``positions`` (oldest first, as ``bank.chunk_ids``), each with its score."""
    ids = bank.chunk_ids
    return [Retrieved(bank.chunk_info(int(ids[i])), float(scores[i]), found_by) for i in positions]


def rank_chunks(model: LongMemModel, bank: MemoryBank, query: str, search_top: int = 6, *,
                gap: int | None = None) -> list[Retrieved]:
    """The ``search_top`` chunks for ``query``, best first, each with the score that ranked it (``chunk_scores``), no
    two within ``gap`` chunks (default ``spread_gap``) of each other in one source. Empty for an empty bank or a query without tokens."""
    model.check_bank(bank)
    if bank.n_chunks == 0 or not model.tokenizer(query, add_special_tokens=False)["input_ids"]:
        return []
    return listed(bank, chunk_scores(model, bank, query), search_top, gap, "memory")


# -- hybrid search (beyond the paper): the model's search fused with BM25 by reciprocal rank --

# Its tuned numbers are ``settings.SEARCH`` (model/settings.py): the fusion constant, BM25's window, weight and
# stop words, and the memory slots (of the chunks the hybrid search lists, how many are the model's own search's
# best, found_by "memory", whatever BM25 says: BM25 otherwise fills every place whenever the question shares a word
# with many chunks, and a fact asked in other words shares none with its own).
_LEXICAL: "weakref.WeakKeyDictionary[MemoryBank, tuple[tuple, object]]" = weakref.WeakKeyDictionary()



def stop_words() -> list[str]:
    """bm25s's English stop words and ``STOP_WORDS`` (question words, "mentioned", "text"...)."""
    from bm25s.stopwords import STOPWORDS_EN
    return sorted(set(STOPWORDS_EN) | STOP_WORDS)


def lexical_scores(bank: MemoryBank, query: str, window: int | None = None) -> torch.Tensor:
    """[Nc] BM25 score of the words around each chunk (``window`` chunks each side, same source; default
    ``settings.SEARCH.lexical_window``) for ``query``, oldest first. The words dropped are
    ``settings.SEARCH.lexical_stop_words`` (None: ``stop_words()``; "en": bm25s's own English list). The index is
    kept with the bank until the bank changes."""
    import bm25s
    window = settings.SEARCH.lexical_window if window is None else window
    stop_name = settings.SEARCH.lexical_stop_words
    stop = stop_name or stop_words()
    cached = _LEXICAL.get(bank)
    if cached is None or cached[0] != (bank.version, window, stop_name):
        texts = [bank.chunk_info(int(c)).text for c in bank.chunk_ids]
        src = bank.chunk_source
        windows = []
        for i in range(len(texts)):
            lo, hi = max(0, i - window), min(len(texts), i + window + 1)
            windows.append("".join(t for j, t in zip(range(lo, hi), texts[lo:hi]) if src[j] == src[i]))
        index = bm25s.BM25()
        index.index(bm25s.tokenize(windows, stopwords=stop, show_progress=False), show_progress=False)
        _LEXICAL[bank] = cached = ((bank.version, window, stop_name), index)
    words = bm25s.tokenize([query], stopwords=stop, show_progress=False, return_ids=False)[0]
    if not words:
        return torch.zeros(bank.n_chunks, dtype=torch.float64)
    return torch.from_numpy(cached[1].get_scores(words).astype(np.float64))


def reciprocal_rank_fusion(*scores: torch.Tensor, weights: tuple[float, ...] | None = None) -> torch.Tensor:
    """Score vectors [Nc] -> [Nc]: the sum over them of weight / (k + the chunk's rank in each), k the
    fusion constant ``settings.SEARCH.rrf_k`` (weights 1 by
    default); a chunk a ranking scores 0 (BM25: no word in common) gets nothing from it, whatever the order of
    the ties."""
    out = torch.zeros(len(scores[0]), dtype=torch.float64)
    k = settings.SEARCH.rrf_k
    for s, w in zip(scores, weights or (1.0,) * len(scores)):
        rank = torch.empty_like(out)
        rank[torch.argsort(s, descending=True)] = torch.arange(1, len(s) + 1, dtype=torch.float64)
        out += torch.where(s > 0, w / (k + rank), 0.0)
    return out


def hybrid_chunks(model: LongMemModel, bank: MemoryBank, query: str, search_top: int = 6, *,
                  window: int | None = None, lexical_weight: float | None = None,
                  gap: int | None = None, memory_slots: int | None = None) -> list[Retrieved]:
    """Like ``rank_chunks``, ranked by the reciprocal-rank fusion of the model's search (``chunk_scores``) and BM25
    over the words around each chunk (``lexical_scores``); ``Retrieved.score`` is the fused score. Beyond the paper:
    the paper's search uses the model's keys only. ``window``, ``lexical_weight`` and ``memory_slots`` default to
    ``settings.SEARCH``; ``memory_slots`` of the ``search_top`` places go to the model's own best chunks that the fusion did not list (``with_memory_slots``)."""
    model.check_bank(bank)
    if bank.n_chunks == 0 or not model.tokenizer(query, add_special_tokens=False)["input_ids"]:
        return []
    conf = settings.SEARCH
    lexical_weight = conf.lexical_weight if lexical_weight is None else lexical_weight
    own = chunk_scores(model, bank, query)
    scores, weights = [own, lexical_scores(bank, query, window)], [1.0, lexical_weight]
    sense = meaning.meaning_scores(model, bank, query) if meaning.available(model) else None
    if sense is not None:  # cosines in [-1, 1], shifted so every chunk gets its rank's share
        scores.append(sense + 1.0)
        weights.append(conf.meaning_weight)
    fused = reciprocal_rank_fusion(*scores, weights=tuple(weights))
    gap = spread_gap(bank) if gap is None else gap
    slots = conf.memory_slots if memory_slots is None else memory_slots
    chosen = spread_top(fused, bank.chunk_source, search_top, gap)
    best_own = spread_top(own, bank.chunk_source, slots, gap) if slots > 0 else []
    mine = with_memory_slots(chosen, best_own, bank.chunk_source, gap)
    best_sense = (spread_top(sense, bank.chunk_source, conf.meaning_slots, gap)
                  if sense is not None and conf.meaning_slots > 0 and word_share(bank, query, scores[1], window)
                  < conf.meaning_below else [])
    mine = as_themselves(with_memory_slots(mine, best_sense, bank.chunk_source, gap), best_sense, bank.chunk_source,
                         gap)
    # the meaning search's best are listed as themselves and keep their name: they are what narrow() anchors
    by = lambda i: "meaning" if i in best_sense else "hybrid" if i in chosen else "memory"  # noqa: E731
    return [r for i in mine for r in at_positions(bank, fused, [i], by(i))]


def word_share(bank: MemoryBank, query: str, lexical: torch.Tensor, window: int | None = None) -> float:
    """The share of the query's words (``stop_words`` dropped) found in the words around BM25's best chunk
    (``lexical``: ``lexical_scores``; ``window`` chunks each side): high where the question's own words point at a
    passage, 0 where no chunk shares a word with it."""
    stop = settings.SEARCH.lexical_stop_words or stop_words()
    asked = query_words(query, stop)
    if not asked or float(lexical.max()) <= 0:
        return 0.0
    window = settings.SEARCH.lexical_window if window is None else window
    best, ids, src = int(lexical.argmax()), bank.chunk_ids, bank.chunk_source
    around = "".join(bank.chunk_info(int(ids[j])).text for j in range(max(0, best - window),
                                                                       min(len(ids), best + window + 1))
                     if src[j] == src[best])
    return len(asked & query_words(around, stop)) / len(asked)


def query_words(text: str, stop) -> set[str]:
    """The words of ``text`` as BM25 tokenizes them, ``stop`` (a word list, or bm25s's list name) dropped."""
    import bm25s
    return set(bm25s.tokenize([text], stopwords=stop, show_progress=False, return_ids=False)[0])


def anchor_count(model: LongMemModel) -> int:
    """How many of the hybrid listing's chunks are kept for a search's own best (``memory_slots``, and
    ``meaning_slots`` where the checkpoint trained the meaning search): the sentences holding them are read back."""
    conf = settings.SEARCH
    return conf.memory_slots + (conf.meaning_slots if meaning.available(model) else 0)


def as_themselves(listed: list[int], best: list[int], sources: np.ndarray, gap: int) -> list[int]:
    """Positions ``listed`` with each of ``best`` (the meaning search's own best) that the listing holds only a
    neighbour of (within ``gap`` chunks, same source) put in that neighbour's place: the passage read back is the
    same, but the chunk is the meaning search's own, so its sentence is the one anchored (``sentences.narrow``)."""
    out = list(listed)
    for b in best:
        if b in out:
            continue
        near = [k for k, j in enumerate(out) if j not in best and abs(j - b) <= gap and sources[j] == sources[b]]
        if near:
            out[near[0]] = b
    return out


def with_memory_slots(fused: list[int], own: list[int], sources: np.ndarray, gap: int) -> list[int]:
    """Positions ``fused`` (best first) with its last places given to the positions ``own`` (the model's own
    best) that lie more than ``gap`` chunks from every listed one of their source; each goes in second place, after
    the fusion's best (read-back fits passages in list order, so a place at the end could be cut)."""
    near = lambda i, j: abs(i - j) <= gap and sources[i] == sources[j]  # noqa: E731
    extra = [i for i in own if not any(near(i, j) for j in fused)]
    if not extra:
        return fused
    kept = fused[:max(1, len(fused) - len(extra))]
    return kept[:1] + extra[:len(fused) - len(kept)] + kept[1:]


def lexical_chunks(model: LongMemModel, bank: MemoryBank, query: str, search_top: int = 6, *,
                   window: int | None = None, gap: int | None = None) -> list[Retrieved]:
    """Like ``hybrid_chunks`` with its BM25 side alone (``lexical_scores``): chunks sharing no word with the query
    are not listed. What the hybrid adds to BM25 is measured against this (``eval-qa --searches``)."""
    model.check_bank(bank)
    if bank.n_chunks == 0:
        return []
    return [r for r in listed(bank, lexical_scores(bank, query, window), search_top, gap, "bm25") if r.score > 0]


def meaning_chunks(model: LongMemModel, bank: MemoryBank, query: str, search_top: int = 6, *,
                   gap: int | None = None) -> list[Retrieved]:
    """Like ``rank_chunks``, ranked by the meaning search alone (``meaning.meaning_scores``: the sentence's score
    for the query in the trained space); empty where the checkpoint did not train it."""
    model.check_bank(bank)
    if bank.n_chunks == 0 or not meaning.available(model):
        return []
    return listed(bank, meaning.meaning_scores(model, bank, query), search_top, gap, "meaning")


# the searches a mode can read back from, by ``answer.Mode.read_back``: the model's own memory search (the paper's
# keys and the SideNet's queries), that search fused with BM25, and BM25 alone (a yardstick for the other two)
SEARCHES = {"model": rank_chunks, "hybrid": hybrid_chunks, "bm25": lexical_chunks, "meaning": meaning_chunks}
