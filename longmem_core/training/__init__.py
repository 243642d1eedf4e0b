"""Training the SideNet: one loop (``loop.run``), one schedule, objectives as pluggable pieces.

- ``loop.py``: optimizer, schedule, checkpoints, exact resume, progress, validation, multi-process ranks.
- ``schedule.py``: linear warm-up then cosine decay to 10% (transformers' scheduler).
- ``params.py``: which SideNet parameters train ("memory", "all", "search") and AdamW over them.
- ``objectives/``: ``language.LanguageModelling``, ``retrieval.Retrieval``, ``recall.Recall``.
- ``features.py``: the frozen backbone's work, computed once and reused.
- ``search_examples.py``: banks and target chunks for retrieval training; ``corpus.py``: training text.
- ``commands.py``: the ``train``, ``train-retrieval`` and ``train-recall`` subcommands.
"""
from ..config import LoopConfig, RecallTrainConfig, RetrievalTrainConfig, TrainConfig
from .commands import train, train_recall, train_retrieval
from .loop import RunResult, run
from .params import make_optimizer, select_trainable
from .schedule import lr_at, make_schedule

__all__ = ["LoopConfig", "RecallTrainConfig", "RetrievalTrainConfig", "TrainConfig", "RunResult", "lr_at",
           "make_optimizer", "make_schedule", "run", "select_trainable", "train", "train_recall", "train_retrieval"]
