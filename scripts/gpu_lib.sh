# Shared by the GPU scripts (sourced, not run): the device check, the time budget, runs cut by
# SIGINT, and results packed into $OUT as they finish. $OUT is what the device machine sends back:
# at most 8 files, 16 MiB each, no more than 2 folders deep, so each script writes a few files
# there and says how many (scripts/gpu_plan.md).
#
# Environment, all optional:
#   OUT             the folder that comes back (default gpu-out)
#   DEVICE          cuda (default: the current GPU, checked once up front; no GPU stops the script at
#                   once with status 3) or cpu (the tiny CPU runs of tests/test_gpu_scripts.py)
#   PYTHON          the interpreter (default python3)
#   BUDGET_SECONDS  the script's wall-clock budget: every run is cut with SIGINT in time to end
#                   within it (default 540: the device machine kills a command at 600 s; 0 = none)
#   GRACE_SECONDS   how long a cut run has to save its state before it is killed (default 30)
#   TRAIN_ARGS      extra flags for every training (before the script's own), e.g. tiny CPU settings:
#                   TRAIN_ARGS="--dataset synthetic --max-train-samples 256 --batch-size 32 --threads 1"

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
PYTHON=${PYTHON:-python3}
OUT=${OUT:-gpu-out}
DEVICE=${DEVICE:-cuda}
BUDGET_SECONDS=${BUDGET_SECONDS:-540}
GRACE_SECONDS=${GRACE_SECONDS:-30}
read -r -a train_args <<<"${TRAIN_ARGS:-}"
export PYTHONUNBUFFERED=1
SCRIPT_START=$(date +%s)
mkdir -p "$OUT"

stamp() { date -u +%Y%m%d-%H%M%S; }

# log_to NAME: from here on everything printed also goes to $OUT/NAME, line by line, so a command
# killed at its limit still brings back what it printed.
log_to() {
  exec > >(tee -a "$OUT/$1") 2>&1
  LOG_PID=$!
  trap 'exec >&- 2>&-; wait "$LOG_PID" 2>/dev/null' EXIT
}

# seconds_left: what the budget leaves (a large number without one).
seconds_left() {
  if (( BUDGET_SECONDS > 0 )); then echo $(( BUDGET_SECONDS - ($(date +%s) - SCRIPT_START) )); else echo 999999; fi
}

# preflight: the versions and the device; DEVICE=cuda without a usable GPU ends the script at once
# (status 3, one line) rather than letting every run fail, or worse, train on the CPU.
preflight() {
  "$PYTHON" - "$DEVICE" <<'PY' || exit 3
import sys

import torch

from mnv3.step import resolve_device

try:
    device = resolve_device(sys.argv[1])
except ValueError as err:
    print(f"error: {err}", file=sys.stderr)
    raise SystemExit(3)
name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
print(f"torch {torch.__version__}, device {device} ({name}), {torch.get_num_threads()} CPU threads")
PY
}

# bounded SECONDS CMD...: CMD, sent SIGINT after SECONDS (train saves its state and stops) and
# killed GRACE_SECONDS later. Its status: CMD's own, 124 when it was cut, 137 when killed.
bounded() {
  timeout -s INT -k "$GRACE_SECONDS" "$1" "${@:2}"
}

# pack DIR NAME [TAR OPTIONS]: DIR as $OUT/NAME.tar, whole or not at all (NAME.tar.part until it is
# complete). A file that a run still training replaces meanwhile (tar's status 1) is no failure.
pack() {
  tar -C "$(dirname "$1")" -cf "$OUT/$2.tar.part" --warning=no-file-changed --ignore-failed-read "${@:3}" "$(basename "$1")"
  if (( $? <= 1 )); then mv -f "$OUT/$2.tar.part" "$OUT/$2.tar"; else rm -f "$OUT/$2.tar.part"; return 1; fi
}

# run_state RC DIR: how a training ended, in words: finished, cut, failed.
run_state() {
  case $1 in
    0) if [ -f "$2/test.json" ] || grep -q -- '--skip-test' "$2/config.json" 2>/dev/null; then echo finished; else echo "ended without a result"; fi ;;
    124 | 137) echo "cut at its time limit" ;;
    *) echo "failed (status $1)" ;;
  esac
}

# in_parallel N JOB AFTER ITEM...: run `JOB ITEM` for every ITEM, at most N at a time (N processes
# sharing the one GPU: worth it while a step waits for the host), and `AFTER` in this shell each
# time one ends. JOB reports its own result (in a file: it runs in a subshell).
in_parallel() {
  local n=$1 job=$2 after=$3 running=0 item
  shift 3
  for item in "$@"; do
    while (( running >= n )); do wait -n; running=$(( running - 1 )); "$after"; done
    "$job" "$item" &
    running=$(( running + 1 ))
  done
  while (( running > 0 )); do wait -n; running=$(( running - 1 )); "$after"; done
}

# out_files: how many files $OUT holds (the device machine brings back at most 8).
out_files() {
  find "$OUT" -type f | wc -l
}
