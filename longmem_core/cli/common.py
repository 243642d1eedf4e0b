"""What the commands share: loading the model and a bank, a progress bar, the answer modes' names, the limits of
options."""
from __future__ import annotations

import sys
from pathlib import Path

from ..config import default_checkpoint
from ..options import CliError

MAX_TOP = 100  # chunks a command lists at most
MAX_NEW_TOKENS = 8191  # generation.MAX_CONTEXT - 1: more would cut the prompt to nothing


def load_model(args):
    from ..model.model import LongMemModel
    checkpoint = args.checkpoint
    if not checkpoint and default_checkpoint():  # the default checkpoint applies only to its own backbone
        from ..model.model import read_checkpoint_meta
        shipped = default_checkpoint()
        if args.backbone in (None, read_checkpoint_meta(shipped)["config"]["backbone"]):
            checkpoint = shipped
    if checkpoint and not Path(checkpoint).is_file():
        raise CliError(f"checkpoint {checkpoint} not found")
    try:
        return LongMemModel.load(backbone=args.backbone, checkpoint=checkpoint, device=getattr(args, 'device', None))
    except (ValueError, OSError, RuntimeError) as exc:
        raise CliError(str(exc).splitlines()[0]) from exc


def load_bank(model, path: str, must_exist: bool = True):
    from ..memory.memory_bank import MemoryBank
    p = Path(path)
    if not (p / "meta.json").exists():
        if must_exist:
            raise CliError(f"{path}: no memory bank here; create one with: python -m longmem_core memorize FILE --bank {path}")
        return None
    try:
        bank = MemoryBank.load(p, device=model.device)
        model.check_bank(bank)
    except (ValueError, OSError, KeyError) as exc:
        raise CliError(f"{path}: {str(exc).splitlines()[0]}") from exc
    return bank


def progress(enabled: bool, label: str):
    if not enabled:
        return None
    from tqdm import tqdm
    bar = tqdm(total=0, unit="tok", desc=label, file=sys.stderr, leave=False)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()
    update.close = bar.close  # type: ignore[attr-defined]
    return update


def answer_modes() -> tuple[str, ...]:
    from ..answer.answer import MODES
    return MODES


def default_mode() -> str:
    from ..answer.answer import DEFAULT_MODE
    return DEFAULT_MODE


def search_top() -> int:
    from ..answer import settings
    return settings.ANSWER.search_top
