"""Memorizing in bfloat16 (precision.py): what "auto" picks, and that the keys stay close to float32's."""
import dataclasses

import pytest
import torch

from longmem_core import precision
from longmem_core.config import LongMemConfig, preset
from longmem_core.model.model import LongMemModel

CPU = torch.device("cpu")


def test_explicit_precisions_are_obeyed_and_auto_follows_the_cpu(monkeypatch):
    assert precision.memorize_dtype("float32", CPU) is None
    assert precision.memorize_dtype("bfloat16", CPU) is torch.bfloat16
    monkeypatch.setattr(precision, "native_bf16_cpu", lambda: True)
    assert precision.memorize_dtype("auto", CPU) is torch.bfloat16
    assert precision.memorize_dtype("auto", torch.device("cuda")) is None  # accelerators keep their own dtype
    monkeypatch.setattr(precision, "native_bf16_cpu", lambda: False)
    assert precision.memorize_dtype("auto", CPU) is None  # emulated bfloat16 would be slower than float32


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="memorize_precision"):
        LongMemConfig(memorize_precision="float8")
    with pytest.raises(ValueError, match="memorize_precision"):
        precision.memorize_dtype("half", CPU)


def test_tiny_presets_memorize_in_float32_on_every_machine():
    assert preset("tiny").memorize_precision == "float32"
    assert LongMemConfig().memorize_precision == "auto"


def test_bfloat16_memorizing_stores_keys_close_to_float32(tiny_backbones):
    text = "The lighthouse keeper counted the ships that passed the rocks every night. " * 6
    banks = {}
    for name in ("float32", "bfloat16"):
        model = LongMemModel(preset("tiny", memorize_precision=name), backbone=tiny_backbones["tiny-llama"])
        bank = model.new_bank()
        model.memorize(text, bank)
        banks[name] = bank
    f, b = banks["float32"], banks["bfloat16"]
    assert len(f) == len(b) > 0
    assert b.keys.dtype == f.keys.dtype  # stored alike, whatever the compute format
    for x, y in ((f.keys, b.keys), (f.values, b.values)):
        relative = ((x.float() - y.float()).norm() / x.float().norm()).item()
        assert 0 < relative < 0.05  # computed otherwise (not a silent float32 run), within bfloat16's rounding


def test_the_setting_travels_with_the_config():
    cfg = preset("tiny", memorize_precision="bfloat16")
    assert LongMemConfig.from_dict(dataclasses.asdict(cfg)).memorize_precision == "bfloat16"
    assert LongMemConfig.from_dict({}).memorize_precision == "auto"  # banks and checkpoints saved before it
