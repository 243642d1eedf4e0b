"""Probe: how should the sentences read back be labelled for the small reader? Tuning books only.

eval-qa (default mode) on the tuning books with ``sentences.format_sentences`` labelling each line differently:
"file" (as shipped: "[frankenstein.txt]"), "title" ("[frankenstein]": the file's stem, underscores as spaces),
"none" (no label). Prints the eval-qa JSON of each book to OUT_DIR/label_{variant}_{book}.json.

    .venv/bin/python experiments/probes/label_probe.py title tmp/labels
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from tuning_runs import QUESTIONS, eval_qa_args, run_cli

from longmem_core.answer import sentences

SHIPPED = sentences.format_sentences


def relabel(variant: str):
    def label(name: str) -> str:
        if variant == "none" or not name:
            return ""
        return Path(name).stem.replace("_", " ") if variant == "title" else name

    def fmt(sents, passages):
        renamed = [dataclasses.replace(p, source=label(p.source)) for p in passages]
        return SHIPPED(sents, renamed)
    return fmt


def main() -> None:
    variant, out = sys.argv[1], Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    if variant != "file":
        sentences.format_sentences = relabel(variant)
    for book in QUESTIONS:
        run_cli(eval_qa_args(book), out / f"label_{variant}_{book}.json")


if __name__ == "__main__":
    main()
