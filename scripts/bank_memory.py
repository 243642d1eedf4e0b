"""What loading a saved bank costs in resident memory, against the size of its files (issue 15: under 2x for any
bank file).

    python scripts/bank_memory.py --json experiments/results/bank_memory.json
    python scripts/bank_memory.py --measure BANK WARMUP_BANK   # one load in this process: a JSON line

For each layout (chunk size 1, 2 or 4; exact or IVF index) a bank of the default backbone's shape (3 kv heads of
64 dimensions) is filled with random keys and values, saved, and its meta.json edited to claim the largest
capacity and a huge first_id (what a hostile file would claim). A fresh Python process then loads a small bank
(imports, allocator pools), resets its peak resident memory (Linux ``/proc/self/clear_refs``), loads the bank
and reports how much its peak (VmHWM) and its resident memory (VmRSS) grew: the peak counts every temporary of
the load, the resident growth what the loaded bank keeps.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYOUTS = [(1, "flat"), (2, "flat"), (4, "flat"), (1, "ivf"), (4, "ivf")]  # (chunk size, index kind)
KV_HEADS, HEAD_DIM = 3, 64  # the default backbone's memory layer


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure(bank: str, warmup: str) -> dict:
    """Load ``warmup``, then ``bank``, in this process: growth of peak and resident memory (bytes)."""
    sys.path.insert(0, str(ROOT))
    from longmem_core import MemoryBank
    MemoryBank.load(warmup, documents=False)  # imports, faiss, allocator pools
    before = _status("VmRSS:")
    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) := the current resident size
    loaded = MemoryBank.load(bank, documents=False)
    return {"peak_growth": _status("VmHWM:") - before, "resident_growth": _status("VmRSS:") - before,
            "chunks": loaded.n_chunks, "index": type(loaded.index).__name__, "bank_nbytes": loaded.nbytes()}


def write_bank(folder: Path, chunk_size: int, index: str, tokens: int, seed: int = 0) -> Path:
    """A bank of ``tokens`` random tokens saved in ``folder``, its meta.json claiming the largest capacity."""
    import torch
    sys.path.insert(0, str(ROOT))
    from longmem_core import MemoryBank
    from longmem_core.config import MAX_CAPACITY
    g = torch.Generator().manual_seed(seed)
    bank = MemoryBank(n_kv_heads=KV_HEADS, head_dim=HEAD_DIM, chunk_size=chunk_size, capacity=tokens, index=index)
    bank.add(torch.randn(tokens, KV_HEADS, HEAD_DIM, generator=g), torch.randn(tokens, KV_HEADS, HEAD_DIM, generator=g))
    path = bank.save(folder)
    meta = json.loads((path / "meta.json").read_text())
    meta.update(first_id=10 ** 12, capacity=MAX_CAPACITY)
    (path / "meta.json").write_text(json.dumps(meta))
    return path


def files_size(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).iterdir())


def measure_in_child(bank: Path, warmup: Path) -> dict:
    """``measure`` in a fresh Python process (one thread), with the bank's file size and the ratios."""
    proc = subprocess.run([sys.executable, __file__, "--measure", str(bank), str(warmup)], capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=ROOT, timeout=600)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    size = files_size(bank)
    return {**out, "file_bytes": size, "peak_ratio": round(out["peak_growth"] / size, 3),
            "resident_ratio": round(out["resident_growth"] / size, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=32_768, help="tokens in each bank")
    parser.add_argument("--json", help="write the results file here")
    parser.add_argument("--measure", nargs=2, metavar=("BANK", "WARMUP_BANK"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="longmem-bank-memory-") as tmp:
        warmup = write_bank(Path(tmp) / "warmup", 4, "flat", 64)
        for chunk_size, index in LAYOUTS:
            bank = write_bank(Path(tmp) / f"c{chunk_size}-{index}", chunk_size, index, args.tokens)
            result = measure_in_child(bank, warmup)
            rows.append({"chunk size": chunk_size, "index": f"{index} ({result['index']})", "chunks": result["chunks"],
                         "file MB": round(result["file_bytes"] / 1e6, 2),
                         "peak growth MB": round(result["peak_growth"] / 1e6, 2), "peak / file": result["peak_ratio"],
                         "kept MB": round(result["resident_growth"] / 1e6, 2), "kept / file": result["resident_ratio"]})
            print(rows[-1], flush=True)
    worst = max(r["peak / file"] for r in rows)
    report = {
        "title": "Loading a saved bank: resident memory against its file size (scripts/bank_memory.py)",
        "command": "OMP_NUM_THREADS=1 python scripts/bank_memory.py --json experiments/results/bank_memory.json",
        "summary": (f"Banks of {args.tokens:,} random tokens in the default backbone's shape ({KV_HEADS} kv heads x "
                    f"{HEAD_DIM}), meta.json edited to claim the largest capacity and first_id 10^12, each loaded in a "
                    "fresh process after a small warm-up load: growth of the peak resident memory (every temporary "
                    "of the load counted) and of the resident memory kept, against the size of the bank's files."),
        "rows": rows,
        "claims": [{"title": "bank memory", "rows": [
            {"metric": "peak resident growth / file size, worst layout", "figure": f"{worst:.2f}x",
             "baseline": "2.34x for 1-token chunks before (float32 exact index)", "target": "< 2x for any bank file",
             "met": "yes" if worst < 2 else "no"}]}],
    }
    if args.json:
        sys.path.insert(0, str(ROOT))
        from longmem_core.bench.bench import machine
        import datetime
        report = {**report, "date": datetime.date.today().isoformat(), "machine": machine()}
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0 if worst < 2 else 1


if __name__ == "__main__":
    sys.exit(main())
