#!/usr/bin/env bash
# `make search PROFILE=full` on a GPU machine that has no .venv and no make setup: the seed
# (cifar10_small_s1, the full profile) and the comparison runs train on the GPU; the latency model,
# the search's proxy fine-tuning and every latency run on the CPU (the paper's protocol: latency is
# the CPU's). Packs reports/search/ as make search publishes it into $OUT/search.tar, with the log
# $OUT/search.log, after each stage, so a command stopped at its time limit still brings back what
# finished. Not run on a GPU yet; ran end to end on the 2-core CPU with the tiny settings below.
#
#   bash scripts/gpu_search.sh            # OUT=gpu-out by default; the mirror in .mirror/ (make gpu-mirror)
#
# Environment: PYTHON (python3), OUT, MNV3_DATA_MIRROR (.mirror), SEARCH_ARGS (--target 75%),
# COMPARE_ARGS (--seeds 0,1), LATENCY_ARGS (none), DEVICE (cuda: refuse to start without it), SEED_ARGS
# (extra train flags). On a CPU at tiny settings: DEVICE=cpu SEED_ARGS="--dataset synthetic --arch
# tests/data/tiny_spec.json --epochs 1 --max-train-samples 256 --batch-size 64 --threads 1" LATENCY_ARGS="--fit 4
# --held-out 2 --budget 1 --cuts 0.5" SEARCH_ARGS="--target 85% --delta 8% --finetune-steps 2 --bn-batches 2
# --batch-size 32 --val-images 64 --fit-specs 3" COMPARE_ARGS="--seeds 0,1 --epochs 1 --grid 0.25,0.5,0.75,1".
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-gpu-out}
DEVICE=${DEVICE:-cuda}
export MNV3_DATA_MIRROR=${MNV3_DATA_MIRROR:-.mirror}
export PYTHONUNBUFFERED=1
SEARCH_DIR=runs/search
SEED=$SEARCH_DIR/full/cifar10_small_s1
NETADAPT=$SEARCH_DIR/netadapt-full
mkdir -p "$OUT"
LOG=$OUT/search.log
: >"$LOG"

say() { echo "[gpu_search] $*" | tee -a "$LOG"; }
pack() {
  $PYTHON -m mnv3.search publish "$NETADAPT" --seed-run "$SEED" --to "$OUT/search" >>"$LOG" 2>&1 \
    && tar -C "$OUT" -cf "$OUT/search.tar" search && rm -rf "$OUT/search" && say "packed $OUT/search.tar after $1"
}
if [ "$DEVICE" = cuda ] && ! $PYTHON -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  say "no CUDA device here: this script trains on a GPU (DEVICE=cpu to run it anyway)"; exit 2
fi
if [ -e "$SEED/config.json" ] && [ ! -e "$SEED/test.json" ] && [ ! -e "$SEED/last.pt" ]; then
  say "$SEED holds a run that never finished an epoch; delete it first"; exit 2
fi
resume=""; [ -e "$SEED/last.pt" ] && [ ! -e "$SEED/test.json" ] && resume=--resume
if [ ! -e "$SEED/test.json" ]; then
  say "seed: cifar10_small_s1, full profile, on $DEVICE"
  $PYTHON -m mnv3.train --experiment cifar10_small_s1 --profile full --out "$SEARCH_DIR" --name cifar10_small_s1 \
    --device "$DEVICE" ${SEED_ARGS:-} $resume 2>&1 | tee -a "$LOG" || { say "the seed failed"; exit 1; }
fi
say "latency model (CPU)"
# shellcheck disable=SC2086
$PYTHON -m mnv3.search latency "$SEED" --out "$NETADAPT" ${LATENCY_ARGS:-} 2>&1 | tee -a "$LOG" || { say "latency failed"; exit 1; }
pack "the latency model"
say "search (CPU)"
# shellcheck disable=SC2086
$PYTHON -m mnv3.search run "$SEED" --out "$NETADAPT" ${SEARCH_ARGS:---target 75%} --threads "$(nproc)" 2>&1 | tee -a "$LOG" \
  || { pack "a failed search"; exit 1; }
pack "the search"
say "comparison: training on $DEVICE"
# shellcheck disable=SC2086
$PYTHON -m mnv3.search compare "$NETADAPT" --seed-run "$SEED" ${COMPARE_ARGS:---seeds 0,1} 2>&1 | tee -a "$LOG" \
  || { pack "a failed comparison"; exit 1; }
pack "the comparison"
