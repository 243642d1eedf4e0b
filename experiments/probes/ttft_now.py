"""Probe: the bench's time-to-first-token figure alone (65k-token bank, default mode), without a full bench run.

    .venv/bin/python experiments/probes/ttft_now.py
"""
import json, sys
sys.path.insert(0, '.')
from longmem_core.bench import bench
from longmem_core.model.model import LongMemModel
from longmem_core.config import default_checkpoint
model = LongMemModel.load(checkpoint=default_checkpoint())
text = bench.BOOK.read_text(encoding="utf-8")
real_bank = model.new_bank(capacity=1 << 14)
model.memorize(text[:40000], real_bank, source="tm")
r = bench.time_to_first_token(model, bench.answer_bank(model, real_bank, text))
print(json.dumps(r, indent=1))
