"""The Classify tab's path on its two bundled sets (issue 26): the default (auto) against in context only, the
paper's memory layer and the 5-NN vote, with the mode auto chose and the time choosing added.

    OMP_NUM_THREADS=1 python experiments/probes/icl_auto_app.py > tmp/i26/app_bundled.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from app import handlers  # noqa: E402
from app.session import Session  # noqa: E402
from longmem_core import LongMemModel, default_checkpoint  # noqa: E402


def main() -> None:
    model, out = LongMemModel.load(checkpoint=default_checkpoint()), {}
    for choice in handlers.DEMONSTRATION_SETS:
        session = Session()
        demos = handlers.demonstration_set(choice)
        handlers.load_demonstrations(model, session, demos)
        rows = handlers.read_test_file(demos.test_file)
        r = handlers.classify_rows(model, session, rows, k=20, seed=1)
        out[choice] = {k: r[k] for k in ("n", "accuracy_default", "accuracy_context", "accuracy_memory",
                                         "accuracy_knn", "seconds", "added_time")} | {"selection": r["selection"]}
        print(choice, {k: v for k, v in out[choice].items() if k != "selection"}, r["selection"]["chosen"],
              file=sys.stderr)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
