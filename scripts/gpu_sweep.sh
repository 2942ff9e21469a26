#!/usr/bin/env bash
# The recipe search for the full profile, chosen on the validation split alone: every candidate
# trains with --skip-test, so the test set is never read here (the final runs read it once).
# Each candidate is one change against the profile's own cifar10_small_s1 recipe, trained for
# SWEEP_EPOCHS. Flip TTA changes evaluation only: it is measured on the baseline's best
# checkpoint, both ways (python -m mnv3.evaluate flip-tta), not trained as a candidate.
#
#   bash scripts/gpu_sweep.sh                            # all candidates, one after another
#   SWEEP_PARALLEL=3 SWEEP_EPOCHS=8 bash scripts/gpu_sweep.sh   # three at a time on the one GPU
#   SWEEP_CANDIDATES="0 1 2" bash scripts/gpu_sweep.sh   # some of them, by index (0 = the baseline)
#   bash scripts/gpu_sweep.sh --compile false            # arguments: flags for every candidate's training
#
# The candidates train into a folder of their own, $SWEEP_RUNS (default runs/sweep-<UTC time>),
# so `python -m mnv3.runs $SWEEP_RUNS/full` tabulates this sweep and nothing else. Each is cut by
# SIGINT after CANDIDATE_SECONDS or when the budget (BUDGET_SECONDS, scripts/gpu_lib.sh) would
# run out; a cut candidate keeps its curves and shows in the table as unfinished.
# Into $OUT, rewritten after every candidate (5 files, 7 while a tar or table is being replaced):
#   sweep.md, sweep.json   the ablation table and its rows (validation accuracy, epochs, seconds)
#   sweep.tar              each candidate's config.json, metrics.csv, train.log (and flip_tta.json)
#   sweep.log              everything printed
# Exit status: 0 when every candidate finished; else bit i is set for candidate i that did not;
# 3 when DEVICE=cuda finds no GPU. Expects the mirror at $MNV3_DATA_MIRROR (default .mirror/).
set -uo pipefail
source "$(dirname "$0")/gpu_lib.sh"
export MNV3_DATA_MIRROR=${MNV3_DATA_MIRROR:-.mirror}
SWEEP_RUNS=${SWEEP_RUNS:-runs/sweep-$(stamp)}
EPOCHS=${SWEEP_EPOCHS:-30}
EXPERIMENT=${SWEEP_EXPERIMENT:-cifar10_small_s1}
PARALLEL=${SWEEP_PARALLEL:-1}
CANDIDATE_SECONDS=${CANDIDATE_SECONDS:-0}  # each candidate's own limit (0: what the budget leaves)
RESERVE_SECONDS=${RESERVE_SECONDS:-15}      # kept back at the end for the TTA evaluation and the table
candidates=(
  ""                                             # 0: the profile's own recipe, the baseline
  "--ema-decay 0.999"                            # 1
  "--cutout 16"                                  # 2
  "--auto-augment trivialaugment"                # 3: host waits, see the table's note (a)
  "--auto-augment autoaugment"                   # 4
  "--weight-decay 5e-4"                          # 5
  "--batch-size 1024 --lr-reference-batch 256"   # 6: peak lr 0.8 (square-root rule), 172 warm-up steps
)
read -r -a selected <<<"${SWEEP_CANDIDATES:-${!candidates[*]}}"
extra=("$@")
if [ -e "$SWEEP_RUNS" ]; then
  echo "error: $SWEEP_RUNS already exists (an earlier sweep); give a fresh SWEEP_RUNS so the table holds this sweep alone" >&2
  exit 2
fi
mkdir -p "$SWEEP_RUNS/full" "$SWEEP_RUNS/status"
log_to sweep.log
echo "sweep: candidates ${selected[*]} of $EXPERIMENT, $EPOCHS epochs, $PARALLEL at a time, into $SWEEP_RUNS, budget ${BUDGET_SECONDS}s"
[ "${PREFLIGHT_DONE:-0}" = 1 ] || preflight

