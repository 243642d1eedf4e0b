"""Evaluations in the paper's style. Perplexity: every book read in segments, memory of the preceding ones."""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from ..model.model import LongMemModel
from ..model.segments import read_into_memory, segment_logits, segment_tokens

if TYPE_CHECKING:  # ppl_cache and ppl_adapt import this module
    from .ppl_adapt import Adaptation
    from .ppl_cache import CacheGrid


@torch.no_grad()
def perplexity(text: str, trained: LongMemModel, untrained: LongMemModel | None = None, max_tokens: int | None = None,
               progress: Callable[[int, int], None] | None = None, cache: CacheGrid | None = None,
               adapt: Adaptation | None = None) -> dict:
    """Perplexity on the same tokens for: the backbone with only the local segment, LongMem untrained and trained,
    and (``ppl_longmem_empty_memory``) the trained model reading an always-empty bank: the control that separates
    what memory brings from what training did to the local path (a trained memory layer also sees its segment).
    With ``cache`` (beyond the paper, ``ppl_cache``): also ``ppl_local_cache`` and ``ppl_longmem_cache``, the
    backbone alone and trained LongMem each mixed with a neural cache of the previous segments. With ``adapt``
    (beyond the paper, ``ppl_adapt``): also ``ppl_longmem_adapted``, a copy of the trained model whose memory
    branch keeps training on each segment once it has been scored (and with ``cache``, ``ppl_longmem_adapted_cache``)."""
    ids = trained.tokenizer(text, add_special_tokens=False)["input_ids"][:max_tokens]
    seg = segment_tokens(trained)
    systems = {"local": (trained, True), "longmem": (trained, False), "longmem_empty_memory": (trained, False)}
    if untrained is not None:
        systems["untrained"] = (untrained, False)
    trainer = None
    if adapt is not None:
        from .ppl_adapt import OnlineAdapter, adapted_copy
        systems["longmem_adapted"] = (adapted_copy(trained, adapt), False)
        trainer = OnlineAdapter(systems["longmem_adapted"][0], adapt)
    mixed = None
    if cache is not None:
        from .ppl_cache import CachePerplexity
        mixed = CachePerplexity(trained, cache, systems=tuple(n for n in ("local", "longmem", "longmem_adapted")
                                                              if n in systems))
    banks = {name: m.new_bank() for name, (m, local) in systems.items() if not local and name != "longmem_adapted"}
    writers = [name for name in banks if name != "longmem_empty_memory"]  # memory only ever holds previous segments
    if adapt is not None:  # the same frozen backbone writes the same keys: the adapted copy reads LongMem's bank
        banks["longmem_adapted"] = banks["longmem"]
    nll = {name: 0.0 for name in systems}
    scored = 0
    for s in range(0, len(ids), seg):
        piece = ids[s:s + seg]
        if len(piece) < 2:
            break
        outputs = {}
        for name, (m, local) in systems.items():
            logits, targets, _, _ = segment_logits(m, piece, banks.get(name), backbone_only=local)
            nll[name] += float(torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum"))
            if mixed is not None and name in mixed.systems:
                outputs[name] = logits
        scored += len(piece) - 1
        if mixed is not None:  # scored before this segment goes into the bank and the cache
            mixed.score(piece, outputs, targets)
        if trainer is not None and s + seg < len(ids):  # learns from the segment just scored, reading what preceded it
            trainer.learn(piece, banks["longmem_adapted"])
        for name in writers:
            systems[name][0].memorize_ids(piece, banks[name], token_start=s)
        if mixed is not None:
            mixed.remember(piece, ids[s + 1:s + 1 + len(piece)])
        if progress:
            progress(min(s + seg, len(ids)), len(ids))
    result = {"tokens": scored, **{f"ppl_{name}": math.exp(v / max(scored, 1)) for name, v in nll.items()}}
    if adapt is not None:
        result["adapt"] = {**adapt.to_dict(), "steps_taken": trainer.steps_taken}
    return {**result, **mixed.perplexities()} if mixed is not None else result


def length_split(n_tokens: int) -> str:
    """Book-length bucket, as the paper reports perplexity by length split."""
    for bound, name in ((100_000, "<100k"), (200_000, "100k-200k"), (400_000, "200k-400k")):
        if n_tokens < bound:
            return name
    return ">=400k"


def eval_ppl(files: list[str], trained: LongMemModel, untrained: LongMemModel | None, max_tokens: int | None,
             progress_factory=None, cache: CacheGrid | None = None, adapt: Adaptation | None = None) -> dict:
    per_book = {}
    for f in files:
        text = Path(f).read_text(encoding="utf-8")
        full = len(trained.tokenizer(text, add_special_tokens=False)["input_ids"])
        bar = progress_factory(Path(f).name) if progress_factory else None
        r = perplexity(text, trained, untrained, max_tokens, progress=bar, cache=cache, adapt=adapt)
        r["book_tokens"], r["split"] = full, length_split(full)
        per_book[Path(f).name] = r
    total = sum(r["tokens"] for r in per_book.values())
    summary = {"tokens": total}
    keys = ("ppl_local", "ppl_longmem", "ppl_untrained", "ppl_longmem_empty_memory", "ppl_local_cache",
            "ppl_longmem_cache", "ppl_longmem_adapted", "ppl_longmem_adapted_cache")
    for key in keys:
        if all(key in r for r in per_book.values()):
            summary[key] = math.exp(sum(math.log(r[key]) * r["tokens"] for r in per_book.values()) / max(total, 1))
    by_split: dict[str, list] = {}
    for r in per_book.values():
        by_split.setdefault(r["split"], []).append(r)
    summary["by_split"] = {
        split: {key: math.exp(sum(math.log(r[key]) * r["tokens"] for r in rs) / sum(r["tokens"] for r in rs))
                for key in keys if all(key in r for r in rs)}
        for split, rs in by_split.items()}
    grids = [r["cache_grid"] for r in per_book.values() if "cache_grid" in r]
    if grids and len(grids) == len(per_book):  # the same grid for every book: token-weighted, as above
        summary["cache_grid"] = {pair: {key: math.exp(sum(math.log(r["cache_grid"][pair][key]) * r["tokens"]
                                                          for r in per_book.values()) / max(total, 1))
                                        for key in grids[0][pair]} for pair in grids[0]}
    summary["books"] = per_book
    return summary


PASSKEY_QUESTION = " What is the pass key? The pass key is"
PASSKEY_CHAT_QUESTION = "What is the pass key?"  # asked through an answer mode (``mode=``)


def passkey_needle(key: int) -> str:
    return f" The pass key is {key}. Remember it. {key} is the pass key."


@torch.no_grad()
def passkey_trial(model: LongMemModel, filler_ids: list[int], length: int, rng, max_new_tokens: int = 8,
                  mode: str | None = None) -> dict:
    """One pass-key trial: a key hidden at a random depth of ``length`` tokens of real text, *outside* the local
    window, then asked for at the end. LongMem reads everything before the window into memory; the baseline
    is the backbone with the same local window only. Returns whether each found the key.

    ``mode`` None: LongMem is the paper's model continuing the local window and the question (raw text, the
    memory layer reading the bank). A mode of ``answer.MODES``: the memory part is read as a document (with its
    text, as an upload is) and ``answer.answer`` asks the question in that mode through the chat template."""
    tok = model.tokenizer
    key = rng.randrange(10_000, 100_000)
    needle = tok(passkey_needle(key), add_special_tokens=False)["input_ids"]
    question = tok(PASSKEY_QUESTION, add_special_tokens=False)["input_ids"]
    window = segment_tokens(model) - len(question) - max_new_tokens  # local context before the question
    n_filler = length - len(needle) - len(question)
    if n_filler - window < 1 or len(filler_ids) < n_filler:
        raise ValueError(f"length {length} leaves no room outside the {window}-token window, or the text is too short")
    start = rng.randrange(0, len(filler_ids) - n_filler + 1)
    filler = filler_ids[start:start + n_filler]
    depth = rng.randrange(0, n_filler - window)  # the key always lands in memory, never in the local window
    doc = filler[:depth] + needle + filler[depth:]
    memory_part, local = doc[:-window], doc[-window:]
    bank = model.new_bank(capacity=max(model.cfg.capacity, length))
    prompt = model.with_sink(local + question)
    answers = {}
    if mode is None:
        read_into_memory(model, memory_part, bank)
        arms = (("longmem", {"bank": bank}), ("local", {"bank": None, "backbone_only": True}))
    else:
        from ..answer.answer import answer
        model.memorize(tok.decode(memory_part), bank, source="document")
        text = answer(model, bank, PASSKEY_CHAT_QUESTION, mode=mode, max_new_tokens=max_new_tokens + 8).text
        answers.update(longmem=str(key) in text.replace(" ", ""), longmem_answer=text)
        arms = (("local", {"bank": None, "backbone_only": True}),)
    for name, kwargs in arms:
        gen = model.generate(prompt, max_new_tokens=max_new_tokens, **kwargs)
        text = "".join(gen)
        answers[name] = str(key) in text.replace(" ", "")
        answers[name + "_answer"] = text
    answers.update(key=key, depth=depth / max(1, len(doc)))
    return answers


def eval_passkey(model: LongMemModel, text: str, lengths: list[int], trials: int, seed: int = 0,
                 progress=None, mode: str | None = None) -> dict:
    """Accuracy per length for LongMem (``mode``: see ``passkey_trial``) and for the local-only backbone."""
    import random
    filler_ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
    rng = random.Random(seed)
    result: dict = {"lengths": {}, "seed": seed, "trials": trials, "mode": mode or "paper"}
    done = 0
    for length in lengths:
        rows = []
        for _ in range(trials):
            rows.append(passkey_trial(model, filler_ids, length, rng, mode=mode))
            done += 1
            if progress:
                progress(done, len(lengths) * trials)
        result["lengths"][str(length)] = {
            "acc_longmem": sum(r["longmem"] for r in rows) / trials,
            "acc_local": sum(r["local"] for r in rows) / trials,
            "trials": rows}
    return result


def chapterbreak_examples(path: str) -> list[dict]:
    """Flatten a ChapterBreak-layout file ({"pg19" or "ao3": {book: [examples]}}) to a list of examples."""
    import json
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return [dict(ex, book=book) for group in data.values() for book, exs in group.items() for ex in exs]


@torch.no_grad()
def suffix_logprobs(model: LongMemModel, context_ids: list[int], suffixes: list[list[int]], bank) -> list[float]:
    """Mean log-probability per token of each suffix after the local context (and memory, if a bank): the
    context is read once, the suffixes in one batch."""
    prompt = model.with_sink(context_ids)
    cache = model.cache_prompt(prompt, bank)
    sums, _ = model.score_continuations(prompt, suffixes, bank, cache=cache)
    return [float(s) / len(c) for s, c in zip(sums, suffixes)]


def eval_chapterbreak(model: LongMemModel, examples: list[dict], limit: int | None = None,
                      max_suffix_tokens: int = 256, progress=None, seed: int = 0) -> dict:
    """Suffix identification: the true next-chapter opening must score above 5 openings of other chapters.

    The context's last tokens (a segment minus the suffix) are local; everything before goes into memory.
    Baseline: the same model reading no memory, on the same local context (for a SideNet whose side layers are
    idle, as in every shipped checkpoint, that is exactly the backbone). ``limit``: a random sample (``seed``) of that many
    examples, in their file order (the file is grouped by book, so its first examples are one book's).
    """
    import random
    tok = model.tokenizer
    rows = []
    if limit and limit < len(examples):
        keep = sorted(random.Random(seed).sample(range(len(examples)), limit))
        examples = [examples[j] for j in keep]
    for i, ex in enumerate(examples):
        ctx = tok(ex["ctx"], add_special_tokens=False)["input_ids"]
        candidates = [ex["pos"], *ex["negs"]]
        cands = [tok(" " + c.strip(), add_special_tokens=False)["input_ids"][:max_suffix_tokens] for c in candidates]
        window = segment_tokens(model) - max(len(c) for c in cands)
        memory_part, local = ctx[:-window], ctx[-window:]
        bank = model.new_bank()
        read_into_memory(model, memory_part, bank)
        mem = suffix_logprobs(model, local, cands, bank)
        loc = suffix_logprobs(model, local, cands, None)
        rows.append({"book": ex["book"], "longmem": int(max(range(6), key=lambda j: mem[j]) == 0),
                     "local": int(max(range(6), key=lambda j: loc[j]) == 0), "memory_tokens": len(memory_part)})
        if progress:
            progress(i + 1, len(examples))
    n = max(len(rows), 1)
    return {"n": len(rows), "acc_longmem": sum(r["longmem"] for r in rows) / n,
            "acc_local": sum(r["local"] for r in rows) / n, "chance": 1 / 6, "examples": rows}
