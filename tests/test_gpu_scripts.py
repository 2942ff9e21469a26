"""The GPU scripts, run on the CPU at tiny settings with synthetic data: what they bring back,
and what they refuse, before any of it costs GPU minutes (scripts/gpu_plan.md)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Two steps an epoch; the full profile's own epochs unless a test sets --epochs.
TINY = "--dataset synthetic --max-train-samples 64 --batch-size 32 --lr 0.05 --val-fraction 0.05 --threads 1 --compile false"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(REPO), "OUT": str(tmp_path / "out"), "DEVICE": "cpu",
           "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "TRAIN_ARGS": TINY, "RUNS": str(tmp_path / "runs")}  # fmt: skip
    return {**env, **extra}


def _script(tmp_path: Path, name: str, *args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "scripts" / name), *args], env=_env(tmp_path, **env), capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def _members(tar: Path) -> set[str]:
    with tarfile.open(tar) as archive:
        return {Path(m.name).name for m in archive.getmembers() if m.isfile()}


def test_a_stale_run_is_refused_never_packed(tmp_path):
    # What a smoke run of the same name leaves in a RUNS given again: before, train refused the
    # run, `|| true` hid it, and the old folder was packed as the new result.
    old = tmp_path / "runs" / "full" / "mnist_small"
    old.mkdir(parents=True)
    (old / "config.json").write_text(json.dumps({"device": "cpu", "fields": {"epochs": 1}}))
    (old / "test.json").write_text(json.dumps({"test_accuracy": 0.1135}))
    result = _script(tmp_path, "gpu_full_profile.sh", "mnist_small")
    assert result.returncode == 1, result.stdout + result.stderr  # bit 0: the first experiment did not finish
    assert "mnist_small: refused" in result.stdout and "fresh RUNS" in result.stdout
    assert not (tmp_path / "out" / "mnist_small.tar").exists()
    assert (old / "test.json").read_text() == json.dumps({"test_accuracy": 0.1135})  # left as it was


def test_a_failed_first_experiment_stops_nothing_and_a_cut_run_keeps_its_curves(tmp_path):
    # The first dies before writing metrics.csv; the second is cut by SIGINT at RUN_SECONDS.
    result = _script(tmp_path, "gpu_full_profile.sh", "no_such_experiment", "mnist_small", "--", "--epochs", "500", RUN_SECONDS="12")
    out = tmp_path / "out"
    assert result.returncode == 0b11, result.stdout + result.stderr  # both bits: neither finished
    assert "no_such_experiment: failed (status 2)" in result.stdout and "mnist_small: cut at its time limit" in result.stdout
    assert _members(out / "no_such_experiment.tar") == {"train.log"}
    cut = _members(out / "mnist_small.tar")
    assert {"config.json", "metrics.csv", "train.log"} <= cut and not cut & {"test.json", "final.safetensors"}
    with tarfile.open(out / "mnist_small.tar") as archive:
        log = archive.extractfile("mnist_small/train.log").read().decode()
    assert "interrupted at" in log and "resume with" in log  # train's SIGINT handler saved the state
    assert sorted(p.name for p in out.iterdir()) == ["full_profile.log", "mnist_small.tar", "no_such_experiment.tar"]


def test_a_kill_in_the_middle_leaves_the_finished_tar_and_the_log(tmp_path):
    # As the device machine ends a command at its limit: SIGKILL to everything, while the second runs.
    out = tmp_path / "out"
    process = subprocess.Popen(["bash", str(REPO / "scripts" / "gpu_full_profile.sh"), "mnist_small", "cifar10_small_s1", "--",
                                "--epochs", "6"], env=_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)  # fmt: skip
    log = out / "full_profile.log"
    try:
        deadline = time.monotonic() + 240
        while not ((out / "mnist_small.tar").exists() and log.exists() and "[cifar10_small_s1] " in log.read_text()):
            assert process.poll() is None and time.monotonic() < deadline, "the second experiment never started"
            time.sleep(0.2)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= 8
    assert {"test.json", "final.safetensors", "metrics.csv", "train.log"} <= _members(out / "mnist_small.tar")
    assert "cifar10_small_s1: training into" in log.read_text()


def test_asking_for_cuda_without_one_stops_at_once_in_one_line(tmp_path):
    env = _env(tmp_path)
    result = subprocess.run([sys.executable, "-m", "mnv3.train", "--experiment", "mnist_small", "--device", "cuda",
                             "--out", str(tmp_path / "runs")], env=env, capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: --device cuda: CUDA is not available here") and "--device cpu" in result.stderr
    assert not (tmp_path / "runs").exists()  # refused before anything was written
    script = _script(tmp_path, "gpu_full_profile.sh", "mnist_small", DEVICE="cuda")
    assert script.returncode == 3 and not (tmp_path / "runs").exists()
    assert [line for line in script.stdout.splitlines() if line.startswith("error:")] == [result.stderr.strip()]


@pytest.fixture(scope="module")
def plan_stages(tmp_path_factory):
    """The three stages of scripts/gpu_plan.sh at tiny settings, run side by side (each within its
    limit even so): {stage: (exit status, output, seconds, OUT)}."""
    root = tmp_path_factory.mktemp("plan")
    started, stages = time.monotonic(), {}
    for stage in ("smoke", "bench-sweep", "final"):
        env = {**_env(root), "OUT": str(root / stage), "MNV3_GPU_TINY": "1", "RUNS_ROOT": str(root / "runs"), "TRAIN_ARGS": ""}
        stages[stage] = subprocess.Popen(["bash", str(REPO / "scripts" / "gpu_plan.sh"), stage], env=env, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, text=True)  # fmt: skip
    results = {}
    for stage, process in stages.items():
        output = process.communicate(timeout=450)[0]
        results[stage] = (process.returncode, output, time.monotonic() - started, root / stage)
    return results


@pytest.mark.parametrize("stage, limit", [("smoke", 200), ("bench-sweep", 270), ("final", 420)])
def test_each_plan_stage_runs_end_to_end_within_its_limit(plan_stages, stage, limit):
    status, output, seconds, out = plan_stages[stage]
    assert status == 0, output[-4000:]
    assert seconds < limit and f"== stage {stage}: " in output
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and all(p.is_file() for p in out.iterdir())
    expected = {"smoke": ["cifar10_small_s1.tar", "cuda_test.log", "full_profile.log", "gpu_bench.log", "gpu_training.json"],
                "bench-sweep": ["gpu_bench.log", "gpu_training.json", "sweep.json", "sweep.log", "sweep.md", "sweep.tar"],
                "final": ["cifar10_large_s1.tar", "cifar10_small_s1.tar", "full_profile.log"]}  # fmt: skip
    assert files == expected[stage]
    if "gpu_training.json" in files:  # the tiny bench measured every row within its share of the budget
        assert all(r.get("images_per_s", 0) > 0 for r in json.loads((out / "gpu_training.json").read_text())["results"])


def test_the_sweep_reads_no_test_set_and_tabulates_itself_with_flip_tta_from_the_baseline(plan_stages):
    out = plan_stages["bench-sweep"][3]
    runs = sorted((out.parent / "runs").glob("sweep-*/full"))
    assert len(runs) == 1 and sorted(p.name for p in runs[0].iterdir()) == ["00-baseline", "01-ema-decay-0.999"]
    assert not list(runs[0].rglob("test.json"))
    rows = json.loads((out / "sweep.json").read_text())
    assert [r["name"] for r in rows] == ["00-baseline", "00-baseline + flip TTA", "01-ema-decay-0.999"]
    tta = json.loads((runs[0] / "00-baseline" / "flip_tta.json").read_text())
    assert rows[1]["best_val_acc"] == tta["val_acc_flip"] and rows[0]["best_val_acc"] == tta["val_acc"]  # same weights, both ways
    assert {"00-baseline/metrics.csv", "00-baseline/flip_tta.json", "01-ema-decay-0.999/train.log"} <= {
        "/".join(Path(m).parts[-2:]) for m in tarfile.open(out / "sweep.tar").getnames()}  # fmt: skip
