"""Probe (issue 25): does the backbone's guess at an answer, searched together with the question (hypothetical-
document expansion, "HyDE"), bring a fact asked in other words nearer the top? Tuning pairs only.

For each tuning pair of ``data/needles/paraphrase.jsonl``: the fact planted in a tuning book as eval-paraphrase
plants it, memorized; then the rank of the fact's best chunk, and whether the hybrid search's read-back finds it,
searching with the question alone and with the question plus one sentence the backbone writes as an answer.

    .venv/bin/python experiments/probes/hyde_probe.py ../shared/data/books/the_time_machine.txt 8000

Run on this project's CPU at e241f23 (the 32 tuning pairs in The Time Machine at 8,000 tokens): with the question
alone the hybrid search's read-back held the fact for 2 of 32 (median rank of the fact's chunk among about 2,000:
memory search 60, BM25 39.5); with the backbone's guess added 4 of 32 (memory 32, BM25 46.5). The 135M backbone's
guesses mostly invent names ("a local farmer named Elena") and rarely reach the fact's own words; one pair was
found through a shared word ("swim"). Far from issue 25's 60%; not built.
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from longmem_core.evals import eval_paraphrase as ep  # noqa: E402
from longmem_core.answer import read_back
from longmem_core.model import search  # noqa: E402
from longmem_core.evals.needles import Haystack  # noqa: E402

GUESS = "Answer in one short sentence, with names and places: {q}"


def main(book: str, length: int) -> None:
    from app.handlers import load_model
    model = load_model()
    haystack = Haystack(Path(book).read_text(encoding="utf-8"), model.tokenizer)
    pairs = ep.select(ep.read_pairs(ep.pairs_path("data/needles/paraphrase.jsonl")), "tuning", None)
    out = {"question": [], "question + guess": []}
    for pair in pairs:
        document, fact = ep.plant(haystack, pair, length, 0)
        chunk = model.cfg.chunk_size
        bank = model.new_bank(capacity=max(model.cfg.capacity, -(-int(length * 1.25 + 64) // chunk) * chunk))
        model.memorize(document, bank, source=ep.SOURCE)
        positions = ep.fact_positions(bank, fact)
        bounds = read_back.sentence_bounds(document)
        q = pair["question"]
        guess = model.generate(model.chat_ids(GUESS.format(q=q)), None, max_new_tokens=32, temperature=0.0,
                               backbone_only=True)
        for piece in guess:
            pass
        for name, text in (("question", q), ("question + guess", q + " " + guess.text.strip())):
            memory, lexical = search.chunk_scores(model, bank, text), search.lexical_scores(bank, text)
            found = ep.finds_fact(search.hybrid_chunks(model, bank, text, 6), document, bounds, fact)
            out[name].append((found, ep.rank_of(memory, positions), ep.rank_of(lexical, positions)))
        print(pair["kind"], "|", q, "|", guess.text.strip()[:90], "|", out["question"][-1], out["question + guess"][-1],
              flush=True)
    for name, rows in out.items():
        print(f"{name}: hybrid found {sum(r[0] for r in rows)} of {len(rows)}; median rank memory "
              f"{statistics.median(r[1] for r in rows)}, BM25 {statistics.median(r[2] for r in rows)}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
