"""What the classification modes compute from the demonstrations' stored keys (``icl_modes.py`` runs the modes;
``icl_select.py`` chooses between them with the same functions): one key per demonstration and per test text, the
nearest demonstrations, the k-NN vote, label centroids over centred keys, contextual calibration, and label
distributions as predictions.

Shape legend: n demonstrations, L labels, G*D a memory key flattened over the kv heads.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Sequence

import torch

from . import settings
from .icl import DEFAULT_K, DemonstrationMemory, Prediction, classify, context_text, query_prompt
from ..memory.memory_bank import MemoryBank
from ..model.model import LongMemModel, PromptCache
from ..model.scoring import length_batches

CONTENT_FREE = ("N/A", "", "[MASK]")  # content-free inputs of contextual calibration (Zhao et al. 2021)


@dataclass
class DemonstrationKeys:
    """One unit-length mean memory key per demonstration [n, G*D], from a bank that memorized them."""

    memory: DemonstrationMemory
    keys: torch.Tensor  # [n, G*D] float32, unit length; rows of demonstrations with no chunk are zero
    mean: torch.Tensor | None = None  # [G*D]: the mean taken out of ``keys`` (``centred``), None if not centred


def demonstration_keys(bank: MemoryBank, memory: DemonstrationMemory, template: str) -> DemonstrationKeys:
    """Mean of the chunk-mean keys whose chunk's middle falls in each demonstration's text (label excluded)."""
    source = next(i for i, s in enumerate(bank.sources) if s["name"] == memory.source)
    offset = template.index("{text}")
    spans = [(s + offset, s + offset + len(t)) for s, (t, _) in zip(memory.starts, memory.examples)]
    means = torch.from_numpy(bank.chunk_keys())  # [G, Nc, D]
    G, Nc, D = means.shape
    flat = means.permute(1, 0, 2).reshape(Nc, G * D)  # [Nc, G*D]
    sums = torch.zeros(len(spans), G * D)
    counts = torch.zeros(len(spans))
    text_starts = [a for a, _ in spans]
    for row, (src, (c0, c1)) in enumerate(zip(bank.chunk_source, bank.chunk_chars)):
        if src != source or c0 < 0:
            continue
        mid = (int(c0) + int(c1)) / 2
        j = bisect.bisect_right(text_starts, mid) - 1
        if j >= 0 and spans[j][0] <= mid < spans[j][1]:
            sums[j] += flat[row]
            counts[j] += 1
    keys = sums / counts.clamp(min=1)[:, None]
    return DemonstrationKeys(memory, torch.nn.functional.normalize(keys, dim=-1))


# query prompts read in one batch by ``text_keys``, and their tokens, pads included (no caches: the hidden states
# up to the memory layer are what the batch holds)
KEY_ROWS_AT_ONCE = 32
KEY_TOKENS_AT_ONCE = 2048


def _query_tokens(model: LongMemModel, text: str, template: str) -> tuple[list[int], list[int]]:
    """The query prompt's token ids (without the sink token) and the positions among them of the text's own tokens
    (all of them if none overlaps the text), as ``text_key`` pools them."""
    prompt = query_prompt(template, text)
    begin = template.index("{text}")
    enc = model.tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)
    inside = [i for i, (a, b) in enumerate(enc["offset_mapping"]) if b > begin and a < begin + len(text)]
    return enc["input_ids"], inside or list(range(len(enc["input_ids"])))


def text_key(model: LongMemModel, text: str, template: str) -> torch.Tensor:
    """The test text's mean memory-layer key over its text tokens, read as its query prompt: [G*D] unit length."""
    ids, inside = _query_tokens(model, text, template)
    keys, _ = model.segment_kv(ids)  # [n, G, D]
    pooled = keys[inside].float().mean(0).flatten().cpu()
    return torch.nn.functional.normalize(pooled, dim=0)


