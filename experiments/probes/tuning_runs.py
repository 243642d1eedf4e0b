"""What the question probes share: the tuning books' question sets, and the evaluations run in-process with
their JSON written to a file (so a probe can patch a module constant first). Tuning books only."""
from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from longmem_core import cli  # noqa: E402

BOOKS = Path("/work/shared/data/books")
QUESTIONS = {  # tuning book -> its factual questions (the repository's sets)
    "frankenstein": ROOT / "data/qa/frankenstein.jsonl",
    "great_expectations": ROOT / "data/qa/great_expectations.jsonl",
    "the_time_machine": ROOT / "assets/qa_time_machine.jsonl",
}


def run_cli(argv: list[str], out: Path) -> None:
    """``python -m longmem_core ARGV`` in this process, its stdout (the --json result) written to ``out``."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        cli.main(argv)
    out.write_text(buf.getvalue())
    print("wrote", out, file=sys.stderr, flush=True)


def eval_qa_args(book: str, modes: str = "sentences_hybrid_cache") -> list[str]:
    """eval-qa on a tuning book as the results page runs it (first 60,000 characters, top 6, 48 answer tokens)."""
    return ["eval-qa", "--text", str(BOOKS / f"{book}.txt"), "--questions", str(QUESTIONS[book]), "--max-chars",
            "60000", "--modes", modes, "--top", "6", "--context-chars", "200", "--max-new-tokens", "48", "--json"]
