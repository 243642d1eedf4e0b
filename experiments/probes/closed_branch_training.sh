#!/bin/bash
# Issue 30 probe: does a memory branch closed at init (memory_branch="closed") train as well as the paper's open one?
# Both arms start from the shipped query checkpoint (its memory layer and gates untrained), train the memory layer on
# one training book for the same steps on this CPU, and are scored in the paper's mode on a held-out book, LongMem
# against local only in the same run. Also the untrained controls: the fresh SideNet (closed) and the shipped
# checkpoint (open, as it loads).
#   bash experiments/probes/closed_branch_training.sh [STEPS] [OUT]    (default 400 steps, tmp/i30; run: 150)
#   ARMS=closed_floor bash experiments/probes/closed_branch_training.sh 150 tmp/i30    (the floored arm alone)
set -euo pipefail
STEPS=${1:-400}; OUT=${2:-tmp/i30}; B=/work/shared/data/books
PY=.venv/bin/python
EVAL="$B/adventures_of_sherlock_holmes.txt --max-tokens 8192 --json"
mkdir -p $OUT
[ -s $OUT/ppl_untrained_closed.json ] || LONGMEM_CHECKPOINT= $PY -m longmem_core eval-ppl $EVAL > $OUT/ppl_untrained_closed.json
[ -s $OUT/ppl_shipped_open.json ] || $PY -m longmem_core eval-ppl $EVAL --checkpoint assets/sidenet.safetensors > $OUT/ppl_shipped_open.json
# ARMS: which arms (default "closed open"); "closed_floor" is closed with train --branch-floor (factors kept >= 0)
for arm in ${ARMS:-closed open}; do
  branch=${arm%_floor}; floor="--no-branch-floor"; [ "$arm" = closed_floor ] && floor="--branch-floor"
  $PY -m longmem_core train $B/dracula.txt --checkpoint assets/sidenet.safetensors --memory-branch $branch $floor \
    --trainable memory --cache-features --steps $STEPS --warmup 20 --lr 1e-3 --checkpoint-every $STEPS \
    --out $OUT/run_$arm --json > $OUT/train_$arm.json 2> $OUT/train_$arm.log
  $PY -m longmem_core eval-ppl $EVAL --checkpoint $OUT/run_$arm/sidenet.safetensors > $OUT/ppl_$arm.json
done
echo done > $OUT/DONE
