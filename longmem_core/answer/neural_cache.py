"""A copy path from memory: a training-free neural cache over what followed each stored token.

Grave et al. 2017 ("Improving neural language models with a continuous cache") and kNN-LM (Khandelwal et al.
2020): every token read into memory leaves (state that predicted the next token, the next token). At a new
state h the cache proposes

    p_cache(w) = sum over stored i with next_i = w of softmax_i(theta * cos(h, h_i))

and the model predicts p = (1 - lam) p_LM + lam p_cache. No training: the state is the backbone's final
hidden state after its final norm (the input of the LM head, the state that *predicts* the next token; the
memory layer's keys name the token itself, docs/DESIGN.md section 2), projected by a fixed random orthonormal
matrix to ``dim`` numbers and stored unit-length in float16, next to the next token's id (int32).
RAM: 2 * dim + 8 bytes per stored token (264 at the default 128: the key, the token and the next token).
Its tuned numbers (width, sharpness, weights, the exact copy's lengths) are ``settings.NEURAL_CACHE``.

Measured on a tuning book, the state cache alone does not read a pass key back in chat (the nearest stored
states to the answer's "The pass key is" were not the needle's). What does is the exact copy kept beside it
(``TokenCache.match``): where the last >= ``min_match`` tokens of the prompt and answer repeat stored text, what
followed there is mixed in with a weight growing with the repeat (``copy_weight``), until the answer ends a
sentence. A tokens-only cache (``dim`` 0, 8 bytes a token, no forward to build) keeps just that.

Shape legend: T tokens, C backbone width, P projected width (``dim``), N stored tokens, V vocabulary.
"""
from __future__ import annotations

import math
import weakref

import torch

from ..model import generation
from ..model.segments import segment_tokens
from ..model.generation import Proposal, Step
from ..memory.memory_bank import MemoryBank
from ..model.model import Generation, LongMemModel, MemorizeStats
from . import settings

_SETTING = "setting"  # a ``layer`` argument left to ``settings.NEURAL_CACHE.layer`` (there None is the final state)
_STORES: "weakref.WeakKeyDictionary[MemoryBank, tuple[tuple[int, int, int], TokenCache]]" = weakref.WeakKeyDictionary()


