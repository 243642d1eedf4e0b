"""Probe (issue 25): can a sentence's pooled memory-layer keys/values (what the bank stores), or the backbone's hidden
states, find a fact asked in other words, untrained and with a small projection trained on this project's own pairs?

Features per sentence: the mean over its tokens of the memory layer's keys (before rotation) and values [G*D each],
and of the backbone's hidden states after a few blocks, each read in its document in 1,024-token segments opened by
the sink token, as memorizing reads. A question: the same means over the question read alone.

Evaluation ("crowded", as ``paraphrase_ranks.py --crowded``): every tuning pair of ``data/needles/paraphrase.jsonl``
(and of ``literal.jsonl``, the control) planted together in one stretch of each tuning book (``plant_together``);
per question, the rank of the fact's sentence among every sentence of that document by cosine.

Training (``--train``): a linear map per side (question, sentence) trained with InfoNCE on documents of the training
books holding ``data/train/paraphrase_train.jsonl``'s facts 16 at a time; every other sentence of the document is a
negative. Nothing from the evaluation pairs.

    PYTHONPATH=. .venv/bin/python experiments/probes/sentence_embed_probe.py --train
"""
from __future__ import annotations

import argparse
import bisect
import json
import random
import re
from pathlib import Path

import torch

from longmem_core import LongMemModel
from longmem_core.evals import eval_paraphrase as ep
from longmem_core.evals.needles import Haystack

BOOKS = Path("../shared/data/books")
TUNING = ["frankenstein.txt", "the_time_machine.txt", "great_expectations.txt"]
TRAINING = ["dracula.txt", "moby_dick.txt", "war_and_peace.txt", "middlemarch.txt", "a_tale_of_two_cities.txt"]
LAYERS = (6, 12, 18, 24, 30)  # hidden_states index: after this many blocks
END = re.compile(r"(?<=[.!?])[\"'\u201d\u2019)]*\s+(?=[\"'\u201c\u2018(]*[A-Z0-9])|\n\s*\n")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    spans, start = [], 0
    for m in END.finditer(text):
        if m.start() > start and text[start:m.start()].strip():
            spans.append((start, m.start()))
        start = m.end()
    if text[start:].strip():
        spans.append((start, len(text)))
    return spans


@torch.no_grad()
def token_features(model: LongMemModel, ids: list[int]) -> dict[str, torch.Tensor]:
    """ids (no sink) -> {name: [T, F]} read as memorizing reads, in 1,024-token segments opened by the sink."""
    parts: dict[str, list[torch.Tensor]] = {}
    seg = model.cfg.segment_length
    for s in range(0, len(ids), seg):
        piece = ids[s:s + seg]
        x = torch.tensor([model.with_sink(piece)])
        out = model.backbone(x, memory_layer=model.memory_layer)
        start = x.shape[1] - len(piece)
        feats = {"K": out.memory_keys[0, start:].flatten(1), "V": out.memory_values[0, start:].flatten(1)}
        for layer in LAYERS:
            feats[f"H{layer}"] = out.hidden_states[layer][0, start:]
        for k, v in feats.items():
            parts.setdefault(k, []).append(v.float())
    return {k: torch.cat(v) for k, v in parts.items()}


def sentence_features(model: LongMemModel, text: str) -> tuple[list[tuple[int, int]], dict[str, torch.Tensor]]:
    """-> sentence spans, {name: [S, F]} mean token features per sentence."""
    spans = sentence_spans(text)
    enc = model.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    feats = token_features(model, enc["input_ids"])
    starts = [a for a, _ in spans]
    which = torch.tensor([max(0, bisect.bisect_right(starts, o[0]) - 1) for o in enc["offset_mapping"]])
    out = {}
    for k, v in feats.items():
        sums = torch.zeros(len(spans), v.shape[1]).index_add_(0, which, v)
        counts = torch.zeros(len(spans)).index_add_(0, which, torch.ones(len(which)))
        out[k] = sums / counts.clamp(min=1)[:, None]
    return spans, out


def question_features(model: LongMemModel, question: str) -> dict[str, torch.Tensor]:
    feats = token_features(model, model.tokenizer(question, add_special_tokens=False)["input_ids"])
    return {k: v.mean(0) for k, v in feats.items()}


