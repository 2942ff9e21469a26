#!/usr/bin/env bash
# The full profile on one GPU, back to back, then the committable artefacts packed for the trip home.
#
#   bash scripts/gpu_full_profile.sh [EXPERIMENT ...] [-- extra train flags]
#
# Expects the data mirror at $MNV3_DATA_MIRROR (default .mirror/, a copy of ../shared/datasets made
# by `make gpu-mirror`, which is git-ignored and carried to the device machine). Writes runs/full/
# and, for each experiment, $OUT/<experiment>.tar (config.json, metrics.csv, test.json, train.log,
# final.safetensors and final.json; a run stopped early has no weights and no test.json).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export MNV3_DATA_MIRROR=${MNV3_DATA_MIRROR:-.mirror}
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
experiments=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do experiments+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
[ ${#experiments[@]} -gt 0 ] || experiments=(mnist_small cifar10_small_s2 cifar10_small_s1 cifar10_large_s1)
export PYTHONUNBUFFERED=1
$PYTHON - <<'PY'
import torch, torchvision
print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, cuda {torch.cuda.is_available()}",
      torch.cuda.get_device_name() if torch.cuda.is_available() else "")
PY
mkdir -p runs/full
for exp in "${experiments[@]}"; do
  start=$(date +%s)
  # --name keeps the folder the experiment's own even when extra flags override fields.
  $PYTHON -m mnv3.train --experiment "$exp" --name "$exp" --profile full --out runs "$@" 2>&1 | tee "runs/full/$exp.log" || true
  echo "$exp: $(( $(date +%s) - start )) s wall-clock including data loading and compilation"
  mkdir -p "runs/full/$exp" && mv "runs/full/$exp.log" "runs/full/$exp/train.log"
  $PYTHON -m mnv3.publish --unfinished "runs/full/$exp" "$OUT/publish"
  tar -C "$OUT/publish" -cf "$OUT/$exp.tar" "$exp"
done
rm -rf "$OUT/publish"
ls -la "$OUT"
