"""The old import path of language-model training, kept for callers not yet moved (``bench.py``,
``tests/test_model.py``, ``tests/test_gpu.py``): everything lives in ``longmem_core.training`` now."""
from .config import TrainConfig  # noqa: F401
from .training.commands import train  # noqa: F401
from .training.corpus import text_files  # noqa: F401
from .training.objectives.language import plan_excerpts  # noqa: F401
from .training.params import make_optimizer, select_trainable  # noqa: F401
from .training.schedule import lr_at  # noqa: F401
