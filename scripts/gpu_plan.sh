#!/usr/bin/env bash
# The three GPU commands of scripts/gpu_plan.md, one device call each, in this order:
#
#   bash scripts/gpu_plan.sh smoke         # 185 s (cap 200): 2 epochs of cifar10_small_s1, the CUDA sync tests, the tiny bench
#   bash scripts/gpu_plan.sh bench-sweep   # 200 s (cap 270): the bench, then a short recipe sweep
#   FINAL_ARGS="--ema-decay 0.999" bash scripts/gpu_plan.sh final   # 355 s (cap 420): the final runs, winning recipe
#
# Each stage keeps inside its own budget (STAGE_SECONDS: 185, 200 and 355 s by default, 740 s in
# all, so that a 1-2 minute machine start and the gaps between calls fit the session's 15 minutes)
# and says on its last line how long it took and which files $OUT holds (at most 7; 8 come back).
# Knobs, set from what the smoke measured (scripts/gpu_plan.md says how):
#   bench-sweep  BENCH_SECONDS (90: no bench row starts later), SWEEP_EPOCHS (10), SWEEP_PARALLEL (7),
#                SWEEP_CANDIDATES (all seven: "0 1 2 3 4 5 6")
#   final        FINAL_EXPERIMENTS ("cifar10_small_s1 cifar10_large_s1"), FINAL_PARALLEL (2), FINAL_ARGS
# MNV3_GPU_TINY=1 runs any stage on the CPU at tiny settings with synthetic data (what
# tests/test_gpu_scripts.py does): the same scripts, steps and files, in seconds. The runs go to
# RUNS_ROOT (default runs/): smoke-<UTC time>/, sweep-<UTC time>/, final-<UTC time>/.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
stage=${1:-}
case $stage in
  smoke | bench-sweep | final) ;;
  *) echo "usage: bash scripts/gpu_plan.sh smoke|bench-sweep|final (scripts/gpu_plan.md says what each does)" >&2; exit 2 ;;
esac
export PYTHON=${PYTHON:-python3} OUT=${OUT:-gpu-out} PYTHONUNBUFFERED=1
export MNV3_DATA_MIRROR=${MNV3_DATA_MIRROR:-.mirror}
RUNS_ROOT=${RUNS_ROOT:-runs}
export MNV3_PROGRESS_SECONDS=${MNV3_PROGRESS_SECONDS:-10}  # img/s inside an epoch too, in case a run is cut
started=$(date +%s)
left() { echo $(( STAGE_SECONDS - ($(date +%s) - started) )); }
results=()  # each step's exit status, for the last line
note() { results+=("$1=$2"); (( $2 == 0 )) || status=1; }
status=0

if [ "${MNV3_GPU_TINY:-0}" = 1 ]; then
  export DEVICE=cpu OMP_NUM_THREADS=1
  export TRAIN_ARGS="--dataset synthetic --max-train-samples 64 --batch-size 32 --val-fraction 0.05 --epochs 1 --threads 1 --compile false ${TRAIN_ARGS:-}"
  bench_args=(--steps 1 --warmup 1)
  bench_plan=tiny
  sweep_args=(SWEEP_CANDIDATES="0 1" SWEEP_EPOCHS=1 SWEEP_PARALLEL=2)
else
  export DEVICE=${DEVICE:-cuda}
  bench_args=()
  bench_plan=full
  # The sweep trains eager: seven compiles would cost more than its epochs (70-80 s each, first H200 runs).
  sweep_args=(SWEEP_CANDIDATES="${SWEEP_CANDIDATES:-0 1 2 3 4 5 6}" SWEEP_EPOCHS="${SWEEP_EPOCHS:-10}" SWEEP_PARALLEL="${SWEEP_PARALLEL:-7}"
              TRAIN_ARGS="--compile false ${TRAIN_ARGS:-}")
fi

# The versions and the device, once for the whole stage; DEVICE=cuda without a GPU stops here (status 3).
source scripts/gpu_lib.sh
preflight
export PREFLIGHT_DONE=1
# Decode the datasets once, before several processes would each do it (about 26 s for CIFAR-10 on
# the busy 2-core development machine; from the cache afterwards in well under a second).
decode() {
  [ "${MNV3_GPU_TINY:-0}" = 1 ] || "$PYTHON" -m mnv3.data "$@" --data-mirror "$MNV3_DATA_MIRROR" >/dev/null
}

case $stage in
  smoke)
    STAGE_SECONDS=${STAGE_SECONDS:-185}
    # 1. Two epochs of Small s1 as the full profile trains it: the compile time (epoch 1) and the
    #    steady step time (epoch 2, and the progress lines). A scratch folder of its own.
    RESERVE_SECONDS=10 BUDGET_SECONDS=$(( $(left) - 45 )) RUNS=$RUNS_ROOT/smoke-$(stamp) \
      bash scripts/gpu_full_profile.sh cifar10_small_s1 -- --epochs 2
    note train $?
    # 2. The sync tests: the loop's step never waits for the host (eager NCHW, channels_last, and
    #    compiled, which finds the graph training just compiled in inductor's cache).
    if (( $(left) > 25 )); then
      bounded "$(( $(left) - 17 ))" "$PYTHON" -m pytest tests/test_step.py -q -k never_wait --durations=0 -p no:cacheprovider 2>&1 \
        | tee "$OUT/cuda_test.log"
      note tests $?
    fi
    # 3. The tiny bench: the bench's own code path on this stack.
    if (( $(left) > 8 )); then
      PLAN=tiny BUDGET_SECONDS=$(( $(left) - 2 )) bash scripts/gpu_bench.sh "${bench_args[@]}"
      note bench $?
    fi
    ;;
  bench-sweep)
    STAGE_SECONDS=${STAGE_SECONDS:-200}
    decode cifar10
    # The target rows first (compiled and graphed Small s1), then what decides a default.
    PLAN=$bench_plan BUDGET_SECONDS=$(( ${BENCH_SECONDS:-90} + 20 )) BENCH_SECONDS=${BENCH_SECONDS:-90} \
      bash scripts/gpu_bench.sh "${bench_args[@]}"
    note bench $?
    env "${sweep_args[@]}" BUDGET_SECONDS=$(( $(left) - 2 )) SWEEP_RUNS=$RUNS_ROOT/sweep-$(stamp) bash scripts/gpu_sweep.sh
    note sweep $?
    ;;
  final)
    STAGE_SECONDS=${STAGE_SECONDS:-355}
    decode cifar10 mnist
    read -r -a final_args <<<"${FINAL_ARGS:-}"
    read -r -a final_experiments <<<"${FINAL_EXPERIMENTS:-cifar10_small_s1 cifar10_large_s1}"
    PARALLEL=${FINAL_PARALLEL:-2} RESERVE_SECONDS=15 BUDGET_SECONDS=$(( $(left) - 2 )) RUNS=$RUNS_ROOT/final-$(stamp) \
      bash scripts/gpu_full_profile.sh "${final_experiments[@]}" -- "${final_args[@]}"
    note final $?
    ;;
esac
echo "== stage $stage: $(( $(date +%s) - started )) s of its ${STAGE_SECONDS} s; exit status ${results[*]}; $OUT holds $(out_files) file(s): $(ls "$OUT" | tr '\n' ' ')"
exit "$status"