def text_keys(model: LongMemModel, texts: Sequence[str], template: str) -> torch.Tensor:
    """``text_key`` of each text, [n_texts, G*D] unit length, equal up to float rounding; the query prompts are read
    up to the memory layer in batches of similar lengths (``KEY_ROWS_AT_ONCE`` rows, ``KEY_TOKENS_AT_ONCE`` tokens at
    most), right-padded, instead of one at a time. Attention is causal and every row's positions count from 0 (the
    sink token's), so a text's tokens never see the pads after them and read as they would alone: no padding mask
    is needed. For the same reason a row ends at its text's last token (the template's words after it change none
    of the keys pooled)."""
    rows = []  # per text: its ids opened by the sink token up to its last own token, and where its own tokens sit
    for text in texts:
        ids, inside = _query_tokens(model, text, template)
        opened = model.with_sink(ids)
        at = [len(opened) - len(ids) + i for i in inside]
        rows.append((opened[:at[-1] + 1], at))
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    out = torch.zeros(len(texts), model.backbone.n_kv_heads * model.backbone.head_dim)  # [n_texts, G*D]
    for part in length_batches([len(ids) for ids, _ in rows], KEY_ROWS_AT_ONCE, KEY_TOKENS_AT_ONCE):
        width = max(len(rows[i][0]) for i in part)
        batch = torch.tensor([rows[i][0] + [pad] * (width - len(rows[i][0])) for i in part],
                             device=model.device)  # [B, T]
        keys, _ = model.memory_kv(batch)  # [B, T, G, D]
        for r, i in enumerate(part):
            out[i] = keys[r, rows[i][1]].float().mean(0).flatten().cpu()
    return torch.nn.functional.normalize(out, dim=-1)


def nearest(keys: DemonstrationKeys, query: torch.Tensor, n: int) -> list[tuple[int, float]]:
    """The ``n`` demonstrations most similar to ``query`` [G*D]: (index, cosine), best first."""
    sims = keys.keys @ query  # [n_demonstrations]
    best = sims.topk(min(n, sims.shape[0]))
    return [(int(i), float(s)) for s, i in zip(best.values, best.indices)]


def knn_vote(keys: DemonstrationKeys, query: torch.Tensor, labels: Sequence[str],
             neighbours: int | None = None) -> Prediction:
    """Majority label of the ``neighbours`` nearest demonstrations (default ``settings.MODE.neighbours``);
    ``scores``: votes + summed similarity / (neighbours + 1)."""
    neighbours = settings.MODE.neighbours if neighbours is None else neighbours
    scores = {label: 0.0 for label in labels}
    for i, sim in nearest(keys, query, neighbours):
        label = keys.memory.examples[i][1]
        if label in scores:
            scores[label] += 1 + sim / (neighbours + 1)  # a vote, and a tie-break below one vote
    return Prediction(label=max(labels, key=lambda label: scores[label]), scores=scores)


def vote_distribution(sims: torch.Tensor, onehot: torch.Tensor, neighbours: int | None = None,
                      temperature: float | None = None, balanced: bool = False) -> torch.Tensor:
    """Label distributions of the ``neighbours`` most similar demonstrations' votes: [N, L].

    ``sims`` [N, M]: cosine of each test text to each demonstration; ``onehot`` [M, L]: their labels. A vote weighs
    ``1 + sim / (neighbours + 1)`` (one vote, and a tie-break below one vote, as ``knn_vote``), or with
    ``temperature`` ``exp(sim / temperature)``. ``balanced``: each label's mass divided by its share of the
    demonstrations, so a label common among them does not win by its count alone (beyond the paper)."""
    neighbours = settings.MODE.neighbours if neighbours is None else neighbours
    top = sims.topk(min(neighbours, sims.shape[1]), dim=-1)  # [N, n]
    weights = (1 + top.values / (neighbours + 1)) if temperature is None else \
        torch.exp((top.values - top.values[:, :1]) / temperature)  # [N, n]
    mass = torch.einsum("nk,nkl->nl", weights, onehot[top.indices])  # [N, L]
    if balanced:
        mass = mass / (onehot.mean(0).clamp(min=1e-9))[None, :]
    return mass / mass.sum(-1, keepdim=True)


