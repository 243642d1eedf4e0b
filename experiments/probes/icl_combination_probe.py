"""Every candidate's label distribution on held-out demonstrations AND on test texts (issue 26), stored as tensors so
choice rules (the shipped sign test, a mix weight fitted on the held-out texts, ...) can be compared offline on the
same runs.

    PYTHONPATH=. python experiments/probes/icl_combination_probe.py --task cr --seeds 1,2,3,4,5 --n-test 200 \\
        --out tmp/i26/comb_cr.pt

The classifier is built exactly as ``eval-icl`` builds it (same seed, 300 demonstrations, 20 in context); the held-out
demonstrations are those ``icl_select.select`` holds out (same stratified sample), their keys read as test texts' keys
and scored leave-one-out for the key modes. Test texts are ``--n-test`` drawn with seed 0 (as ``eval-icl --limit``).
Test texts are read in batches (``text_keys``, ``label_scores``): equal to the per-text path up to float rounding.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from longmem_core.classify import icl, icl_modes, key_scores, settings  # noqa: E402
from longmem_core.classify.icl_select import stratified_sample, _knn_loo  # noqa: E402
from longmem_core.config import default_checkpoint  # noqa: E402
from longmem_core.documents.data import read_labelled  # noqa: E402
from longmem_core.model.model import LongMemModel  # noqa: E402


def distributions(classifier, queries: torch.Tensor, scores: torch.Tensor, exclude: list[int | None]) -> dict:
    """Per text: centroid distribution [N, L] (own key out where ``exclude``), knn vote scores [N, L], context probs
    [N, L], calibrated [N, L]."""
    memory, labels = classifier.keys.memory, classifier.labels
    onehot = key_scores.label_onehot(memory, labels)  # [M, L]
    raw, cen = classifier.keys.keys, classifier.centred.keys
    out = {"near": [], "knn": [], "probs": [], "cal": []}
    for row, own in enumerate(exclude):
        query = queries[row]
        sims = raw @ query
        others = onehot.clone()
        if own is not None:
            sims[own] = -float("inf")
            others[own] = 0
        out["knn"].append(_knn_loo(sims, onehot, classifier.neighbours))
        sums = others.T @ cen
        centroids = torch.nn.functional.normalize(sums / others.sum(0).clamp(min=1)[:, None], dim=-1)
        # cosines kept raw so a temperature can be chosen offline
        out["near"].append(centroids @ key_scores.centre_query(classifier.centred, query))
        probs = torch.softmax(scores[row], dim=0)
        out["probs"].append(probs)
        out["cal"].append(key_scores.calibrate(probs, classifier.content_free))
    return {k: torch.stack(v) for k, v in out.items()}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--task", required=True)
    p.add_argument("--train", default=None)
    p.add_argument("--test", default=None)
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--n-test", type=int, default=200)
    p.add_argument("--memory-size", type=int, default=300)
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--held-out", type=int, default=80)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    base = Path("/work/shared/data/icl") / args.task
    demos = read_labelled(args.train or str(base / "train.jsonl"), min_classes=2)
    test = read_labelled(args.test or str(base / "test.jsonl"))
    if args.n_test < len(test):
        test = random.Random(0).sample(test, args.n_test)
    model = LongMemModel.load(checkpoint=default_checkpoint())
    template, labels, out = icl.template_for(args.task), icl.label_set(demos), {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        t0 = time.perf_counter()
        chosen = icl.sample_context(demos, args.memory_size, seed)
        context = icl.context_text(template, icl.sample_context(chosen, args.k, seed))
        bank = model.new_bank(capacity=max(model.cfg.capacity, 2 * len(icl.context_text(template, chosen)) + 64))
        memory = icl.memorize_demonstrations(model, chosen, bank, template=template)
        classifier = icl_modes.ModeClassifier(model, labels, template, context, bank, memory, ("auto",), args.k)
        examples = memory.examples
        gold_all = [label for _, label in examples]
        in_prompt = {i for i, (t, label) in enumerate(examples)
                     if icl.format_demonstration(template, t, label) in context}
        allowed = [i for i in range(len(examples)) if i not in in_prompt and gold_all[i] in labels]
        # the first 40 of an 80 sample are not select's 40 sample; store both orders: the shipped 40 and a larger one
        held40 = stratified_sample(gold_all, allowed, settings.SELECTION.max_held_out, 0)
        rest = [i for i in stratified_sample(gold_all, allowed, args.held_out, 0) if i not in held40]
        held = held40 + rest
        t1 = time.perf_counter()
        texts = [examples[i][0] for i in held]
        q = key_scores.text_keys(model, texts, template)
        s = icl.label_scores(model, texts, labels, context=context, template=template, cache=classifier.caches["context"])
        h = distributions(classifier, q, s, list(held))
        t2 = time.perf_counter()
        ttexts = [t for t, _ in test]
        q = key_scores.text_keys(model, ttexts, template)
        s = icl.label_scores(model, ttexts, labels, context=context, template=template, cache=classifier.caches["context"])
        tt = distributions(classifier, q, s, [None] * len(test))
        t3 = time.perf_counter()
        out[seed] = {"held": h, "held_gold": [labels.index(gold_all[i]) for i in held], "n40": len(held40),
                     "test": tt, "test_gold": [labels.index(g) for _, g in test], "labels": labels,
                     "seconds": {"memorize": t1 - t0, "held": t2 - t1, "test": t3 - t2}}
        acc = {m: float((tt[m].argmax(-1) == torch.tensor(out[seed]["test_gold"])).float().mean()) for m in tt}
        print(args.task, seed, {k: round(v, 3) for k, v in acc.items()}, out[seed]["seconds"], file=sys.stderr,
              flush=True)
        torch.save(out, args.out)


if __name__ == "__main__":
    main()