class TokenCache:
    """(projected state -> next token) pairs, append-only, oldest first."""

    def __init__(self, width: int, dim: int | None = None, seed: int = 0, device: torch.device | str = "cpu",
                 layer: int | None = None) -> None:
        dim = settings.NEURAL_CACHE.dim if dim is None else dim
        self.layer = layer  # hidden state keyed on: H[layer] (output of block layer - 1); None: the final normed one
        if dim < width:
            g = torch.Generator().manual_seed(seed)
            q, _ = torch.linalg.qr(torch.randn(width, max(dim, 1), generator=g))  # [C, P] orthonormal columns
            # dim 0: no states kept, only the tokens (the exact copy works, the state cache proposes nothing)
            self.projection = q[:, :dim].contiguous().to(device)
        else:  # at or above the width: the states as they are
            self.projection = torch.eye(width, device=device)
        self.dim = self.projection.shape[1]
        self.keys = torch.empty(0, self.dim, dtype=torch.float16, device=device)  # [N, P] unit length
        self.next_ids = torch.empty(0, dtype=torch.int32, device=device)  # [N]
        self.ids = torch.empty(0, dtype=torch.int32, device=device)  # [N] the stored tokens themselves

    def __len__(self) -> int:
        return self.next_ids.shape[0]

    def nbytes(self) -> int:
        """RAM of what is stored (the projection matrix is shared, counted apart in ``fixed_bytes``)."""
        return sum(t.numel() * t.element_size() for t in (self.keys, self.next_ids, self.ids))

    def fixed_bytes(self) -> int:
        return self.projection.numel() * self.projection.element_size()

    def project(self, states: torch.Tensor) -> torch.Tensor:
        """states [..., C] -> unit-length projected states [..., P] float32."""
        z = states.float() @ self.projection.to(states.device)
        return z / z.norm(dim=-1, keepdim=True).clamp(min=1e-6)

    def add(self, states: torch.Tensor, ids: torch.Tensor | list[int], next_ids: torch.Tensor | list[int]) -> None:
        """states [T, C] (the key states), ids [T]: the tokens read, next_ids [T]: the token that followed each."""
        ids = torch.as_tensor(ids, dtype=torch.int32, device=self.keys.device)
        next_ids = torch.as_tensor(next_ids, dtype=torch.int32, device=self.keys.device)
        if not states.shape[0] == ids.shape[0] == next_ids.shape[0]:
            raise ValueError(f"{states.shape[0]} states, {ids.shape[0]} tokens and {next_ids.shape[0]} next tokens")
        if self.dim:  # a tokens-only cache (dim 0) keeps no states: nothing to project
            self.keys = torch.cat([self.keys, self.project(states).to(self.keys.device, torch.float16)])
        self.ids = torch.cat([self.ids, ids])
        self.next_ids = torch.cat([self.next_ids, next_ids])

    def match(self, context: list[int], vocab: int, max_n: int | None = None) -> tuple[torch.Tensor, int]:
        """Exact copy: the stored places whose preceding tokens repeat the longest suffix of ``context`` (up to
        ``max_n`` tokens, default ``settings.NEURAL_CACHE.max_match``), and what followed them. -> p_match [V] over
        those next tokens, and the match length (0 when the context's last token was never stored)."""
        max_n = settings.NEURAL_CACHE.max_match if max_n is None else max_n
        if len(self) == 0 or not context:
            return torch.zeros(vocab), 0
        tail = torch.tensor(context[-max_n:][::-1], dtype=torch.int32, device=self.ids.device)  # newest first
        pos = (self.ids == tail[0]).nonzero().flatten()  # [M] places holding the last token
        length = torch.ones_like(pos)
        alive = torch.ones_like(pos, dtype=torch.bool)
        for k in range(1, tail.shape[0]):
            prev = pos - k
            ok = alive & (prev >= 0) & (self.ids[prev.clamp(min=0)] == tail[k])
            length += ok.long()
            alive = ok
        if pos.numel() == 0:
            return torch.zeros(vocab), 0
        best = int(length.max())
        chosen = pos[length == best]
        p = torch.zeros(vocab)
        p.scatter_add_(0, self.next_ids[chosen].long().cpu(), torch.full((chosen.numel(),), 1.0 / chosen.numel()))
        return p, best

    def distribution(self, states: torch.Tensor, vocab: int, theta: float | None = None,
                     top: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """states [T, C] -> p_cache [T, V] and each state's best cosine similarity [T] (-1 when empty). ``theta``,
        ``top`` (the stored states the softmax runs over): default ``settings.NEURAL_CACHE``'s."""
        conf = settings.NEURAL_CACHE
        theta, top = conf.theta if theta is None else theta, conf.top_neighbours if top is None else top
        T = states.shape[0]
        if len(self) == 0 or self.dim == 0:
            return torch.zeros(T, vocab), torch.full((T,), -1.0)
        sims = self.project(states) @ self.keys.float().T  # [T, N] cosine similarities
        k = min(top, sims.shape[1])
        best, idx = sims.topk(k, dim=-1)  # [T, k]
        weights = torch.softmax(theta * best, dim=-1)  # [T, k]
        p = torch.zeros(T, vocab, device=sims.device)
        p.scatter_add_(1, self.next_ids[idx].long(), weights)
        return p.cpu(), best[:, 0].cpu()


def final_states(model: LongMemModel, hidden: torch.Tensor) -> torch.Tensor:
    """The backbone's last hidden states [.., C] through its final norm: the input of its LM head."""
    return model.backbone.final_norm(hidden)


def key_states(model: LongMemModel, cache: "TokenCache", hidden_states: list[torch.Tensor]) -> torch.Tensor:
    """The states the cache is keyed on, from a backbone output's hidden states (each [B, T, C])."""
    if cache.layer is None:
        return final_states(model, hidden_states[-1])
    return hidden_states[cache.layer]


def new_cache(model: LongMemModel, dim: int | None = None, layer: int | None | str = _SETTING) -> TokenCache:
    """An empty cache for ``model``, keyed on H[layer] (None: the final normed state). ``dim``, ``layer``: default
    ``settings.NEURAL_CACHE``'s."""
    layer = settings.NEURAL_CACHE.layer if layer == _SETTING else layer
    if layer is not None and not 0 <= layer <= model.memory_layer:
        raise ValueError(f"cache layer {layer} must be in 0..{model.memory_layer} (the memory layer), or None")
    return TokenCache(model.backbone.d_model, dim, seed=model.cfg.seed, device=model.device, layer=layer)


def attach(bank: MemoryBank, cache: TokenCache) -> None:
    """Keep ``cache`` with ``bank`` as it is now, for as long as the bank lives, so the answer modes find it."""
    _STORES[bank] = (bank.version, cache)


def cache_for(bank: MemoryBank) -> TokenCache | None:
    """The cache attached to ``bank``, if the bank has not changed since (a new document or an eviction makes
    it stale: None)."""
    entry = _STORES.get(bank)
    return entry[1] if entry is not None and entry[0] == bank.version else None


def retained_texts(bank: MemoryBank) -> list[str]:
    """Per source, the stretch of its text that the bank still holds chunks of (first to last retained
    character): what an exact copy may draw on. Evicted text is not memory any more."""
    src, chars = bank.chunk_source, bank.chunk_chars  # [Nc], [Nc, 2]
    texts = []
    for s in sorted({int(x) for x in src.tolist() if x >= 0}):
        spans = chars[(src == s) & (chars[:, 0] >= 0)]
        if len(spans):
            texts.append(bank.sources[s]["text"][int(spans[:, 0].min()):int(spans[:, 1].max())])
    return texts


@torch.no_grad()
def memorize(model: LongMemModel, text: str, bank: MemoryBank | None, cache: TokenCache, source: str = "text",
             ) -> MemorizeStats:
    """Read ``text`` once, in segments, into both ``bank`` (the memory layer's keys and values, with source and
    character spans, as ``model.memorize`` writes them) and ``cache`` (state -> next token). The backbone runs
    to its last block for a cache keyed on the final state (``model.memorize`` stops at the memory layer), so
    that costs a full forward; a cache keyed on H[layer <= memory layer] costs what ``model.memorize`` does."""
    import time
    t0 = time.perf_counter()
    enc = model.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    if not ids:
        raise ValueError(f"{source}: no tokens to memorize")
    if bank is not None:
        model.check_bank(bank)
        src = bank.add_source(source, text)
    prefix = model.with_sink([])
    step = model.segment_length - len(prefix)
    chunks = 0
    for s in range(0, len(ids), step):
        piece = ids[s:s + step]
        x = torch.tensor([prefix + piece], device=model.device)
        out = model.backbone(x, memory_layer=model.memory_layer,  # stops at the memory layer if the cache allows
                             stop_after=None if cache.layer is None else model.memory_layer,
                             last_kv_only=cache.layer is not None)
        sl = slice(len(prefix), len(prefix) + len(piece))
        if bank is not None:
            chunks += bank.add(out.memory_keys[0, sl], out.memory_values[0, sl], source=src, token_start=s,
                               char_spans=offsets[s:s + len(piece)])
        following = ids[s + 1:s + 1 + len(piece)]  # the token after each one (the text's last token has none)
        cache.add(key_states(model, cache, out.hidden_states)[0, sl][:len(following)], piece[:len(following)],
                  following)
    if bank is not None:
        attach(bank, cache)
    return MemorizeStats(tokens=len(ids), chunks=chunks, seconds=time.perf_counter() - t0)


def cache_from_sources(model: LongMemModel, bank: MemoryBank, dim: int = 0) -> TokenCache:
    """The cache attached to ``bank`` (if the bank has not changed since), or else one made from the text the
    bank still holds (``retained_texts``) and attached to it. With ``dim`` 0 (default) it holds the tokens only:
    no forward, just tokenizing, so only the exact copy works; with ``dim`` > 0 the texts are read again (a full
    forward each). Texts read without a source (``memorize_ids``) cannot be recovered."""
    cache = cache_for(bank)
    if cache is None:
        texts = retained_texts(bank)
        if dim:
            cache = new_cache(model, dim)
            for text in texts:
                memorize(model, text, None, cache)
        else:
            cache = tokens_cache(model, texts)
        attach(bank, cache)
    return cache


def tokens_cache(model: LongMemModel, texts: list[str]) -> TokenCache:
    """A tokens-only cache (``dim`` 0: the exact copy only) of ``texts``: they are tokenized, nothing is read."""
    cache = new_cache(model, 0)
    for text in texts:
        ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) > 1:
            cache.add(torch.empty(len(ids) - 1, 0), ids[:-1], ids[1:])  # tokens only: no states
    return cache


