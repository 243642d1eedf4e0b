"""Reading a token stream segment by segment, as the model reads a document: the segment length, writing segments
into memory, and one segment's logits and loss (perplexity, training, the copy path and the bench share them)."""
from __future__ import annotations

import torch

from .model import LongMemModel


def segment_tokens(model: LongMemModel) -> int:
    """Text tokens per segment: the segment length less the sink token that opens every segment (if any)."""
    return model.segment_length - len(model.with_sink([]))


@torch.no_grad()
def read_into_memory(model: LongMemModel, ids: list[int], bank, token_start: int = 0) -> int:
    """Write token ids into ``bank`` segment by segment, as the model reads a document (each segment opened by
    the sink token); ``token_start`` is the position of ``ids[0]`` in its document. Returns the chunks added."""
    seg = segment_tokens(model)
    return sum(model.memorize_ids(ids[s:s + seg], bank, token_start=token_start + s) for s in range(0, len(ids), seg))


def segment_logits(model: LongMemModel, ids: list[int], bank, backbone_only: bool = False):
    """One segment (opened by the sink token) read by ``model`` with ``bank`` (or by the backbone alone): the
    logits at the scored positions [T - 1, V], their targets [T - 1], and the segment's memory-layer keys/values
    to write afterwards (so memory only ever holds *previous* segments; None with ``backbone_only``). Every token
    after the first is scored (the first has only the sink as context)."""
    x = torch.tensor([model.with_sink(ids)], device=model.device)
    start = x.shape[1] - len(ids)  # the sink token is input only
    if backbone_only:
        logits, keys, values = model.backbone.logits(model.backbone(x).hidden_states[-1]), None, None
    else:
        out = model(x, bank)
        logits, keys, values = out.logits, out.memory_keys[0, start:], out.memory_values[0, start:]
    return logits[0, start:-1], x[0, start + 1:], keys, values


def segment_loss(model: LongMemModel, ids: list[int], bank, backbone_only: bool = False):
    """Summed next-token loss of one segment reading ``bank``, the number of scored tokens, and the segment's
    memory-layer keys/values (see ``segment_logits``)."""
    logits, targets, keys, values = segment_logits(model, ids, bank, backbone_only)
    loss = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum")
    return loss, len(ids) - 1, keys, values


@torch.no_grad()
def segment_nll(model: LongMemModel, ids: list[int], bank, backbone_only: bool = False) -> tuple[float, int]:
    """Summed next-token NLL of one segment and the number of scored tokens (see ``segment_loss``)."""
    loss, n, _, _ = segment_loss(model, ids, bank, backbone_only)
    return float(loss), n
