#!/usr/bin/env bash
# GPU training throughput of the training loop's step (python -m mnv3.bench.gpu). Needs nothing
# but the working tree (synthetic data on the device).
#
#   bash scripts/gpu_bench.sh                 # the full plan: the target rows first, then what decides a default
#   PLAN=tiny bash scripts/gpu_bench.sh       # the smoke: four eager rows of MNIST Small at batch 8
#
# Into $OUT: gpu_training.json (rewritten after every row, so a cut run keeps what it measured)
# and gpu_bench.log. No row starts after BENCH_SECONDS (default: the budget less a third, at most 30 s); the rows
# not started are recorded as skipped, and the whole is cut by SIGINT when the budget
# (BUDGET_SECONDS, scripts/gpu_lib.sh) runs out. Extra arguments go to python -m mnv3.bench.gpu
# (--steps, --warmup). Commit the JSON as reports/bench/gpu_training.json. Exit status: the
# benchmark's (0; 124 when cut; 130 when interrupted), 3 when DEVICE=cuda finds no GPU.
set -uo pipefail
source "$(dirname "$0")/gpu_lib.sh"
log_to gpu_bench.log
[ "${PREFLIGHT_DONE:-0}" = 1 ] || preflight
left=$(seconds_left)
if (( left < 10 )); then
  echo "== bench: not started, ${left}s left of the budget"
  exit 124
fi
BENCH_SECONDS=${BENCH_SECONDS:-$(( left - (left / 3 < 30 ? left / 3 : 30) ))}  # the last row's time: a third, at most 30 s
echo "bench: plan ${PLAN:-full} on $DEVICE, rows start within ${BENCH_SECONDS}s, cut after $(( left - 5 ))s"
bounded "$(( left - 5 ))" "$PYTHON" -m mnv3.bench.gpu --plan "${PLAN:-full}" --device "$DEVICE" --out "$OUT" \
  --budget-seconds "$BENCH_SECONDS" "$@"
rc=$?
echo "== bench: exit status $rc; $OUT holds $(out_files) file(s)"
exit "$rc"