def mix(logits: torch.Tensor, p_cache: torch.Tensor, lam: float | torch.Tensor) -> torch.Tensor:
    """log((1 - lam) softmax(logits) + lam p_cache): logits [T, V], p_cache [T, V] -> log-probs [T, V]. ``lam``: one
    weight, or one per row [T, 1] (each in [0, 1))."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    if not isinstance(lam, torch.Tensor):
        if lam <= 0:
            return logp
        return torch.logaddexp(logp + math.log1p(-lam), torch.log(p_cache.clamp(min=1e-30)) + math.log(lam))
    lam = lam.float()  # [T, 1]
    return torch.logaddexp(logp + torch.log1p(-lam), torch.log(p_cache.clamp(min=1e-30)) + torch.log(lam.clamp(min=1e-30)))


# -- generation with the cache --

def copy_weight(n: int) -> float:
    """Weight of an exact copy after a repeat of n >= ``settings.NEURAL_CACHE.min_match`` tokens: 0.5, 0.75, then
    0.95."""
    return min(0.95, 0.25 * (n - settings.NEURAL_CACHE.min_match + 2))


class CopyMix:
    """The copy path as a ``generation.LogitsHook``: each next token from (1 - lam) p_LM + lam p_cache, and where
    the last ``settings.NEURAL_CACHE.min_match`` or more tokens of the context (prompt and answer) repeat stored
    text exactly, the exact copy (``TokenCache.match``) in the cache's place, weighted by ``copy_weight``, until the
    answer ends a sentence. One per generation (it remembers where the current sentence began). ``lam``, ``theta``,
    ``gated``: default ``settings.NEURAL_CACHE``'s (``lam``: ``lambda_answer``)."""

    def __init__(self, model: LongMemModel, cache: TokenCache, lam: float | None = None, theta: float | None = None,
                 gated: bool | None = None) -> None:
        conf = settings.NEURAL_CACHE
        self.model, self.cache = model, cache
        self.lam = conf.lambda_answer if lam is None else lam
        self.theta = conf.theta if theta is None else theta
        self.gated = conf.gated if gated is None else gated
        self.vocab = model.backbone.lm_head.weight.shape[0]
        self.since = 0  # the exact copy matches the context from here on
        self.read = 0  # context tokens looked at for sentence ends

    def __call__(self, step: Step, context: list[int]) -> Proposal:
        if self.read == 0:
            self.read = len(context)  # the prompt: its sentences do not end a copy
        for i in range(self.read, len(context)):  # the tokens generated since the last step
            if generation.SENTENCE_END.search(self.model.tokenizer.decode([context[i]])):
                self.since = i + 1  # a copy ends with its sentence: what follows is the backbone's again
        self.read = len(context)
        logits = step.logits.float().cpu()[None]  # [1, V]
        p_cache = torch.zeros(1, self.vocab)
        weight = 0.0
        if self.cache.dim and step.hidden_states is not None:
            p_cache, _ = self.cache.distribution(key_states(self.model, self.cache, step.hidden_states)[0, -1:],
                                                 self.vocab, self.theta)
            weight = self.lam * float(p_cache.max()) if self.gated else self.lam
        p_match, n = self.cache.match(context[self.since:], self.vocab)
        copying = n >= settings.NEURAL_CACHE.min_match
        p_match = self.without_stops(p_match) if copying else p_match
        if copying and p_match.sum() > 0:  # an exact repeat of the last n tokens: copy what followed it
            copied = frozenset(int(t) for t in p_match.nonzero().flatten())
            return Proposal(mix(logits, p_match[None], copy_weight(n))[0], copied, n)
        return Proposal(mix(logits, p_cache, weight)[0])

    def without_stops(self, p_match: torch.Tensor) -> torch.Tensor:
        """p_match [V] without the tokens that end a sentence, renormalized (all zero if nothing is left): the copy
        path copies what was stored up to a sentence's end, and whether the answer ends there stays the backbone's
        choice (copying the stop after a value cut a list of values short)."""
        ids = p_match.nonzero().flatten().tolist()
        keep = [t for t in ids if not generation.SENTENCE_END.search(self.model.tokenizer.decode([t]))]
        out = torch.zeros_like(p_match)
        if keep:
            out[keep] = p_match[keep]
            out /= out.sum()
        return out


