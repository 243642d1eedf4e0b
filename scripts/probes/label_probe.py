"""Probe: how should the sentences read back be labelled for the small reader? Tuning books only.

eval-qa (default mode) on the tuning books with ``sentences.format_sentences`` labelling each line differently:
"file" (as shipped: "[frankenstein.txt]"), "title" ("[frankenstein]": the file's stem, underscores as spaces),
"none" (no label). Prints the eval-qa JSON of each book to OUT_DIR/label_{variant}_{book}.json.

    .venv/bin/python scripts/probes/label_probe.py title tmp/labels
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from longmem_core import cli, sentences  # noqa: E402

BOOKS = Path("/work/shared/data/books")
QA = {"frankenstein": ROOT / "data/qa/frankenstein.jsonl", "great_expectations": ROOT / "data/qa/great_expectations.jsonl",
      "the_time_machine": ROOT / "assets/qa_time_machine.jsonl"}
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
    for book, questions in QA.items():
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            cli.main(["eval-qa", "--text", str(BOOKS / f"{book}.txt"), "--questions", str(questions), "--max-chars",
                      "60000", "--modes", "sentences_hybrid_cache", "--top", "6", "--context-chars", "200",
                      "--max-new-tokens", "48", "--json"])
        (out / f"label_{variant}_{book}.json").write_text(buf.getvalue())
        print("wrote", book, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