def calibrate(probs: torch.Tensor, content_free: torch.Tensor) -> torch.Tensor:
    """Contextual calibration (Zhao et al. 2021): label probabilities [..., L] divided by those the same prompt
    gives a content-free input [..., L], renormalised, so a prompt's bias towards a label is taken out."""
    q = probs / content_free.clamp(min=1e-9)
    return q / q.sum(-1, keepdim=True)


def kate_context(keys: DemonstrationKeys, query: torch.Tensor, template: str, k: int = DEFAULT_K) -> str:
    """The ``k`` demonstrations nearest to the query, formatted, the most similar last (next to the query)."""
    chosen = [keys.memory.examples[i] for i, _ in reversed(nearest(keys, query, k))]
    return context_text(template, chosen)


def centred(keys: DemonstrationKeys) -> DemonstrationKeys:
    """The keys less the demonstrations' mean key, unit length again: [n, G*D]. Mean-pooled keys share one large
    common direction, so raw cosines differ little between texts; taking it out lets the text-specific parts
    decide who is near (beyond the paper). ``mean`` is kept to centre the test texts' keys alike."""
    mean = keys.keys.mean(0)  # [G*D]
    return DemonstrationKeys(keys.memory, torch.nn.functional.normalize(keys.keys - mean, dim=-1), mean=mean)


def centre_query(keys: DemonstrationKeys, query: torch.Tensor) -> torch.Tensor:
    """A test text's key [G*D] centred as ``keys`` were (unchanged for keys that were not centred)."""
    return query if keys.mean is None else torch.nn.functional.normalize(query - keys.mean, dim=0)


def label_onehot(memory: DemonstrationMemory, labels: Sequence[str]) -> torch.Tensor:
    """[n_demonstrations, L]: 1 where a demonstration has that label (a row of zeros for a label not offered)."""
    out = torch.zeros(len(memory.examples), len(labels))
    for i, (_, label) in enumerate(memory.examples):
        if label in labels:
            out[i, list(labels).index(label)] = 1
    return out


def label_centroids(keys: DemonstrationKeys, labels: Sequence[str]) -> torch.Tensor:
    """Each label's mean demonstration key, unit length: [L, G*D] (zero for a label no demonstration has)."""
    onehot = label_onehot(keys.memory, labels)  # [M, L]
    sums = onehot.T @ keys.keys  # [L, G*D]
    return torch.nn.functional.normalize(sums / onehot.sum(0).clamp(min=1)[:, None], dim=-1)


def centroid_distribution(centroids: torch.Tensor, query: torch.Tensor,
                          temperature: float | None = None) -> torch.Tensor:
    """softmax(cosine of ``query`` [G*D] to each label centroid [L, G*D] / temperature): [L] (``temperature``
    default ``settings.MODE.centroid_temperature``)."""
    temperature = settings.MODE.centroid_temperature if temperature is None else temperature
    return torch.softmax(centroids @ query / temperature, dim=0)


def probabilities(scores: dict[str, float], labels: Sequence[str]) -> torch.Tensor:
    """Label log-probabilities renormalised over the labels: [L]."""
    return torch.softmax(torch.tensor([scores[label] for label in labels], dtype=torch.float32), dim=0)


def content_free_probabilities(model: LongMemModel, labels: Sequence[str], *, context: str, template: str,
                               bank: MemoryBank | None = None, cache: PromptCache | None = None) -> torch.Tensor:
    """What a prompt gives the content-free inputs, on average: [L] (contextual calibration's estimate of the
    prompt's own bias)."""
    return torch.stack([probabilities(classify(model, text, labels, context=context, bank=bank, template=template,
                                                top=0, cache=cache).scores, labels)
                        for text in CONTENT_FREE]).mean(0)


def from_probabilities(probs: torch.Tensor, labels: Sequence[str]) -> Prediction:
    """A prediction whose scores are the log of a label distribution [L] (ties: the first label)."""
    return Prediction(label=labels[int(probs.argmax())],
                      scores={label: float(torch.log(p.clamp(min=1e-12))) for label, p in zip(labels, probs)})
