"""Evaluations in the paper's style. Perplexity: every book read in segments, memory of the preceding ones."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import torch

from .model import LongMemModel


@torch.no_grad()
def segment_nll(model: LongMemModel, ids: list[int], bank, backbone_only: bool = False) -> tuple[float, int]:
    """Summed next-token NLL of one segment (opened by the sink token) and the number of scored tokens."""
    x = torch.tensor([model._prefix(ids)])
    start = x.shape[1] - len(ids)
    if backbone_only:
        logits = model.backbone.logits(model.backbone(x).hidden_states[-1])
    else:
        logits = model(x, bank).logits
    # score every token of the segment after the first (the first has only the sink as context)
    nll = torch.nn.functional.cross_entropy(logits[0, start:-1].float(), x[0, start + 1:], reduction="sum")
    return float(nll), len(ids) - 1


@torch.no_grad()
def perplexity(text: str, trained: LongMemModel, untrained: LongMemModel | None = None, max_tokens: int | None = None,
               progress: Callable[[int, int], None] | None = None) -> dict:
    """Perplexity on the same tokens for: the backbone with only the local segment, LongMem untrained and trained."""
    ids = trained.tokenizer(text, add_special_tokens=False)["input_ids"][:max_tokens]
    seg = trained.segment_length - 1
    systems = {"local": (trained, True), "longmem": (trained, False)}
    if untrained is not None:
        systems["untrained"] = (untrained, False)
    banks = {name: m.new_bank() for name, (m, local) in systems.items() if not local}
    nll = {name: 0.0 for name in systems}
    scored = 0
    for s in range(0, len(ids), seg):
        piece = ids[s:s + seg]
        if len(piece) < 2:
            break
        for name, (m, local) in systems.items():
            v, n = segment_nll(m, piece, banks.get(name), backbone_only=local)
            nll[name] += v
        scored += n
        for name, bank in banks.items():  # memory only ever holds previous segments
            systems[name][0].memorize_ids(piece, bank, token_start=s)
        if progress:
            progress(min(s + seg, len(ids)), len(ids))
    return {"tokens": scored, **{f"ppl_{name}": math.exp(v / max(scored, 1)) for name, v in nll.items()}}


def length_split(n_tokens: int) -> str:
    """Book-length bucket, as the paper reports perplexity by length split."""
    for bound, name in ((100_000, "<100k"), (200_000, "100k-200k"), (400_000, "200k-400k")):
        if n_tokens < bound:
            return name
    return ">=400k"


def eval_ppl(files: list[str], trained: LongMemModel, untrained: LongMemModel | None, max_tokens: int | None,
             progress_factory=None) -> dict:
    per_book = {}
    for f in files:
        text = Path(f).read_text(encoding="utf-8")
        full = len(trained.tokenizer(text, add_special_tokens=False)["input_ids"])
        bar = progress_factory(Path(f).name) if progress_factory else None
        r = perplexity(text, trained, untrained, max_tokens, progress=bar)
        r["book_tokens"], r["split"] = full, length_split(full)
        per_book[Path(f).name] = r
    total = sum(r["tokens"] for r in per_book.values())
    summary = {"tokens": total}
    for key in ("ppl_local", "ppl_longmem", "ppl_untrained"):
        if all(key in r for r in per_book.values()):
            summary[key] = math.exp(sum(math.log(r[key]) * r["tokens"] for r in per_book.values()) / max(total, 1))
    by_split: dict[str, list] = {}
    for r in per_book.values():
        by_split.setdefault(r["split"], []).append(r)
    summary["by_split"] = {
        split: {key: math.exp(sum(math.log(r[key]) * r["tokens"] for r in rs) / sum(r["tokens"] for r in rs))
                for key in ("ppl_local", "ppl_longmem", "ppl_untrained") if all(key in r for r in rs)}
        for split, rs in by_split.items()}
    summary["books"] = per_book
    return summary
