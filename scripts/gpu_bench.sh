#!/usr/bin/env bash
# GPU training throughput of mnv3.train's step (python -m mnv3.bench.gpu, the "full" plan): about
# 3 minutes on one H200. Needs nothing but the working tree (synthetic data on the device).
#
#   bash scripts/gpu_bench.sh            # writes $OUT/gpu_training.json (OUT defaults to gpu-out)
#
# Commit the JSON as reports/bench/gpu_training.json (notebook 07 does not plot it yet).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
$PYTHON -m mnv3.bench.gpu --plan "${PLAN:-full}" --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_bench.log"
