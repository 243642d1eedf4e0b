"""Held-out predictions of every candidate of ``auto`` (issue 26) on TUNING sets, to compare choice rules offline.

    python experiments/probes/icl_select_probe.py --task cr --seeds 1,2 --out tmp/i26/select_cr.json
    python experiments/probes/icl_select_probe.py --task chatter_topics --train data/icl/chatter_topics/train.jsonl \\
        --seeds 1,2 --out tmp/i26/select_topics.json

Builds the classifier exactly as ``eval-icl`` does (same seeds, 300 demonstrations, 20 in context) and stores
``Selection.to_dict(detail=True)`` per seed; no test text is read. The test accuracies of each mode come from
the same sets' eval-icl runs (whose classifier is the same for a seed), so a rule's choice can be scored.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from longmem_core.classify import icl, icl_modes  # noqa: E402
from longmem_core.documents.data import read_labelled  # noqa: E402
from longmem_core.model.model import LongMemModel  # noqa: E402
from longmem_core.config import default_checkpoint  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--task", required=True)
    p.add_argument("--train", default=None)
    p.add_argument("--seeds", default="1,2")
    p.add_argument("--memory-size", type=int, default=300)
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    demos = read_labelled(args.train or f"/work/shared/data/icl/{args.task}/train.jsonl", min_classes=2)
    model = LongMemModel.load(checkpoint=default_checkpoint())
    template, labels, out = icl.template_for(args.task), icl.label_set(demos), {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        chosen = icl.sample_context(demos, args.memory_size, seed)  # as evaluate_modes
        context = icl.context_text(template, icl.sample_context(chosen, args.k, seed))
        bank = model.new_bank(capacity=max(model.cfg.capacity, 2 * len(icl.context_text(template, chosen)) + 64))
        memory = icl.memorize_demonstrations(model, chosen, bank, template=template)
        classifier = icl_modes.ModeClassifier(model, labels, template, context, bank, memory, ("auto",), args.k,
                                              icl_modes.settings.MODE.neighbours)
        out[str(seed)] = classifier.select().to_dict(detail=True)
        print(seed, out[str(seed)]["chosen"], out[str(seed)]["accuracy"], file=sys.stderr)
    Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
