import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
ASSETS = ROOT / "assets"
BOOK = ASSETS / "the_time_machine.txt"

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_backbones():
    from longmem_core import load_backbone
    return {name: load_backbone(name) for name in ("tiny-llama", "tiny-gpt2")}


@pytest.fixture(scope="session", params=["tiny", "tiny-gpt2"])
def tiny_model(request, tiny_backbones):
    from longmem_core import LongMemModel, preset
    cfg = preset(request.param)
    return LongMemModel(cfg, backbone=tiny_backbones[cfg.backbone])


@pytest.fixture()
def make_model(tiny_backbones):
    """A fresh tiny model (its SideNet can be changed freely) from a preset and overrides."""
    from longmem_core import LongMemModel, preset

    def make(name="tiny", **overrides):
        cfg = preset(name, **overrides)
        return LongMemModel(cfg, backbone=tiny_backbones[cfg.backbone])
    return make


@pytest.fixture(scope="session")
def book_text():
    return BOOK.read_text(encoding="utf-8")


def pytest_configure(config):
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
