"""LongMem Studio's library: frozen backbone + memory bank + residual SideNet (Wang et al., 2023)."""
from .model.backbone import BackboneError, FrozenBackbone, load_backbone
from .model.checkpoint import CheckpointMismatchError
from .config import DEFAULT_BACKBONE, PRESETS, LongMemConfig, default_checkpoint, preset
from .documents.data import Document, DocumentError, read_document, read_labelled
from .memory.memory_bank import BankMismatchError, ChunkInfo, MemoryBank, MemoryHits
from .model.model import Generation, LongMemModel, LongMemOutput, MemorizeStats, Retrieved
from .model.side_network import RetrievalTrace, SideNetwork

__all__ = [
    "BackboneError", "BankMismatchError", "CheckpointMismatchError", "ChunkInfo", "DEFAULT_BACKBONE", "Document",
    "DocumentError",
    "FrozenBackbone", "Generation", "LongMemConfig", "LongMemModel", "LongMemOutput", "MemorizeStats",
    "MemoryBank", "MemoryHits", "PRESETS", "Retrieved", "RetrievalTrace", "SideNetwork", "load_backbone",
    "default_checkpoint", "preset", "read_document", "read_labelled",
]
