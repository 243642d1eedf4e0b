"""SideNet checkpoints: the trained parameters in safetensors, with the config that built them and the backbone
they were trained on in the file's metadata (read back without loading the weights: ``read_checkpoint_meta``)."""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .model import LongMemModel

CHECKPOINT_FORMAT = "longmem-checkpoint-1"


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the model: it was trained for another backbone architecture."""


def read_checkpoint_meta(path: str | Path) -> dict:
    """The metadata of a checkpoint file (its config as a dict under "config")."""
    from safetensors import safe_open
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = dict(fh.metadata() or {})
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise ValueError(f"{path} is not a safetensors checkpoint ({exc})") from exc
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a LongMem checkpoint")
    meta["config"] = json.loads(meta["config"])
    return meta


def check_backbone_name(path: str | Path, trained_for: str, asked_for: str | None) -> None:
    """Refuse to build a model for ``asked_for`` from a checkpoint trained for the backbone ``trained_for``."""
    if asked_for and asked_for != trained_for:
        raise CheckpointMismatchError(f"checkpoint {path} was trained for backbone {trained_for!r}, not {asked_for!r}")


def save_checkpoint(model: "LongMemModel", path: str | Path, note: str = "") -> Path:
    """Only the trained parameters (those training now and those a loaded checkpoint set, e.g. a frozen
    memory-query delta under a newly trained memory layer), in safetensors, with the config that built them.
    Written to a temporary file first, then moved into place."""
    from safetensors.torch import save_file
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {n: p.detach().contiguous() for n, p in model.named_parameters()
               if p.requires_grad or n in model.loaded_parameter_names}
    meta = {"format": CHECKPOINT_FORMAT, "config": model.cfg.to_json(), "backbone": model.fingerprint, "note": note}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, tmp, metadata=meta)
    tmp.replace(path)
    return path


def load_checkpoint(model: "LongMemModel", path: str | Path) -> set[str]:
    """Copy a checkpoint's parameters into ``model``'s SideNet; returns the names it set.

    Refuses a checkpoint of another backbone architecture; warns for another copy of the same architecture
    (same shapes, other weights, e.g. a GGUF and a hub copy of one model)."""
    from safetensors.torch import load_file
    meta = read_checkpoint_meta(path)
    theirs = meta.get("backbone", "")
    if theirs and architecture(theirs) != architecture(model.fingerprint):
        raise CheckpointMismatchError(f"checkpoint {path} was trained on another backbone ({theirs})")
    if theirs and theirs != model.fingerprint:
        warnings.warn(f"checkpoint {path} was trained on another copy of this backbone's weights ({theirs}, "
                      f"here {model.fingerprint}); loading it anyway", stacklevel=3)
    tensors = load_file(str(path))
    own = dict(model.side.named_parameters(prefix="side"))
    unknown = sorted(set(tensors) - set(own))
    if unknown:
        raise ValueError(f"checkpoint {path} has parameters this model lacks: {unknown[:3]}")
    with torch.no_grad():
        for name, t in tensors.items():
            own[name].copy_(t)
    return set(tensors)


def trained_parts(parameter_names: set[str], memory_index: int) -> set[str]:
    """What a checkpoint with these parameters set: "search" (the memory-query delta), "meaning" (the meaning search's
    maps), "memory_layer" (the memory side layer ``memory_index``, the gates or the memory branch's scale),
    "side_layers" (any other side layer or scale)."""
    memory = f"side.layers.{memory_index}."
    parts = set()
    for name in parameter_names:
        if name.startswith("side.q_mem_"):
            parts.add("search")
        elif name.startswith("side.meaning."):
            parts.add("meaning")
        elif name in ("side.gate", "side.memory_scale") or name.startswith(memory):
            parts.add("memory_layer")
        elif name.startswith("side."):
            parts.add("side_layers")
    return parts


def architecture(fingerprint: str) -> str:
    """The shape part of a backbone fingerprint ("llama-L30-C576-H9-G3"), without the weight digest."""
    return fingerprint.rsplit("-", 1)[0]