def generate(model: LongMemModel, prompt_ids: list[int], cache: TokenCache, *, max_new_tokens: int = 64,
             lam: float | None = None, theta: float | None = None, gated: bool | None = None,
             temperature: float = 0.0, top_p: float = 0.9, seed: int | None = None) -> Generation:
    """Stream the backbone's continuation of ``prompt_ids`` with the copy path mixed in (``CopyMix``; ``lam``,
    ``theta``, ``gated`` default to ``settings.NEURAL_CACHE``'s): the one token loop of ``generation.generate``, its
    repetition guard included. ``gated``: lam is scaled by the cache's confidence (its largest probability), so a
    cache that finds no clear precedent leaves the backbone alone.
    Same ``Generation`` object as ``model.generate`` (no memory-layer trace)."""
    return generation.generate(model, prompt_ids, None, max_new_tokens=max_new_tokens, temperature=temperature,
                               top_p=top_p, backbone_only=True, seed=seed,
                               logits_hook=CopyMix(model, cache, lam, theta, gated))


# -- perplexity with the cache --

@torch.no_grad()
def perplexity(model: LongMemModel, text: str, *, max_tokens: int | None = None,
               lams: tuple[float, ...] | None = None, thetas: tuple[float, ...] | None = None,
               dim: int | None = None, layer: int | None | str = _SETTING, rows: int = 256) -> dict:
    """Perplexity of the backbone alone (``segments.segment_tokens`` tokens of local context, as
    ``evaluate.perplexity`` reads) and of the backbone mixed with a cache of the *preceding* segments, for every
    (theta, lam) pair (default: ``settings.NEURAL_CACHE``'s ``theta`` and ``lambda_ppl``; ``dim``, ``layer`` as in
    ``new_cache``). ``segments`` lists each segment's scored tokens and summed NLLs, so a caller can choose
    (theta, lam) on some segments and report the others."""
    conf = settings.NEURAL_CACHE
    lams = (conf.lambda_ppl,) if lams is None else lams
    thetas = (conf.theta,) if thetas is None else thetas
    ids = model.tokenizer(text, add_special_tokens=False)["input_ids"][:max_tokens]
    cache = new_cache(model, dim, layer)
    seg = segment_tokens(model)
    vocab = model.backbone.lm_head.weight.shape[0]
    grid = [(theta, lam) for theta in thetas for lam in lams]
    segments = []
    for s in range(0, len(ids), seg):
        piece = ids[s:s + seg]
        if len(piece) < 2:
            break
        x = torch.tensor([model.with_sink(piece)], device=model.device)
        start = x.shape[1] - len(piece)
        hs = model.backbone(x).hidden_states
        finals = final_states(model, hs[-1][0, start:])  # [T, C]
        states = key_states(model, cache, hs)[0, start:]  # [T, C]
        targets = x[0, start + 1:].cpu()  # [T - 1]
        nll = {"local": 0.0, **{_key(t, lam): 0.0 for t, lam in grid}}
        for r in range(0, len(piece) - 1, rows):  # rows at a time: similarities are [rows, N]
            h = states[r:min(r + rows, len(piece) - 1)]
            logits = model.backbone.lm_head(finals[r:r + h.shape[0]]).float().cpu()
            tgt = targets[r:r + h.shape[0]]
            nll["local"] += float(torch.nn.functional.cross_entropy(logits, tgt, reduction="sum"))
            for theta in thetas:
                p_cache, _ = cache.distribution(h, vocab, theta)
                for lam in lams:
                    logp = mix(logits, p_cache, lam)
                    nll[_key(theta, lam)] -= float(logp.gather(1, tgt[:, None]).sum())
        segments.append({"start": s, "tokens": len(piece) - 1, "nll": nll})
        following = ids[s + 1:s + 1 + len(piece)]
        cache.add(states[:len(following)], piece[:len(following)], following)
    scored = sum(g["tokens"] for g in segments) or 1
    total = {k: sum(g["nll"][k] for g in segments) for k in segments[0]["nll"]} if segments else {}
    return {"tokens": scored, "ppl_local": math.exp(total.get("local", 0.0) / scored),
            "ppl_cache": {k: math.exp(v / scored) for k, v in total.items() if k != "local"},
            "bytes_per_token": 2 * cache.dim + 8, "segments": segments}


def _key(theta: float, lam: float) -> str:
    return f"theta={theta:g},lam={lam:g}"
