"""Accuracy of every classification variant from the raw signals ``icl_probe.py`` stored (tuning data only).

    python experiments/probes/icl_choose.py tmp/icl_cr.pt tmp/icl_trec_dev.pt ...

Variants: k-NN votes over the memory keys (raw or centred on the demonstrations' mean key; plain or similarity-
weighted votes; class-balanced or not; several neighbour counts), nearest class centroid, the LM-scored modes
raw and with contextual calibration, and interpolations p = lam p_knn + (1 - lam) p_lm. Prints one table: rows
are variants, columns the files and seeds, and their mean.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from longmem_core.classify import icl_modes  # noqa: E402


def knn_probs(rec, k: int, centre: bool, temperature: float | None, balanced: bool) -> torch.Tensor:
    demo, test = rec["demo_keys"], rec["test_keys"]  # [M, F], [N, F]
    if centre:
        mean = demo.mean(0)
        demo = torch.nn.functional.normalize(demo - mean, dim=-1)
        test = torch.nn.functional.normalize(test - mean, dim=-1)
    labels = rec["labels"]
    y = torch.tensor([labels.index(label) for label in rec["demo_labels"]])  # [M]
    onehot = torch.nn.functional.one_hot(y, len(labels)).float()  # [M, L]
    return icl_modes.vote_distribution(test @ demo.T, onehot, k, temperature, balanced)


def centroid_probs(rec, centre: bool, temperature: float | None = None) -> torch.Tensor:
    demo, test = rec["demo_keys"], rec["test_keys"]
    if centre:
        mean = demo.mean(0)
        demo, test = demo - mean, test - mean
    labels = rec["labels"]
    cents = torch.stack([demo[[i for i, l in enumerate(rec["demo_labels"]) if l == label]].mean(0) for label in labels])
    sims = torch.nn.functional.normalize(test, dim=-1) @ torch.nn.functional.normalize(cents, dim=-1).T
    if temperature is not None:
        return torch.softmax(sims / temperature, dim=-1)
    return torch.nn.functional.one_hot(sims.argmax(-1), len(labels)).float()


def lm_probs(rec, mode: str, calibrate: bool) -> torch.Tensor:
    p = torch.softmax(rec[mode].float(), dim=-1)  # [N, L]
    if not calibrate:
        return p
    cf = torch.softmax(rec[mode + "_cf"].float(), dim=-1)  # [C, L] or [N, C, L]
    return icl_modes.calibrate(p, cf.mean(-2))


def accuracy(rec, probs: torch.Tensor) -> float:
    gold = torch.tensor([rec["labels"].index(label) for label in rec["test_labels"]])
    return float((probs.argmax(-1) == gold).float().mean())


def variants(rec) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for centre in (False, True):
        c = "centred " if centre else ""
        for k in (5, 10, 20, 50):
            for temperature in (None, 0.05, 0.1):
                for balanced in (False, True):
                    name = f"knn {c}k={k}{' t=' + str(temperature) if temperature else ''}{' bal' if balanced else ''}"
                    out[name] = knn_probs(rec, k, centre, temperature, balanced)
        out[f"centroid {c}".strip()] = centroid_probs(rec, centre)
        for t in (0.02, 0.05, 0.1):
            out[f"centroid {c}t={t}"] = centroid_probs(rec, centre, t)
    for mode in ("context", "memory", "kate"):
        if mode in rec:
            out[mode] = lm_probs(rec, mode, False)
            out[mode + " cal"] = lm_probs(rec, mode, True)
    for knn_name in ("knn k=5", "knn k=20 bal", "knn k=50 bal", "knn centred k=20 bal", "knn centred k=50 bal",
                     "knn centred k=20 t=0.05 bal", "centroid centred", "centroid centred t=0.02",
                     "centroid centred t=0.05", "centroid centred t=0.1"):
        for lm in ("kate cal", "kate", "context cal", "context", "memory cal"):
            if lm not in out:
                continue
            for lam in (0.25, 0.5, 0.75):
                out[f"mix {lam} [{knn_name}] + [{lm}]"] = lam * out[knn_name] + (1 - lam) * out[lm]
    return out


def main() -> None:
    columns: list[tuple[str, dict[str, float]]] = []
    for f in sys.argv[1:]:
        data = torch.load(f, weights_only=False)
        for seed, rec in data["seeds"].items():
            columns.append((f"{data['task']}{'-dev' if data['dev'] else ''}/{seed}",
                            {name: accuracy(rec, p) for name, p in variants(rec).items()}))
    names = list(columns[0][1])
    print("variant".ljust(60) + "".join(c.rjust(13) for c, _ in columns) + "mean".rjust(8))
    rows = sorted(names, key=lambda n: -sum(c[1].get(n, 0) for c in columns))
    for name in rows:
        vals = [c[1].get(name) for c in columns]
        got = [v for v in vals if v is not None]
        print(name.ljust(60) + "".join(("%.3f" % v if v is not None else "-").rjust(13) for v in vals)
              + ("%.3f" % (sum(got) / len(got))).rjust(8))


if __name__ == "__main__":
    main()
