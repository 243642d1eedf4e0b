"""Probe: can a small reader trained on questions we make ourselves pick the answer span better than the backbone's
likelihood alone? (beyond the paper)

The reader is two linear heads (start, end) on the frozen backbone's last hidden states of "Question: q\\nText: s":
the sentence's tokens come after the question, so their states have read it. Training pairs are made from
sentences of texts no evaluation uses (LaTeX manuals of texlive-latex-base-doc other than hyperref and natbib, and
three training books): a word or a short run of words that looks like an answer (a number, a name, code, else a
content word) is taken out and the sentence turned into a question about it ("The gbp command is the alias of
which command?" / "Which command is the gbp command the alias of?"). Evaluated on the tuning questions' candidate
spans collected by ``span_rank_probe.py collect`` (score = log P(span) + log P(end) + beta x the reader's).

    .venv/bin/python experiments/probes/span_reader_probe.py make tmp/reader_data.pt
    .venv/bin/python experiments/probes/span_reader_probe.py eval tmp/reader_data.pt tmp/rank3_*.json
"""
from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from longmem_core.model import search  # noqa: E402
from longmem_core.documents.data import read_document  # noqa: E402
from longmem_core.evals.eval_qa import contains_any as right  # noqa: E402 - eval-qa's test of an answer

LATEX = "/tmp/pdfs/x/usr/share/doc/texlive-doc/latex"
SOURCES = [f"{LATEX}/{p}" for p in ("geometry/geometry.pdf", "fancyhdr/fancyhdr.pdf", "amsmath/amsldoc.pdf",
                                     "graphics/grfguide.pdf", "url/url.pdf", "base/usrguide.pdf",
                                     "base/clsguide.pdf", "base/fntguide.pdf", "tools/array.pdf",
                                     "psnfss/psnfss2e.pdf", "bookmark/bookmark.pdf", "colortbl/colortbl.pdf")]
BOOKS = [f"../shared/data/books/{b}.txt" for b in ("moby_dick", "middlemarch", "war_and_peace")]
STOP = frozenset(search.stop_words())
LAYERS = (-1, 20, 12)  # the hidden states the reader reads (the embedding is 0)
_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z\\])")
_CODE = re.compile(r"[-_./$=\\(){}<>@%^~:]")


def sentences(path: str, limit: int) -> list[str]:
    text = read_document(path).text[:limit]
    out = []
    for para in re.split(r"\n\s*\n", text):
        for s in _SENT.split(" ".join(para.split())):
            if 8 <= len(s.split()) <= 40 and s[-1:] in ".!?":
                out.append(s)
    return out


def make_pair(s: str, rng: random.Random) -> tuple[str, int, int] | None:
    """(question, answer start, answer end in s) for one sentence, or None."""
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", s)]

    def core(i: int) -> tuple[int, int]:
        a, b = words[i]
        w = s[a:b]
        lo, hi = 0, len(w)
        while lo < hi and w[lo] in "\"'(\u201c\u2018[":
            lo += 1
        while hi > lo and w[hi - 1] in "\"').,;:!?\u201d\u2019]":
            hi -= 1
        return a + lo, a + hi

    kinds = []
    for i in range(1, len(words)):
        a, b = core(i)
        w = s[a:b]
        if not w or w.lower() in STOP or not re.search(r"\w", w):
            continue
        kind = ("number" if any(c.isdigit() for c in w) else "code" if _CODE.search(w) else
                "name" if w[0].isupper() else "word")
        kinds.append((i, kind))
    if not kinds:
        return None
    special = [k for k in kinds if k[1] != "word"]
    i, kind = rng.choice(special if special and rng.random() < 0.7 else kinds)
    j = i
    while j + 1 < len(words) and rng.random() < 0.35 and s[core(j + 1)[0]:core(j + 1)[1]].lower() not in STOP:
        j += 1
    a, b = core(i)[0], core(j)[1]
    wh = rng.choice({"number": ["what number", "which version", "how many", "what value"],
                     "code": ["which command", "what option", "which macro", "what"],
                     "name": ["who", "which", "what name", "what"],
                     "word": ["what", "which", "what kind of thing"]}[kind])
    before, after = s[:a].strip(), s[b:].strip().rstrip(".!?")
    kept = lambda t: " ".join(w for w in t.split() if rng.random() > 0.15)  # noqa: E731 - words dropped
    if rng.random() < 0.5:
        q = f"{kept(before)} {wh} {kept(after)}".strip() + "?"
    else:
        q = f"{wh.capitalize()} {kept(before)} {kept(after)}".strip() + "?"
    return " ".join(q.split()), a, b


def encode(model, question: str, sentence: str) -> tuple[list[int], list[tuple[int, int]], int]:
    """Token ids of the reader's input, the sentence's token offsets (in the sentence), where the sentence starts."""
    tok = model.tokenizer
    head = tok(f"Question: {question}\nText:", add_special_tokens=False)["input_ids"]
    enc = tok(" " + sentence, add_special_tokens=False, return_offsets_mapping=True)
    offsets = [(max(0, x - 1), y - 1) for x, y in enc["offset_mapping"]]
    return head + enc["input_ids"], offsets, len(head)


