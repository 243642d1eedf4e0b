"""Probe: what should the copy path copy from in the default mode, the text read back or all of memory?

Runs eval-niah and eval-qa on tuning books with ``answer.COPY_FROM`` set each way; writes each run's JSON
(answers included) to OUT_DIR/{niah,qa_BOOK}_{scope}.json. Tuning books only.

    .venv/bin/python experiments/probes/copy_scope_probe.py read tmp/copy_scope
    .venv/bin/python experiments/probes/copy_scope_probe.py memory tmp/copy_scope
"""
from __future__ import annotations

import sys
from pathlib import Path

from tuning_runs import BOOKS, QUESTIONS, eval_qa_args, run_cli

from longmem_core.answer import answer


def main() -> None:
    scope, out_dir = sys.argv[1], Path(sys.argv[2])
    out_dir.mkdir(parents=True, exist_ok=True)
    answer.COPY_FROM = scope
    which = sys.argv[3].split(",") if len(sys.argv) > 3 else ["niah", "qa"]
    if "niah" in which:
        run_cli(["eval-niah", "--text", str(BOOKS / "frankenstein.txt"), "--lengths", "16000", "--tasks",
                 "single,multikey,multivalue,multiquery", "--trials", "3", "--modes", "sentences_hybrid_cache",
                 "--top", "6", "--max-new-tokens", "128", "--answer-prefix", "--seed", "0", "--json",
                 "--rows-out", str(out_dir / f"niah_{scope}.rows.jsonl")],
                out_dir / f"niah_{scope}.json")
    if "qa" in which:
        for book in QUESTIONS:
            run_cli(eval_qa_args(book) + ["--records-out", str(out_dir / f"qa_{book}_{scope}.records.jsonl")],
                    out_dir / f"qa_{book}_{scope}.json")


if __name__ == "__main__":
    main()
