"""Data-parallel training through torch.distributed (gloo), two CPU processes on the tiny backbone: the same result
as one process accumulating the same segments."""
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "assets" / "the_time_machine.txt"


def _cfg(tmp: Path, out: str, grad_accum: int):
    from longmem_core.training import TrainConfig
    return TrainConfig(data=[str(tmp / "book.txt")], out=str(tmp / out), steps=4, lr=3e-3, warmup=1, grad_accum=grad_accum,
                       excerpt_segments=3, checkpoint_every=4, trainable="memory", seed=2)


def _model():
    from longmem_core import LongMemModel, preset
    return LongMemModel(preset("tiny", segment_length=48))


def _rank(rank: int, tmp: str) -> None:
    sys.path.insert(0, str(ROOT))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=2)
    try:
        from longmem_core.training import train
        train(_cfg(Path(tmp), "ranks", grad_accum=1), _model(), log=lambda m: None)
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_equal_one_process_accumulating(tmp_path):
    (tmp_path / "book.txt").write_text(BOOK.read_text(encoding="utf-8")[:6000], encoding="utf-8")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    mp.spawn(_rank, args=(str(tmp_path),), nprocs=2, join=True)
    from longmem_core.training import train
    train(_cfg(tmp_path, "single", grad_accum=2), _model(), log=lambda m: None)
    a, b = load_file(tmp_path / "ranks" / "sidenet.safetensors"), load_file(tmp_path / "single" / "sidenet.safetensors")
    assert set(a) == set(b) and "side.gate" in a
    start = _model().side.gate.detach()
    assert not torch.equal(a["side.gate"], start)  # it trained
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-5), name
    assert len((tmp_path / "ranks" / "log.jsonl").read_text().splitlines()) == 4  # rank 0 alone writes
