#!/usr/bin/env bash
# The recipe search for the full profile, chosen on the validation split (the test set is read
# once per final run, never here). Each candidate is one change against the profile's own
# cifar10_small_s1 recipe, trained for SWEEP_EPOCHS, in a run folder named after its overrides.
#
#   bash scripts/gpu_sweep.sh              # then: python -m mnv3.runs runs/full  (the ablation table)
#
# Expects the mirror at $MNV3_DATA_MIRROR (default .mirror/, see `make gpu-mirror`). Writes
# $OUT/sweep.md and $OUT/sweep.json. Not run on a GPU yet: sizes are estimates.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export MNV3_DATA_MIRROR=${MNV3_DATA_MIRROR:-.mirror}
export PYTHONUNBUFFERED=1
OUT=${OUT:-gpu-out}
EPOCHS=${SWEEP_EPOCHS:-30}
EXPERIMENT=${SWEEP_EXPERIMENT:-cifar10_small_s1}
mkdir -p "$OUT"
candidates=(
  ""                                     # the profile's own recipe, as the baseline
  "--ema-decay 0.999"
  "--cutout 16"
  "--tta-flip true"
  "--auto-augment trivialaugment"
  "--auto-augment autoaugment"
  "--weight-decay 5e-4"
  "--batch-size 1024 --lr-reference-batch 256"
)
for extra in "${candidates[@]}"; do
  # shellcheck disable=SC2086
  $PYTHON -m mnv3.train --experiment "$EXPERIMENT" --profile full --out runs --epochs "$EPOCHS" $extra "$@" || true
done
$PYTHON -m mnv3.runs runs/full | tee "$OUT/sweep.md"
$PYTHON -m mnv3.runs runs/full --json > "$OUT/sweep.json"