name_of() {  # the run folder's name: index and change, e.g. 01-ema-decay-0.999
  local change=${candidates[$1]//--/}
  change=${change// /-}
  printf '%02d-%s' "$1" "${change:-baseline}"
}

# run_candidate I: train candidate I (in the background when SWEEP_PARALLEL > 1), cut when its time
# is up; its status goes to $SWEEP_RUNS/status/I. The baseline's best checkpoint is then
# evaluated with and without flip TTA.
run_candidate() {
  local i=$1 name limit rc left
  name=$(name_of "$i")
  limit=$(( $(seconds_left) - RESERVE_SECONDS ))
  (( CANDIDATE_SECONDS > 0 && CANDIDATE_SECONDS < limit )) && limit=$CANDIDATE_SECONDS
  if (( limit < 10 )); then
    echo "== $name: skipped, the budget is spent"
    echo skipped >"$SWEEP_RUNS/status/$i"
    return
  fi
  echo "== $name: training, cut after $limit s"
  # shellcheck disable=SC2086
  bounded "$limit" "$PYTHON" -m mnv3.train --experiment "$EXPERIMENT" --profile full --out "$SWEEP_RUNS" --name "$name" \
    --device "$DEVICE" --skip-test "${train_args[@]}" "${extra[@]}" --epochs "$EPOCHS" ${candidates[$i]} 2>&1 \
    | tee "$SWEEP_RUNS/$name.log" | sed -u "s/^/[$name] /"
  rc=${PIPESTATUS[0]}
  [ -d "$SWEEP_RUNS/full/$name" ] && mv "$SWEEP_RUNS/$name.log" "$SWEEP_RUNS/full/$name/train.log"
  left=$(seconds_left)
  if [ "$i" = 0 ] && [ -f "$SWEEP_RUNS/full/$name/best.pt" ] && (( left > 5 )); then
    bounded "$(( left > 60 ? 60 : left ))" "$PYTHON" -m mnv3.evaluate flip-tta "$SWEEP_RUNS/full/$name" \
      --device "$DEVICE" "${DATA_ARGS[@]}" 2>&1 | sed -u "s/^/[$name] /"
  fi
  echo "$rc" >"$SWEEP_RUNS/status/$i"
}

# The dataset flags among the training flags that the TTA evaluation needs too (--data-root, --data-mirror).
DATA_ARGS=()
flags=("${train_args[@]}" "${extra[@]}")
for j in "${!flags[@]}"; do
  case ${flags[$j]} in --data-root | --data-mirror) DATA_ARGS+=("${flags[$j]}" "${flags[$((j + 1))]}") ;; esac
done

# table: rewrite the ablation table and the curves in $OUT (each file whole or not at all).
table() {
  if compgen -G "$SWEEP_RUNS/full/*/config.json" >/dev/null; then
    "$PYTHON" -m mnv3.runs "$SWEEP_RUNS/full" --save "$OUT/sweep" >/dev/null
    pack "$SWEEP_RUNS/full" sweep --exclude='*.pt' --exclude='.lock' --exclude='.*.tmp*'
  fi
}

in_parallel "$PARALLEL" run_candidate table "${selected[@]}"
status=0
for i in "${selected[@]}"; do
  rc=$(cat "$SWEEP_RUNS/status/$i" 2>/dev/null || echo missing)
  [ "$rc" = 0 ] || status=$(( status | (1 << i) ))
  echo "  $(name_of "$i"): $([ "$rc" = skipped ] && echo skipped || run_state "$rc" "$SWEEP_RUNS/full/$(name_of "$i")")"
done
[ -f "$OUT/sweep.md" ] && cat "$OUT/sweep.md"
echo "== exit status $status (bit i: candidate i did not finish); $OUT holds $(out_files) file(s)"
exit "$status"
