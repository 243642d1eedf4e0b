"""Probe (issue 25): train the memory-query delta against chunk keys averaged over neighbouring chunks (a chunk's
mean key and its ``W`` neighbours' on each side, segment ends ignored) instead of each chunk's own mean key: more
of the sentence in each key the search scores. The objective's ``example_batch`` is wrapped here (nothing changes
in the library); evaluate with ``paraphrase_ranks.py --crowded --window W``.

    PYTHONPATH=. python experiments/probes/key_window_train.py 1 -- <train-retrieval arguments>
"""
from __future__ import annotations

import sys

import torch

from longmem_core.cli import main
from longmem_core.training.objectives import retrieval


def smoothed(means: torch.Tensor, w: int) -> torch.Tensor:
    """[G, Nc, D] -> the same, each chunk the mean of itself and its ``w`` neighbours on each side."""
    padded = torch.nn.functional.pad(means.transpose(1, 2), (w, w), mode="replicate")
    return torch.nn.functional.avg_pool1d(padded, 2 * w + 1, stride=1).transpose(1, 2)


if __name__ == "__main__":
    window = int(sys.argv[1])
    inner = retrieval.example_batch

    def example_batch(*args, **kwargs):
        xn, pos, means = inner(*args, **kwargs)
        return xn, pos, smoothed(means, window)
    retrieval.example_batch = example_batch
    sys.exit(main(sys.argv[3:]))
