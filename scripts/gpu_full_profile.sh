#!/usr/bin/env bash
# The full profile on one GPU, each experiment packed for the trip home as soon as it ends.
#
#   bash scripts/gpu_full_profile.sh [EXPERIMENT ...] [-- extra train flags]
#   PARALLEL=2 bash scripts/gpu_full_profile.sh cifar10_small_s1 cifar10_large_s1 -- --ema-decay 0.999
#
# Every call trains into a folder of its own, $RUNS (default runs/gpu-<UTC time>), so a run an
# earlier call left (a smoke run of the same experiment, say) is never packed as this call's
# result; where RUNS is given and already holds an experiment's folder, that experiment is
# refused and reported, and nothing of the old folder is packed. One experiment that fails does
# not stop the others. PARALLEL (default 1) runs that many at once on the one GPU. Each run is
# cut by SIGINT (`timeout -s INT`) after RUN_SECONDS, or when the budget (BUDGET_SECONDS, see
# scripts/gpu_lib.sh) would otherwise run out: train saves its state, and the curves of a cut
# run are packed (publish --unfinished).
#
# Into $OUT, as each run ends (at most 6 experiments a call, so never more than 8 files):
#   <experiment>.tar    config.json, metrics.csv, train.log; for a finished run also test.json,
#                       final.safetensors and final.json; for a run that died before its first
#                       epoch ended, what there is (its train.log at least)
#   full_profile.log    everything printed, as it is printed (lines of parallel runs prefixed)
# Exit status: 0 when every experiment finished; else bit i (1, 2, 4, ...) is set for the i-th
# experiment named that did not (failed, cut, refused or skipped); 3 when DEVICE=cuda finds no GPU.
# Expects the data mirror at $MNV3_DATA_MIRROR (default .mirror/, made by `make gpu-mirror`).
set -uo pipefail
source "$(dirname "$0")/gpu_lib.sh"
export MNV3_DATA_MIRROR=${MNV3_DATA_MIRROR:-.mirror}
RUNS=${RUNS:-runs/gpu-$(stamp)}
PARALLEL=${PARALLEL:-1}
RUN_SECONDS=${RUN_SECONDS:-0}           # each run's own limit (0: what the budget leaves)
RESERVE_SECONDS=${RESERVE_SECONDS:-20}  # kept back after each run for publishing and packing it
experiments=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do experiments+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
extra=("$@")
[ ${#experiments[@]} -gt 0 ] || experiments=(mnist_small cifar10_small_s2 cifar10_small_s1 cifar10_large_s1)
if [ ${#experiments[@]} -gt 6 ]; then
  echo "error: at most 6 experiments a call (\$OUT may hold 8 files: their tars, the log and one being written); got ${#experiments[@]}" >&2
  exit 2
fi
log_to full_profile.log
echo "full profile: ${experiments[*]} into $RUNS, $PARALLEL at a time, budget ${BUDGET_SECONDS}s, flags: ${train_args[*]} ${extra[*]}"
[ "${PREFLIGHT_DONE:-0}" = 1 ] || preflight
mkdir -p "$RUNS/full" "$RUNS/status"

# report I STATE: print how the I-th experiment ended and keep it for the summary.
report() {
  echo "== ${experiments[$1]}: $2"
  echo "$2" >"$RUNS/status/$1"
}

# run_experiment I: train, publish and pack the I-th experiment.
run_experiment() {
  local i=$1 exp=${experiments[$1]} limit start rc state
  local run_dir="$RUNS/full/$exp" log="$RUNS/full/$exp.log" publish="$RUNS/publish/$exp"
  if [ -e "$run_dir" ]; then
    report "$i" "refused: $run_dir already exists (an earlier run); nothing of it packed. Give a fresh RUNS."
    return
  fi
  limit=$(( $(seconds_left) - RESERVE_SECONDS ))
  (( RUN_SECONDS > 0 && RUN_SECONDS < limit )) && limit=$RUN_SECONDS
  if (( limit < 10 )); then
    report "$i" "skipped: the budget of ${BUDGET_SECONDS}s is spent"
    return
  fi
  echo "== $exp: training into $run_dir, cut after $limit s"
  start=$(date +%s)
  # --name keeps the folder the experiment's own even when extra flags override fields.
  bounded "$limit" "$PYTHON" -m mnv3.train --experiment "$exp" --name "$exp" --profile full --out "$RUNS" --device "$DEVICE" \
    "${train_args[@]}" "${extra[@]}" 2>&1 | tee "$log" | sed -u "s/^/[$exp] /"
  rc=${PIPESTATUS[0]}
  state=$(run_state "$rc" "$run_dir")
  [ -d "$run_dir" ] && mv "$log" "$run_dir/train.log"
  rm -rf "$publish"
  if ! { [ -f "$run_dir/metrics.csv" ] && "$PYTHON" -m mnv3.publish --unfinished "$run_dir" "$RUNS/publish" >/dev/null; }; then
    # Died before its first epoch ended (no curves to publish): bring back what there is.
    mkdir -p "$publish"
    [ -f "$run_dir/config.json" ] && cp "$run_dir/config.json" "$publish/"
    cp "$run_dir/train.log" "$publish/train.log" 2>/dev/null || cp "$log" "$publish/train.log"
  fi
  pack "$publish" "$exp" || state="$state; packing failed"
  report "$i" "$state after $(( $(date +%s) - start )) s (data, compilation and test included) -> $OUT/$exp.tar"
}

in_parallel "$PARALLEL" run_experiment true "${!experiments[@]}"
status=0
echo "== summary (exit status: bit i set for the i-th experiment that did not finish)"
for i in "${!experiments[@]}"; do
  state=$(cat "$RUNS/status/$i" 2>/dev/null || echo "no result (the job ended without one)")
  [[ $state == finished* ]] || status=$(( status | (1 << i) ))
  echo "  ${experiments[$i]}: $state"
done
echo "== exit status $status; $OUT holds $(out_files) file(s)"
exit "$status"
