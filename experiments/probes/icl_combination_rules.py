"""Choice rules for ``auto`` (issue 26) compared offline on the tensors ``icl_combination_probe.py`` stored.

    PYTHONPATH=. python experiments/probes/icl_combination_rules.py tmp/i26/comb_cr.pt tmp/i26/comb_topics.pt \\
        [--held 40]

Per task and seed: each fixed mode's test accuracy (context, knn, centroid, context_cal, centroid_context), and the
test accuracy of each rule, all from the same stored scores. A rule sees only the held-out demonstrations.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from longmem_core.classify import settings  # noqa: E402

T0, MIX0 = settings.MODE.centroid_temperature, settings.MODE.mix_weight
WEIGHTS = [i / 20 for i in range(21)]
TEMPS = [0.02, 0.05, 0.1, 0.2]


def choose(gold: list[int], predicted: dict[str, list[int]], margin: int = 1, z: float = 1.645,
           fallback: str = "centroid_context") -> str:
    """The rule auto shipped until 2026-12-07: the fallback unless a mode beats it on the held-out texts by more than
    ``margin`` and by a one-sided sign test (b - c > z sqrt(b + c)); of those, the most accurate."""
    order = ("centroid_context", "centroid", "context_cal", "knn", "context")
    right = {m: [p == g for p, g in zip(ps, gold)] for m, ps in predicted.items()}
    base = right[fallback]

    def clearly_better(m: str) -> bool:
        b = sum(x and not y for x, y in zip(right[m], base))
        c = sum(y and not x for x, y in zip(right[m], base))
        return b - c > max(margin, z * (b + c) ** 0.5)
    better = [m for m in order if m != fallback and m in right and clearly_better(m)]
    return max(better, key=lambda m: (sum(right[m]), -order.index(m))) if better else fallback


def fixed(d: dict, temperature: float = T0, mix: float = MIX0) -> dict[str, torch.Tensor]:
    """Every fixed mode's label distribution (or scores) [N, L] from the stored parts."""
    near = torch.softmax(d["near"] / temperature, -1)
    return {"context": d["probs"], "knn": d["knn"], "centroid": near, "context_cal": d["cal"],
            "centroid_context": mix * near + (1 - mix) * d["cal"]}


def nll(p: torch.Tensor, gold: torch.Tensor) -> float:
    return float(-torch.log(p[torch.arange(len(gold)), gold].clamp(min=1e-9)).mean())


def acc(p: torch.Tensor, gold: torch.Tensor) -> float:
    return float((p.argmax(-1) == gold).float().mean())


