"""Probe: after which prompt does the backbone's likelihood pick the answer span best? Re-scores the candidate spans
of the best read-back sentence collected by ``span_rank_probe.py collect`` (tuning documents only) after a few
prompts that hold that sentence alone, without memorizing again.

    .venv/bin/python experiments/probes/span_prompt_probe.py tmp/rank3_gnuplot.json tmp/rank3_debmake.json

Run on this project's CPU at c888ef6 (debmake-doc and gnuplot-doc, 40 tuning questions): the shipped read-back
prompt (six sentences) 21; the best sentence alone in the same chat turn 19; "... Answer with a few words copied
from the text above." 16; plain "{sentence}\nQuestion: {q}\nAnswer:" 19 (gnuplot 6, debmake 13); plain "Text:
... Short answer copied from the text:" 21. No prompt beats the shipped one.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from longmem_core.answer import answer, spans  # noqa: E402
from longmem_core.evals.eval_qa import contains_any as right  # noqa: E402 - eval-qa's test of an answer

# name -> (chat turn or None for plain text, the text before the span); {s}: the sentence, {q}: the question
PROMPTS = {
    "chat_sentence": ("Read these passages from memory:\n\n{s}\n\nUse them to answer. {q}",
                      answer.ANSWER_OPENING + answer.SPAN_OPENING),
    "chat_short": ("{s}\n\n{q} Answer with a few words copied from the text above.", ""),
    "plain_qa": (None, "{s}\nQuestion: {q}\nAnswer:"),
    "plain_short": (None, "Text: {s}\nQuestion: {q}\nShort answer copied from the text:"),
}


@torch.no_grad()
def score(model, prompt_ids: list[int], rows: list[str], close: torch.Tensor) -> list[float]:
    """log P(row, then a closing token | prompt) for every row (a candidate span's text)."""
    tok = model.tokenizer
    out = []
    for lo in range(0, len(rows), 16):
        part = [tok(" " + r, add_special_tokens=False)["input_ids"][:spans.ROW_TOKENS] for r in rows[lo:lo + 16]]
        width = len(prompt_ids) + max(len(p) for p in part)
        batch = torch.zeros((len(part), width), dtype=torch.long)
        for i, p in enumerate(part):
            batch[i, :len(prompt_ids) + len(p)] = torch.tensor(prompt_ids + p)
        n0 = len(prompt_ids)
        hidden = model.backbone(batch).hidden_states[-1][:, n0 - 1:]  # only where the span and its end are read
        logp = torch.log_softmax(model.backbone.logits(hidden).float(), -1)  # [R, T - n0 + 1, V]
        for i, p in enumerate(part):
            taken = float(logp[i, torch.arange(len(p)), torch.tensor(p)].sum())
            ended = float(torch.logsumexp(logp[i, len(p), close], 0))
            out.append(taken + ended)
    return out


def main(files: list[str]) -> None:
    from app.handlers import load_model
    model = load_model()
    tok = model.tokenizer
    close = torch.tensor(spans.closers(model))
    records = [r for f in files for r in json.load(open(f))]
    counts = {name: {} for name in PROMPTS}
    base = {}
    for r in records:
        cands = [sp for sp in r["spans"] if sp["s"] == 0]
        if not cands:
            continue
        s = " ".join(r["sentences"][0]["text"].split())
        q = r["q"]["question"]
        texts = [" ".join(sp["text"].split()) for sp in cands]
        best = max(range(len(cands)), key=lambda i: cands[i]["likely"] + cands[i]["closes"])
        base[r["doc"]] = base.get(r["doc"], 0) + right(texts[best], r["q"]["answers"])
        for name, (turn, before) in PROMPTS.items():
            if turn is None:
                ids = tok(before.format(s=s, q=q), add_special_tokens=False)["input_ids"]
            else:
                ids = model.chat_ids(turn.format(s=s, q=q)) + (
                    tok(before, add_special_tokens=False)["input_ids"] if before else [])
            sc = score(model, ids, texts, close)
            pick = max(range(len(cands)), key=lambda i: sc[i])
            counts[name][r["doc"]] = counts[name].get(r["doc"], 0) + right(texts[pick], r["q"]["answers"])
        print(r["doc"], q[:50], flush=True)
    print("shipped (read-back prompt):", sum(base.values()), base)
    for name, c in counts.items():
        print(name, sum(c.values()), c)


if __name__ == "__main__":
    main(sys.argv[1:])
