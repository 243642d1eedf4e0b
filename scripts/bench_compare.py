"""Compare the bench of two commits: did a change keep the figures within noise?

    python scripts/bench_compare.py --before c85728a [--after HEAD] [--rounds 2] [--out experiments/results/refactor_bench.json]
    python scripts/bench_compare.py --from-runs tmp/benchcmp --before c85728a --out ...   # runs made earlier

Runs ``python -m longmem_core bench --quick --json`` in a git worktree of each commit, interleaved
(before, after, before, after, ...) so that a change of load on the machine falls on both alike, and writes a
results file (experiments/results/README.md): per figure, the before runs, the after runs and whether the after
median is no worse than the worst before run, give or take half the after runs' range.
``--from-runs DIR`` reads ``before_<i>.json`` / ``after_<i>.json`` written by an earlier run instead.
"""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# (label, path in the bench JSON, higher is better)
FIGURES: list[tuple[str, str, bool]] = [
    ("memorize speed-up over a plain forward", "memorize_speedup", True),
    ("memorize tokens/s", "memorize_tokens_per_s", True),
    ("generation speed vs transformers generate, 65k bank", "generation_ratio_65k", True),
    ("generation tokens/s with a 65k bank", "generation.memory_tokens_per_s", True),
    ("training tokens/s", "training_tokens_per_s", True),
    ("exact search ms per generated token, 65k", "retrieval_ms_per_token.65536.exact", False),
    ("IVF search ms per generated token, 65k", "retrieval_ms_per_token.65536.ivf", False),
    ("IVF recall@16, 65k", "recall_at_16.65536", True),
    ("RAM bytes per stored token (exact)", "ram_bytes_per_token.exact", False),
    ("disk bytes per stored token", "disk_bytes_per_token", False),
    ("app ready (s, warm)", "app_ready_s", False),
]


def dig(d: dict, path: str):
    """The value at a dotted path of nested keys (None where it is missing)."""
    cur = d
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def bench(workdir: Path, python: str) -> dict:
    """One quick bench run in the worktree ``workdir`` -> its JSON."""
    out = subprocess.run([python, "-m", "longmem_core", "bench", "--quick", "--json"], cwd=workdir,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def collect(before: str, after: str, rounds: int, keep: Path | None = None) -> tuple[list[dict], list[dict]]:
    """``rounds`` quick benches of each commit, interleaved; each run also written to ``keep``/<name>_<i>.json."""
    python = str(ROOT / ".venv" / "bin" / "python")
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as tmp:
        trees = {}
        for name, commit in (("before", before), ("after", after)):
            trees[name] = Path(tmp) / name
            subprocess.run(["git", "worktree", "add", "--detach", str(trees[name]), commit], cwd=ROOT, check=True,
                           capture_output=True)
        try:
            for i in range(rounds):
                for name in ("before", "after"):
                    print(f"round {i + 1}/{rounds}: {name}", file=sys.stderr)
                    runs[name].append(bench(trees[name], python))
                    if keep:
                        keep.mkdir(parents=True, exist_ok=True)
                        (keep / f"{name}_{i}.json").write_text(json.dumps(runs[name][-1], indent=1) + "\n")
        finally:
            for tree in trees.values():
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)
    return runs["before"], runs["after"]


def read_runs(folder: Path) -> tuple[list[dict], list[dict]]:
    def load(prefix: str) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted(folder.glob(f"{prefix}_*.json"))]
    return load("before"), load("after")


def no_worse(before: list[float], after: list[float], higher_is_better: bool) -> bool:
    """Not worse beyond noise: the after median is no worse than the worst before run, with a slack of half
    the after runs' range."""
    slack = (max(after) - min(after)) / 2
    if higher_is_better:
        return statistics.median(after) >= min(before) - slack
    return statistics.median(after) <= max(before) + slack


def compare(before: list[dict], after: list[dict]) -> list[dict]:
    rows = []
    for label, path, higher in FIGURES:
        b = [v for v in (dig(r, path) for r in before) if isinstance(v, (int, float))]
        a = [v for v in (dig(r, path) for r in after) if isinstance(v, (int, float))]
        if not b or not a:
            continue
        rows.append({"metric": label, "figure": " / ".join(f"{v:.4g}" for v in a),
                     "baseline": " / ".join(f"{v:.4g}" for v in b), "target": "no worse beyond noise",
                     "met": "yes" if no_worse(b, a, higher) else "no"})
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", required=True, help="the commit before the change")
    p.add_argument("--after", default="HEAD")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--from-runs", default=None, help="read before_<i>.json / after_<i>.json from this folder")
    p.add_argument("--out", default=None, help="write the results file here (default: stdout)")
    p.add_argument("--keep", type=Path, default=None, help="also write each run to this folder (for --from-runs)")
    p.add_argument("--what", default="the restructuring of issue #12",
                   help="the change, as the results file's title and summary name it")
    p.add_argument("--before-is", default="before the split of the model, training and bank",
                   help="what the before commit is, for the summary")
    args = p.parse_args(argv)
    before, after = read_runs(Path(args.from_runs)) if args.from_runs else collect(args.before, args.after,
                                                                                    args.rounds, args.keep)
    if not before or not after:
        raise SystemExit("error: no bench runs to compare")
    after_commit = subprocess.run(["git", "rev-parse", "--short", args.after], cwd=ROOT, capture_output=True,
                                  text=True).stdout.strip()
    rows = compare(before, after)
    result = {
        "title": f"Bench before and after {args.what} (quick bench)",
        "command": " ".join(["python scripts/bench_compare.py", f"--before {args.before}",
                             f"--rounds {max(len(before), 1)}"] + (
            [f"--what '{args.what}'", f"--before-is '{args.before_is}'"] if args.what != p.get_default("what") else [])),
        "date": datetime.date.today().isoformat(),
        "summary": (f"Quick bench (python -m longmem_core bench --quick --json) of commit {args.before} ({args.before_is}) "
                    f"and {after_commit or args.after}, {len(before)} runs "
                    "each, interleaved on one machine. Figures: the after runs; baseline: the before runs. No worse "
                    "beyond noise: the after median no worse than the worst before run, give or take half the after "
                    "runs' range."),
        "claims": [{"title": f"bench before and after {args.what}", "rows": rows}],
        "machine": before[0].get("machine"),
    }
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
