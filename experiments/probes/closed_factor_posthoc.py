"""Probe (issue 30): do the closed memory branch's negative per-head factors help, after training?

``closed_branch_training.sh`` trained the memory layer, gates and the closed branch's per-head factor for 150 steps;
four of the nine factors went negative (those heads move away from what the joint attention with memory gives). This
probe edits only the factor of that checkpoint and scores each edit in the paper's mode on the same held-out book,
against local only in the same run: as trained; negative factors set to 0 (the factor constrained to [0, inf)); every
factor set to 1 (the trained memory layer fully open).

    PYTHONPATH=. .venv/bin/python experiments/probes/closed_factor_posthoc.py tmp/i30/run_closed/sidenet.safetensors \
        tmp/i30_posthoc
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

BOOK = "/work/shared/data/books/adventures_of_sherlock_holmes.txt"  # held out: the probe's evaluation book
EDITS = {
    "as_trained": lambda f: f,
    "negatives_zero": lambda f: f.clamp(min=0.0),
    "all_one": lambda f: torch.ones_like(f),
}


def edited(checkpoint: str, out: Path, name: str) -> Path:
    """A copy of ``checkpoint`` (its metadata kept) with ``EDITS[name]`` applied to side.memory_scale."""
    with safe_open(checkpoint, "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = f.metadata()
    tensors["side.memory_scale"] = EDITS[name](tensors["side.memory_scale"])
    path = out / f"{name}.safetensors"
    save_file(tensors, str(path), metadata=meta)
    return path


def main(checkpoint: str, out_dir: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in EDITS:
        path = edited(checkpoint, out, name)
        cmd = [sys.executable, "-m", "longmem_core", "eval-ppl", BOOK, "--max-tokens", "8192", "--json",
               "--checkpoint", str(path)]
        result = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
        change = 100 * (result["ppl_longmem"] / result["ppl_local"] - 1)
        factor = [round(x, 2) for x in EDITS[name](safe_open(checkpoint, "pt").get_tensor("side.memory_scale")).tolist()]
        rows.append({"edit": name, "factor": factor, "ppl_local": result["ppl_local"],
                     "ppl_longmem": result["ppl_longmem"], "change_pct": round(change, 3)})
        print(rows[-1], flush=True)
    json.dump(rows, open(out / "posthoc.json", "w"), indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
