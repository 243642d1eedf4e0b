"""Probe (issue 25): run any command with the search scoring each chunk by its mean key averaged with its ``W``
neighbours' on each side (as ``key_window_train.py`` trained the delta), by wrapping ``search.chunk_scores``
(nothing changes in the library). Neighbours across a source boundary are averaged in too (a probe's shortcut).

    PYTHONPATH=. python experiments/probes/key_window_eval.py 1 -- eval-paraphrase --together ... --checkpoint runs/retrieval_w1/sidenet.safetensors
"""
from __future__ import annotations

import sys

import torch

from longmem_core.model import search
from longmem_core.cli import main

sys.path.insert(0, "experiments/probes")
from key_window_train import smoothed  # noqa: E402


if __name__ == "__main__":
    window = int(sys.argv[1])

    def chunk_scores(model, bank, query):
        vectors = search.query_vectors(model, query)
        means = smoothed(torch.from_numpy(bank.chunk_keys()).float(), window)  # [G, Nc, D]
        return search.chunk_attention(vectors.queries[-1:], means)[0].sum(dim=0)
    search.chunk_scores = chunk_scores
    sys.exit(main(sys.argv[3:]))