@torch.no_grad()
def states(model, ids_list: list[list[int]]) -> list[torch.Tensor]:
    out = []
    for lo in range(0, len(ids_list), 16):
        part = ids_list[lo:lo + 16]
        width = max(len(x) for x in part)
        batch = torch.zeros((len(part), width), dtype=torch.long)
        for i, x in enumerate(part):
            batch[i, :len(x)] = torch.tensor(x)
        hidden = model.backbone(batch).hidden_states
        h = torch.cat([hidden[i].float() for i in LAYERS], -1)  # [B, T, W x len(LAYERS)]
        out += [h[i, :len(x)] for i, x in enumerate(part)]
    return out


def token_of(offsets: list[tuple[int, int]], char: int) -> int | None:
    return next((k for k, (x, y) in enumerate(offsets) if x <= char < y), None)


def make(out: str, n_per_source: int = 150) -> None:
    from app.handlers import load_model
    model = load_model()
    rng = random.Random(0)
    items = []
    for path in SOURCES + BOOKS:
        try:
            sents = sentences(path, 150_000)
        except Exception as exc:  # noqa: BLE001 - a missing source is skipped, and said
            print("skip", path, exc)
            continue
        rng.shuffle(sents)
        for s in sents[:n_per_source]:
            pair = make_pair(s, rng)
            if pair is None:
                continue
            q, a, b = pair
            ids, offsets, n0 = encode(model, q, s)
            ts, te = token_of(offsets, a), token_of(offsets, b - 1)
            if ts is not None and te is not None:
                items.append((ids, n0, ts, te, q, s[a:b]))
        print(path, len(items), flush=True)
    print("examples:", len(items), "e.g.", [(q, ans) for *_, q, ans in items[:5]], flush=True)
    hs = states(model, [x[0] for x in items])
    torch.save({"h": [h[n0:].half() for h, (_, n0, *_r) in zip(hs, items)],
                "start": [x[2] for x in items], "end": [x[3] for x in items]}, out)


def train(data: dict, epochs: int = 12, l2: float = 1e-3) -> torch.nn.Module:
    head = torch.nn.Sequential(torch.nn.LayerNorm(data["h"][0].shape[-1]),
                               torch.nn.Linear(data["h"][0].shape[-1], 128), torch.nn.GELU(), torch.nn.Linear(128, 2))
    opt = torch.optim.Adam(head.parameters(), lr=1e-3, weight_decay=l2)
    for _ in range(epochs):
        for i in torch.randperm(len(data["h"])).tolist():
            logits = head(data["h"][i].float())  # [T, 2]
            loss = (torch.nn.functional.cross_entropy(logits[:, 0][None], torch.tensor([data["start"][i]]))
                    + torch.nn.functional.cross_entropy(logits[:, 1][None], torch.tensor([data["end"][i]])))
            opt.zero_grad()
            loss.backward()
            opt.step()
    return head


def flat_map(raw: str) -> tuple[str, list[int]]:
    """``raw`` with whitespace runs as one space, and for each raw position its position there."""
    out, where = [], []
    for ch in raw:
        if ch.isspace():
            if out and out[-1] != " ":
                out.append(" ")
            where.append(len(out) - 1 if out else 0)
        else:
            where.append(len(out))
            out.append(ch)
    return "".join(out).strip(), where


def evaluate(data_file: str, files: list[str]) -> None:
    from app.handlers import load_model
    model = load_model()
    data = torch.load(data_file)
    n = len(data["h"])
    held = int(n * 0.9)
    head = train({k: v[:held] for k, v in data.items()})
    with torch.no_grad():
        hit = 0
        for i in range(held, n):
            lg = head(data["h"][i].float())
            hit += int(lg[:, 0].argmax()) == data["start"][i] and int(lg[:, 1].argmax()) == data["end"][i]
    print(f"held-out made pairs, exact start and end: {hit} of {n - held}", flush=True)
    records = [r for f in files for r in json.load(open(f))]
    betas = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 1e6)
    got = {b: 0 for b in betas}
    for r in records:
        cands = [sp for sp in r["spans"] if sp["s"] == 0]
        if not cands:
            continue
        flat, where = flat_map(r["sentences"][0]["text"])
        ids, offsets, n0 = encode(model, r["q"]["question"], flat)
        with torch.no_grad():
            lg = head(states(model, [ids])[0][n0:])  # [T, 2]
        scores = []
        for sp in cands:
            ts, te = token_of(offsets, where[sp["a"]]), token_of(offsets, where[sp["b"] - 1])
            scores.append(float(lg[ts, 0] + lg[te, 1]) if ts is not None and te is not None else -1e4)
        for b in betas:
            k = max(range(len(cands)), key=lambda i: cands[i]["likely"] + cands[i]["closes"] + b * scores[i])
            got[b] += right(cands[k]["text"], r["q"]["answers"])
    for b in betas:
        print(f"beta {b}: {got[b]} of {len(records)}")


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2])
    else:
        evaluate(sys.argv[2], sys.argv[3:])
