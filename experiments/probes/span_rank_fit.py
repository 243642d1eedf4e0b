"""The offline half of ``span_rank_probe.py``: features of the collected candidate spans, and rankers over them
compared leave one document out (fit on the other tuning documents, count the held-out one's questions whose best
candidate holds an answer)."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from longmem_core.model import search  # noqa: E402
from longmem_core.evals.eval_qa import contains_any as right  # noqa: E402 - eval-qa's test of an answer

STOP = frozenset(search.stop_words())
_PLAIN = re.compile(r"[^\W_]+")
_WORD = re.compile(r"\S+")


def plain(text: str) -> list[str]:
    return _PLAIN.findall(text.lower())


def features(q: str, sent: dict, rank: int, best_score: float, sp: dict) -> list[float]:
    asked = {w for w in plain(q) if w not in STOP}
    text = sent["text"]
    words = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    inside = [i for i, (x, y) in enumerate(words) if y > sp["a"] and x < sp["b"]]
    i0, i1 = (inside[0], inside[-1]) if inside else (0, 0)
    hits = [i for i, (x, y) in enumerate(words) if set(plain(text[x:y])) & asked]
    before = [i for i in hits if i < i0]
    after = [i for i in hits if i > i1]
    gap_before = (i0 - before[-1] - 1) if before else 10
    gap_after = (after[0] - i1 - 1) if after else 10
    span = sp["text"]
    sw = plain(span)
    ql = q.lower()
    numeric_q = bool(re.search(r"\b(version|year|how many|how much|how big|how long|number|value|size|when)\b", ql))
    who_q = ql.startswith("who") or " whom" in ql or "whose" in ql
    has_digit = any(c.isdigit() for c in span)
    cap = span[:1].isupper()
    code = bool(re.search(r"[-_./$=\\(){}<>@%^~:]", span.strip(".,;:")))
    return [
        # PMI with the question: the score less the same after a question that asks nothing
        sp["likely"] + sp["closes"] - (sp["generic"] if sp.get("generic") is not None else 0.0),
        sp["likely"],
        sp["closes"],
        len(span.split()),
        float(rank == 0),
        sent["score"] / best_score if best_score else 0.0,
        float(bool(set(sw) & asked)),  # holds a question word
        min(gap_before, 10) / 10,  # words between the last question word before it and it
        min(gap_after, 10) / 10,
        float(bool(before)),
        float(numeric_q and has_digit),
        float(numeric_q and not has_digit),
        float(who_q and cap),
        float(code),
        float(sp["a"] == 0),
        float(all(w in STOP for w in sw[:1])),
    ]


NAMES = ["pmi", "likely", "closes", "words", "best_sentence", "sentence_share", "has_q_word", "gap_before", "gap_after",
         "q_word_before", "num_q_digit", "num_q_no_digit", "who_cap", "code", "opens_sentence", "stop_first"]


def load(files: list[str]) -> list[dict]:
    out = []
    for f in files:
        for r in json.load(open(f)):
            if not r["spans"]:
                r["X"], r["y"] = None, None
                out.append(r)
                continue
            best = r["sentences"][0]["score"]
            r["X"] = torch.tensor([features(r["q"]["question"], r["sentences"][sp["s"]], sp["s"], best, sp)
                                   for sp in r["spans"]])
            r["y"] = torch.tensor([right(sp["text"], r["q"]["answers"]) for sp in r["spans"]])
            out.append(r)
    return out


def train(records: list[dict], l2: float = 0.01, steps: int = 300) -> tuple[torch.Tensor, torch.Tensor,
                                                                          torch.Tensor]:
    usable = [r for r in records if r["X"] is not None and r["y"].any()]
    allx = torch.cat([r["X"] for r in usable])
    mu, sd = allx.mean(0), allx.std(0) + 1e-6
    w = torch.zeros(allx.shape[1], requires_grad=True)
    with torch.no_grad():
        w[1], w[2] = sd[1], sd[2]  # start at the shipped score (likely + closes)
    opt = torch.optim.LBFGS([w], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = 0.0
        for r in usable:
            s = ((r["X"] - mu) / sd) @ w
            loss = loss - (torch.logsumexp(s[r["y"]], 0) - torch.logsumexp(s, 0))
        loss = loss / len(usable) + l2 * (w ** 2).sum()
        loss.backward()
        return loss
    opt.step(closure)
    return w.detach(), mu, sd


def correct(records: list[dict], score) -> int:
    n = 0
    for r in records:
        if r["X"] is None:
            continue
        n += bool(r["y"][int(torch.argmax(score(r)))])
    return n


def fit(files: list[str]) -> None:
    records = load(files)
    docs = sorted({r["doc"] for r in records})
    shipped = lambda r: torch.where(r["X"][:, 4] > 0, r["X"][:, 1] + r["X"][:, 2], torch.tensor(-1e9))  # noqa
    anysent = lambda r: r["X"][:, 1] + r["X"][:, 2]  # noqa: E731
    print("doc: questions, any candidate right, shipped (best sentence), likely+closes over 6 sentences, fitted")
    total = [0, 0, 0, 0, 0]
    for l2 in (0.003, 0.03, 0.3):
        for d in docs:
            held = [r for r in records if r["doc"] == d]
            rest = [r for r in records if r["doc"] != d]
            w, mu, sd = train(rest, l2)
            fitted = lambda r: ((r["X"] - mu) / sd) @ w  # noqa: E731
            row = [len(held), sum(1 for r in held if r["y"] is not None and r["y"].any()),
                   correct(held, shipped), correct(held, anysent), correct(held, fitted)]
            total = [a + b for a, b in zip(total, row)] if l2 == 0.03 else total
            print(f"l2 {l2} {d}: {row}")
    w, mu, sd = train(records, 0.03)
    print("total at l2 0.03:", total)
    print("weights (all documents, standardized):", {n: round(float(x), 2) for n, x in zip(NAMES, w)})


def calibration(files: list[str]) -> None:
    """Questions answered when the span maximises log P(span) + log P(end) - alpha x the same after a question that
    asks nothing ("generic", collected beside it), over the candidates of the ``n`` best sentences."""
    records = [r for f in files for r in json.load(open(f))]
    for n in (1, 2, 6):
        for alpha in (0.0, 0.25, 0.5, 0.75, 1.0):
            got = 0
            for r in records:
                pool = [s for s in r["spans"] if s["s"] < n and s.get("generic") is not None]
                if pool:
                    best = max(pool, key=lambda s: s["likely"] + s["closes"] - alpha * s["generic"])
                    got += right(best["text"], r["q"]["answers"])
            print(f"best {n} sentences, alpha {alpha}: {got} of {len(records)}")


if __name__ == "__main__":
    if sys.argv[1] == "calibration":
        calibration(sys.argv[2:])
    else:
        fit(sys.argv[1:])