def rules(h: dict, hg: torch.Tensor, t: dict) -> dict[str, torch.Tensor]:
    """rule -> the test texts' scores [N, L] it would use, having looked at the held-out ones only."""
    out = {}
    hf, tf = fixed(h), fixed(t)
    names = list(hf)
    pred = {m: [int(i) for i in hf[m].argmax(-1)] for m in names}
    out["shipped"] = tf[choose([int(g) for g in hg], pred)]
    # a mix weight fitted by held-out log-loss, temperature fixed
    w = min(WEIGHTS, key=lambda w: (nll(w * hf["centroid"] + (1 - w) * h["cal"], hg), abs(w - MIX0)))
    out["mix_nll"] = w * tf["centroid"] + (1 - w) * t["cal"]
    # ... by held-out accuracy, log-loss breaking ties
    w2 = max(WEIGHTS, key=lambda w: (acc(w * hf["centroid"] + (1 - w) * h["cal"], hg),
                                      -nll(w * hf["centroid"] + (1 - w) * h["cal"], hg)))
    out["mix_acc"] = w2 * tf["centroid"] + (1 - w2) * t["cal"]
    # weight and temperature by log-loss
    best = min(((w, T) for w in WEIGHTS for T in TEMPS),
               key=lambda wt: nll(wt[0] * torch.softmax(h["near"] / wt[1], -1) + (1 - wt[0]) * h["cal"], hg))
    out["mix_T_nll"] = best[0] * torch.softmax(t["near"] / best[1], -1) + (1 - best[0]) * t["cal"]
    # product of experts: softmax(a log cal + near / T), a and 1/T fitted by log-loss
    grid = [(a, b) for a in (0, 0.25, 0.5, 1, 1.5, 2) for b in (0, 2, 5, 10, 20, 40)]

    def poe(d, a, b):
        return torch.softmax(a * torch.log(d["cal"].clamp(min=1e-9)) + b * d["near"], -1)
    a, b = min(grid, key=lambda ab: nll(poe(h, *ab), hg) if ab != (0, 0) else 1e9)
    out["poe_nll"] = poe(t, a, b)
    # the same with a finer grid, and with the k-NN vote's share as a third expert
    fine = [(a, b) for a in (0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 2, 3) for b in (0, 1, 2, 3, 5, 7, 10, 15, 20, 30, 40)]
    a1, b1 = min(fine, key=lambda ab: nll(poe(h, *ab), hg) if ab != (0, 0) else 1e9)
    out["poe_fine"] = poe(t, a1, b1)

    def poe3(d, a, b, c):
        share = d["knn"] / d["knn"].sum(-1, keepdim=True)
        return torch.softmax(a * torch.log(d["cal"].clamp(min=1e-9)) + b * d["near"] + c * share, -1)
    a3, b3, c3 = min(((a, b, c) for a, b in grid for c in (0, 1, 2, 4)),
                     key=lambda abc: nll(poe3(h, *abc), hg) if abc[:2] != (0, 0) or abc[2] else 1e9)
    out["poe_knn"] = poe3(t, a3, b3, c3)

    def poe_raw(d, a, b):  # uncalibrated context instead
        return torch.softmax(a * torch.log(d["probs"].clamp(min=1e-9)) + b * d["near"], -1)
    a4, b4 = min(grid, key=lambda ab: nll(poe_raw(h, *ab), hg) if ab != (0, 0) else 1e9)
    out["poe_raw"] = poe_raw(t, a4, b4)
    # continuous: maximum likelihood over a, b >= 0 (L-BFGS on their logs), from a = 1, b = 1 / T0
    theta = torch.tensor([0.0, math.log(1 / T0)], requires_grad=True)
    opt = torch.optim.LBFGS([theta], max_iter=100, line_search_fn="strong_wolfe")
    lc, hn = torch.log(h["cal"].clamp(min=1e-9)), h["near"]

    def closure():
        opt.zero_grad()
        logits = theta[0].exp() * lc + theta[1].exp() * hn
        loss = torch.nn.functional.cross_entropy(logits, hg)
        loss.backward()
        return loss
    opt.step(closure)
    ac, bc = [float(x) for x in theta.detach().exp()]
    out["poe_ml"] = poe(t, ac, bc)

    def feats(d):  # [N, L, 3]: log calibrated context, centroid cosine, k-NN vote share
        share = d["knn"] / d["knn"].sum(-1, keepdim=True)
        return torch.stack([torch.log(d["cal"].clamp(min=1e-9)), d["near"], share], -1)
    th3 = torch.tensor([0.0, math.log(1 / T0), -2.0], requires_grad=True)
    opt3 = torch.optim.LBFGS([th3], max_iter=100, line_search_fn="strong_wolfe")
    hf3 = feats(h)

    def closure3():
        opt3.zero_grad()
        loss = torch.nn.functional.cross_entropy(hf3 @ th3.exp(), hg)
        loss.backward()
        return loss
    opt3.step(closure3)
    out["poe_ml3"] = torch.softmax(feats(t) @ th3.detach().exp(), -1)
    # the library's combination (icl_combine), and the same kept unless a single mode beats its leave-one-out
    # held-out predictions by the shipped sign test
    from longmem_core.classify import icl_combine
    hx, tx = icl_combine.features(h["cal"], h["near"], h["knn"]), icl_combine.features(t["cal"], t["near"], t["knn"])
    comb = icl_combine.fit(hx, hg)
    out["comb"] = comb.distribution(tx)
    cv = [int(i) for i in icl_combine.cross_validated(hx, hg, comb)]
    right = {m: [p == int(g) for p, g in zip(pred[m], hg)] for m in names}
    base = [p == int(g) for p, g in zip(cv, hg)]
    better = []
    for m in names:
        b = sum(x and not y for x, y in zip(right[m], base))
        c = sum(y and not x for x, y in zip(right[m], base))
        if b - c > max(1, 1.645 * (b + c) ** 0.5):
            better.append(m)
    out["comb+sign"] = tf[max(better, key=lambda m: sum(right[m]))] if better else out["comb"]
    out["_cv"] = torch.tensor([sum(base) / len(base)] + [sum(right[m]) / len(base) for m in names])
    # the fitted mix, then the shipped sign test against knn and context with the mix as fallback
    hm = w * hf["centroid"] + (1 - w) * h["cal"]
    pred2 = {"centroid_context": [int(i) for i in hm.argmax(-1)], "knn": pred["knn"], "context": pred["context"],
             "centroid": pred["centroid"], "context_cal": pred["context_cal"]}
    c = choose([int(g) for g in hg], pred2)
    out["mix_nll+sign"] = out["mix_nll"] if c == "centroid_context" else tf[c]
    out["_w"] = torch.cat([torch.tensor([ac, bc]), th3.detach().exp()])
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("files", nargs="+")
    p.add_argument("--held", type=int, default=0, help="held-out texts used (0: the shipped 40)")
    args = p.parse_args()
    totals: dict[str, list[float]] = {}
    short: dict[str, int] = {}
    for f in args.files:
        runs = torch.load(f, weights_only=False)
        task = Path(f).stem
        for seed, r in runs.items():
            n = args.held or r["n40"]
            h = {k: v[:n] for k, v in r["held"].items()}
            hg = torch.tensor(r["held_gold"][:n])
            tg = torch.tensor(r["test_gold"])
            single = {m: acc(v, tg) for m, v in fixed(r["test"]).items()}
            ruled = rules(h, hg, r["test"])
            ws = [round(float(x), 2) for x in ruled.pop("_w")] + [round(float(x), 2) for x in ruled.pop("_cv")]
            racc = {m: acc(v, tg) for m, v in ruled.items()}
            best = max(single.values())
            line = " ".join(f"{m[:8]} {a:.3f}" for m, a in single.items())
            line += " | " + " ".join(f"{m} {a:.3f}" for m, a in racc.items())
            print(f"{task} s{seed} {line} w={ws}")
            for m, a in {**single, **racc}.items():
                totals.setdefault(m, []).append(a)
                if m in racc:
                    short[m] = short.get(m, 0) + (a < best - 0.02 or a < single["context"])
    print("mean over task-seeds:")
    for m, v in totals.items():
        extra = f"  short of best-2pts or context in {short[m]} of {len(v)}" if m in short else ""
        print(f"  {m:18s} {sum(v) / len(v):.4f}{extra}")


if __name__ == "__main__":
    main()
