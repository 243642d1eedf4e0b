"""Probe: int8 weights for the frozen blocks that memorizing runs, on real text (not in the library).

    PYTHONPATH=. .venv/bin/python experiments/probes/int8_memorize.py

torch's dynamic int8 linear layers (fbgemm: int8 weights, activations quantized per tensor at run time)
replace every linear layer of blocks 0..m (m the memory layer). Variants: per-tensor or per-channel weight
scales; SmoothQuant-style smoothing (inputs divided per channel by s_j, weight columns multiplied by s_j,
s_j = max|x_j|^a / max|W_j|^(1-a), calibrated on 4 segments of the book's start); MLP down projection kept in
float32 (its input holds the largest outliers). Measured on 4 other segments (the book's end): how far the
stored keys and values move from float32 (relative L2 error, cosine), and the seconds of the forwards.
"""
from __future__ import annotations

import copy
import time
import warnings

import torch
import torch.ao.quantization as tq
from torch import nn

from longmem_core.bench.bench import BOOK
from longmem_core.model.model import LongMemModel

warnings.filterwarnings("ignore")
SEG = 1023


class SmoothedInt8Linear(nn.Module):
    def __init__(self, lin: nn.Linear, in_absmax: torch.Tensor | None, alpha: float | None, per_channel: bool):
        super().__init__()
        w = lin.weight.detach()
        s = torch.ones(w.shape[1]) if alpha is None else (
            in_absmax.clamp(min=1e-5) ** alpha / w.abs().amax(0).clamp(min=1e-5) ** (1 - alpha))
        self.register_buffer("inv_s", 1 / s)
        plain = nn.Linear(w.shape[1], w.shape[0], bias=lin.bias is not None)
        plain.weight.data = w * s
        if lin.bias is not None:
            plain.bias.data = lin.bias.detach().clone()
        qconfig = tq.per_channel_dynamic_qconfig if per_channel else tq.default_dynamic_qconfig
        self.q = tq.quantize_dynamic(nn.Sequential(plain), {nn.Linear: qconfig}, dtype=torch.qint8)

    def forward(self, x):
        return self.q(x * self.inv_s)


def main() -> None:
    model = LongMemModel.load()
    bb, m = model.backbone, model.memory_layer
    ids = model.tokenizer(BOOK.read_text(encoding="utf-8"), add_special_tokens=False)["input_ids"]
    calib = [ids[i * SEG:(i + 1) * SEG] for i in range(4)]
    test = [ids[len(ids) - (i + 1) * SEG:len(ids) - i * SEG] for i in range(4)]

    @torch.no_grad()
    def read(segments, blocks=None):
        saved = bb.blocks
        if blocks is not None:
            bb.blocks = blocks
        try:
            t0 = time.perf_counter()
            outs = [bb(torch.tensor([model.with_sink(s)]), memory_layer=m, stop_after=m, last_kv_only=True)
                    for s in segments]
            seconds = time.perf_counter() - t0
        finally:
            bb.blocks = saved
        return torch.cat([o.memory_keys[0, 1:] for o in outs]), torch.cat([o.memory_values[0, 1:] for o in outs]), seconds

    absmax: dict = {}  # (block, linear name) -> per-input-channel max |x| on the calibration segments
    hooks = []
    for i in range(m + 1):
        for name, mod in bb.blocks[i].named_modules():
            if isinstance(mod, nn.Linear):
                def hook(_, inp, __, key=(i, name)):
                    a = inp[0].detach().abs().reshape(-1, inp[0].shape[-1]).amax(0)
                    absmax[key] = torch.maximum(absmax[key], a) if key in absmax else a
                hooks.append(mod.register_forward_hook(hook))
    read(calib)
    for h in hooks:
        h.remove()

    def quantized(alpha, per_channel, keep_fp32=()):
        blocks = []
        for i in range(m + 1):
            b = copy.deepcopy(bb.blocks[i])
            for parent_name, parent in list(b.named_modules()):
                for child_name, child in list(parent.named_children()):
                    full = f"{parent_name}.{child_name}" if parent_name else child_name
                    if isinstance(child, nn.Linear) and (i, full) in absmax and not any(k in full for k in keep_fp32):
                        setattr(parent, child_name, SmoothedInt8Linear(child, absmax[(i, full)], alpha, per_channel))
            blocks.append(b)
        return nn.ModuleList(blocks + list(bb.blocks[m + 1:]))

    k0, v0, t_fp32 = read(test)
    print(f"float32: {t_fp32:.2f} s for {len(test)} segments")
    rel = lambda a, b: float((a - b).norm() / b.norm())  # noqa: E731
    variants = [("per-tensor weights, no smoothing", None, False, ()),
                ("per-channel weights, no smoothing", None, True, ()),
                ("per-channel, smoothing a=0.5", 0.5, True, ()),
                ("per-channel, smoothing a=0.8", 0.8, True, ()),
                ("per-channel, smoothing a=0.5, down_proj float32", 0.5, True, ("down_proj",))]
    for name, alpha, per_channel, keep in variants:
        k, v, t = read(test, quantized(alpha, per_channel, keep))
        cos = float(torch.nn.functional.cosine_similarity(k.flatten(1), k0.flatten(1)).mean())
        _, _, t_again = read(test)
        print(f"{name}: keys moved {rel(k, k0):.3f} (cosine {cos:.4f}), values {rel(v, v0):.3f}; "
              f"{t:.2f} s vs float32 {t_again:.2f} s right after ({t_again / t:.2f}x)")


if __name__ == "__main__":
    main()