def documents(model, books: list[str], pairs: list[dict], per_doc: int, length: int, seed: int) -> list[dict]:
    """Documents of ``length`` tokens, each holding ``per_doc`` of the pairs' facts, cycling over the books."""
    hay = {b: Haystack((BOOKS / b).read_text(encoding="utf-8"), model.tokenizer) for b in books}
    docs = []
    for i in range(0, len(pairs), per_doc):
        group = pairs[i:i + per_doc]
        book = books[(i // per_doc) % len(books)]
        text, facts = ep.plant_together(hay[book], group, length, seed + i)
        spans, feats = sentence_features(model, text)
        starts = [a for a, _ in spans]
        targets = [bisect.bisect_right(starts, f.char_start) - 1 for f in facts]
        qs = [question_features(model, p["question"]) for p in group]
        docs.append({"book": book, "feats": feats, "targets": targets, "pairs": group,
                     "questions": {k: torch.stack([q[k] for q in qs]) for k in feats}})
        print(f"doc {len(docs)}: {book}, {len(spans)} sentences", flush=True)
    return docs


def text_documents(model, texts: list[tuple[str, list[dict], list[list[str]]]]) -> list[dict]:
    """(text, questions, answer strings per question) -> documents whose targets are, per question, every sentence
    holding one of its answers (a real book's sentences: nothing planted)."""
    docs = []
    for text, qrows, answers in texts:
        spans, feats = sentence_features(model, text)
        targets = [[j for j, (a, b) in enumerate(spans) if any(x.lower() in text[a:b].lower() for x in ans)]
                   for ans in answers]
        keep = [i for i, t in enumerate(targets) if t]
        qs = [question_features(model, qrows[i]["question"]) for i in keep]
        docs.append({"book": "", "feats": feats, "targets": [targets[i] for i in keep],
                     "pairs": [dict(qrows[i], kind="natural") for i in keep],
                     "sentences": [text[a:b] for a, b in spans],
                     "questions": {k: torch.stack([q[k] for q in qs]) for k in feats}})
        print(f"text doc {len(docs)}: {len(spans)} sentences, {len(keep)} questions", flush=True)
    return docs


def book_question_texts(path: str, window: int = 16000) -> list[tuple[str, list[dict], list[list[str]]]]:
    """The training book questions grouped into windows of ``window`` characters of their books; a question's
    target is its own sentence (given as answer string)."""
    rows = [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]
    out = []
    for book in sorted({r["book"] for r in rows}):
        text = (BOOKS / book).read_text(encoding="utf-8")
        located = sorted((text.find(r["sentence"]), r) for r in rows if r["book"] == book)
        while located:
            start = max(0, located[0][0] - window // 4)
            inside = [r for at, r in located if at + len(r["sentence"]) <= start + window]
            located = located[len(inside):]
            out.append((text[start:start + window], inside, [[r["sentence"][:60]] for r in inside]))
    return out


def ranks(q: torch.Tensor, s: torch.Tensor, targets: list[int]) -> list[int]:
    """q [N, F], s [S, F] -> the rank (1 = first) of each question's target sentence by cosine."""
    sim = torch.nn.functional.normalize(q, dim=-1) @ torch.nn.functional.normalize(s, dim=-1).T  # [N, S]
    out = []
    for i, t in enumerate(targets):
        best = sim[i, t].max() if isinstance(t, list) else sim[i, t]
        out.append(1 + int((sim[i] > best).sum()))
    return out


def bm25_ranks(d: dict) -> list[int]:
    """The rank of each question's best target sentence by BM25 over the document's sentences."""
    from longmem_core.model.search import stop_words
    stop = set(stop_words())
    words = [[w for w in re.findall(r"[a-z0-9]+", x.lower()) if w not in stop] for x in d["sentences"]]
    n, avg = len(words), sum(map(len, words)) / max(1, len(words))
    df: dict[str, int] = {}
    for ws in words:
        for w in set(ws):
            df[w] = df.get(w, 0) + 1
    out = []
    for p, t in zip(d["pairs"], d["targets"]):
        q = {w for w in re.findall(r"[a-z0-9]+", p["question"].lower()) if w not in stop}
        import math
        sc = torch.tensor([sum(math.log(1 + (n - df.get(w, 0) + 0.5) / (df.get(w, 0) + 0.5)) * ws.count(w) * 2.2
                               / (ws.count(w) + 1.2 * (0.25 + 0.75 * len(ws) / avg)) for w in q if w in ws)
                           for ws in words])
        best = sc[t].max()
        out.append(1 + int((sc > best).sum()) if best > 0 else n)
    return out


def summary(rs: list[int]) -> dict:
    t = torch.tensor(rs).float()
    return {"n": len(rs), "median": float(t.median()), "top1": float((t <= 1).float().mean()),
            "top5": float((t <= 5).float().mean()), "top20": float((t <= 20).float().mean())}


def evaluate(docs: list[dict], name: str, project=None) -> dict:
    by_kind: dict[str, list[int]] = {}
    for d in docs:
        s, q = d["feats"][name], d["questions"][name]
        mu = s.mean(0)  # centred on the document's mean sentence
        s, q = s - mu, q - mu
        if project is not None:
            q, s = project(q, s)
        for p, r in zip(d["pairs"], ranks(q, s, d["targets"])):
            by_kind.setdefault(p["kind"] if p["kind"] in ("literal", "natural") else "paraphrase", []).append(r)
        if "sentences" in d:
            by_kind.setdefault("natural_bm25", []).extend(bm25_ranks(d))
    return {k: summary(v) for k, v in by_kind.items()}


class Projection(torch.nn.Module):
    def __init__(self, dim: int, out: int) -> None:
        super().__init__()
        self.q = torch.nn.Linear(dim, out)
        self.s = torch.nn.Linear(dim, out)

    def forward(self, q, s):
        return self.q(q), self.s(s)


def train(docs: list[dict], name: str, out: int, steps: int, seed: int, tau: float = 0.05, wd: float = 0.01) -> Projection:
    torch.manual_seed(seed)
    dim = docs[0]["feats"][name].shape[1]
    proj = Projection(dim, out)
    opt = torch.optim.AdamW(proj.parameters(), lr=1e-3, weight_decay=wd)
    for step in range(steps):
        d = docs[step % len(docs)]
        s, q = d["feats"][name], d["questions"][name]
        mu = s.mean(0)
        qp, sp = proj(q - mu, s - mu)
        logits = torch.nn.functional.normalize(qp, dim=-1) @ torch.nn.functional.normalize(sp, dim=-1).T / tau
        targets = torch.tensor([t[0] if isinstance(t, list) else t for t in d["targets"]])
        loss = torch.nn.functional.cross_entropy(logits, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return proj


def qa_texts(names: list[str]) -> list[tuple[str, list[dict], list[list[str]]]]:
    out = []
    for name in names:
        rows = [json.loads(x) for x in Path(f"data/qa/{name}.jsonl").read_text().splitlines() if x.strip()]
        text = (BOOKS / f"{name}.txt").read_text(encoding="utf-8")[:rows[0].get("max_chars", 60000)]
        out.append((text, rows, [r["answers"] for r in rows]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--length", type=int, default=16000)
    ap.add_argument("--train", action="store_true")
    ap.add_argument("--features", nargs="*", default=None)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--cache", default="tmp/sentence_embed.pt")
    ap.add_argument("--out", default="tmp/sentence_embed.json")
    args = ap.parse_args()
    model = LongMemModel.load()
    cache = Path(args.cache)
    if cache.exists():
        tuning, training, qa, bq = torch.load(cache)
    else:
        pairs = (ep.select(ep.read_pairs(ep.pairs_path("data/needles/paraphrase.jsonl")), "tuning", None)
                 + [dict(p, kind="literal") for p in
                    ep.select(ep.read_pairs(ep.pairs_path("data/needles/literal.jsonl")), "tuning", None)])
        tuning = [documents(model, [b], pairs, len(pairs), args.length, 0)[0] for b in TUNING]
        train_pairs = [json.loads(x) for x in Path("data/train/paraphrase_train.jsonl").read_text().splitlines() if x.strip()]
        random.Random(0).shuffle(train_pairs)
        training = documents(model, TRAINING, train_pairs, 16, 4000, 1)
        qa = text_documents(model, qa_texts(["frankenstein", "great_expectations"]))
        bq = text_documents(model, book_question_texts("data/train/book_questions.jsonl"))
        cache.parent.mkdir(exist_ok=True)
        torch.save((tuning, training, qa, bq), cache)
    results = {}
    for name in args.features or tuning[0]["feats"]:
        results[name] = {"untrained": evaluate(tuning + qa, name)}
        print(name, "untrained", results[name]["untrained"], flush=True)
        if args.train:
            for arm, docs in (("pairs", training), ("pairs+books", training + bq)):
                proj = train(docs, name, 256, args.steps, 0)
                with torch.no_grad():
                    results[name][arm] = evaluate(tuning + qa, name, proj)
                print(name, arm, results[name][arm], flush=True)
    Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
