"""The training engine on synthetic data: learning, determinism, resume, faults and DDP."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from mnv3 import runs
from mnv3 import step as step_module
from mnv3.checkpoint import load_checkpoint
from mnv3.train import main

FAST = ["--dataset", "synthetic", "--max-train-samples", "384", "--batch-size", "64", "--epochs", "2", "--val-fraction", "0.1"]
TIMING = {"epoch_seconds", "images_per_sec"}


def run(tmp: Path, *extra: str) -> Path:
    return main(["--experiment", "mnist_small", "--name", "mnist_small", "--out", str(tmp), "--data-root", str(tmp / "data"), *FAST, *extra])


def metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def same_weights(a: Path, b: Path) -> None:
    wa, wb = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """One uninterrupted run that the determinism and resume tests compare against."""
    return run(tmp_path_factory.mktemp("reference"))


def test_run_folder_and_loss_falls(reference):
    assert {"config.json", "metrics.csv", "last.pt", "best.pt", "test.json"} <= {p.name for p in reference.iterdir()}
    rows = metrics(reference)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert set(rows[0]) == set(runs.METRIC_FIELDS)
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert float(rows[-1]["train_loss"]) < 2.3  # below chance (ln 10) on 10 classes
    config = __import__("json").loads((reference / "config.json").read_text())
    for key in ("seed", "versions", "git_commit", "device", "fields", "model", "dataset", "image_size"):
        assert key in config, key
    assert config["fields"]["epochs"] == 2 and config["versions"]["torch"] == torch.__version__


def test_same_seed_same_metrics_and_weights(reference, tmp_path):
    again = run(tmp_path)
    for a, b in zip(metrics(reference), metrics(again)):
        assert {k: v for k, v in a.items() if k not in TIMING} == {k: v for k, v in b.items() if k not in TIMING}
    same_weights(reference / "last.pt", again / "last.pt")


def test_other_seed_differs(reference, tmp_path):
    other = run(tmp_path, "--seed", "1")
    assert metrics(other)[0]["train_loss"] != metrics(reference)[0]["train_loss"]


@pytest.mark.parametrize("stop_at_step", [3, 6])  # mid-epoch 1, and its last step (384 / 64 = 6 steps an epoch)
def test_ctrl_c_then_resume_equals_uninterrupted(reference, tmp_path, monkeypatch, capsys, stop_at_step, interrupt_training_after):
    interrupt_training_after(stop_at_step)
    with pytest.raises(SystemExit) as stopped:
        run(tmp_path)
    assert stopped.value.code == 130
    out = capsys.readouterr().out
    assert "resume with: python -m mnv3.train" in out and "--resume" in out
    partial = load_checkpoint(tmp_path / "quick" / "mnist_small" / "last.pt")
    assert (partial["epoch"], partial["step_in_epoch"]) == divmod(stop_at_step, 6)
    monkeypatch.undo()
    resumed = run(tmp_path, "--resume")
    same_weights(reference / "last.pt", resumed / "last.pt")
    same_weights(reference / "best.pt", resumed / "best.pt")
    for a, b in zip(metrics(reference), metrics(resumed), strict=True):
        assert {k: v for k, v in a.items() if k not in TIMING} == {k: v for k, v in b.items() if k not in TIMING}


def test_nan_guard_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    calls = {"n": 0}
    original = step_module.compute_loss

    def nan_in_epoch_two(*args, **kwargs):
        calls["n"] += 1
        loss = original(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 8 else loss

    monkeypatch.setattr(step_module, "compute_loss", nan_in_epoch_two)
    with pytest.raises(SystemExit) as stopped:
        run(tmp_path)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "non-finite at epoch 2, step 2" in err
    last = load_checkpoint(tmp_path / "quick" / "mnist_small" / "last.pt")
    assert last["epoch"] == 1 and last["step_in_epoch"] == 0
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())


def test_truncated_and_foreign_checkpoints_give_clear_errors(reference, tmp_path, capsys):
    run_dir = tmp_path / "quick" / "mnist_small"
    run_dir.mkdir(parents=True)
    data = (reference / "last.pt").read_bytes()
    (run_dir / "last.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(SystemExit) as stopped:
        run(tmp_path, "--resume")
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "last.pt: not a readable checkpoint" in err and "Traceback" not in err
    torch.save({"state_dict": {}}, run_dir / "last.pt")
    with pytest.raises(SystemExit):
        run(tmp_path, "--resume")
    assert "not an mnv3 checkpoint" in capsys.readouterr().err


def test_unknown_experiment_and_field_list_the_valid_ones(capsys):
    with pytest.raises(SystemExit):
        main(["--experiment", "mnist_large"])
    err = capsys.readouterr().err
    assert "unknown experiment 'mnist_large'" in err and "cifar10_small_s1" in err
    with pytest.raises(SystemExit):
        main(["--experiment", "mnist_small", "--epochz", "3"])
    err = capsys.readouterr().err
    assert "--epochz" in err and "--epochs" in err and "--batch-size" in err


def test_help_lists_experiments_and_fields():
    out = subprocess.run([sys.executable, "-m", "mnv3.train", "--help"], capture_output=True, text=True, check=True).stdout
    for word in ("mnist_small", "cifar10_small_s2", "cifar10_small_s1", "cifar10_large_s1", "--epochs", "--lr", "torchrun", "--print-config"):
        assert word in out
    assert "--lr 0.05 --print-config" in out.split("examples:", 1)[1]  # the epilog shows it


def test_print_config_prints_the_resolved_experiment_and_writes_nothing(reference, tmp_path, capsys):
    # The profile's values with an override, resolved: full's epochs and batch, our lr; no run folder, no data.
    out = tmp_path / "runs"
    assert main(["--experiment", "mnist_small", "--profile", "full", "--lr", "0.05", "--out", str(out),
                 "--data-root", str(tmp_path / "data"), "--print-config"]) is None
    printed = __import__("json").loads(capsys.readouterr().out)
    assert printed["fields"]["lr"] == 0.05 and printed["overrides"] == {"lr": 0.05}
    assert printed["fields"]["epochs"] == 20 and printed["fields"]["batch_size"] == 256 and printed["fields"]["compile"] is True
    assert printed["name"] == "mnist_small-lr0.05" and printed["profile"] == "full" and printed["seed"] == 0
    assert not out.exists() and not (tmp_path / "data").exists()
    # the form config.json records: the reference run's arguments print exactly its config.json's values
    main(["--experiment", "mnist_small", "--name", "mnist_small", "--out", str(out), *FAST, "--print-config"])
    printed = __import__("json").loads(capsys.readouterr().out)
    config = __import__("json").loads((reference / "config.json").read_text())
    assert printed == {key: config[key] for key in printed} and set(printed) >= {"fields", "overrides", "name", "experiment"}
    assert not out.exists()
    with pytest.raises(SystemExit) as exit_info:  # a bad --name is one line, as in training
        main(["--experiment", "mnist_small", "--name", "a/b", "--print-config"])
    assert exit_info.value.code == 2 and "--name 'a/b'" in capsys.readouterr().err


DDP_SCRIPT = textwrap.dedent(
    """
    import os, sys, torch
    from mnv3.train import parse_args, train
    rank = os.environ["RANK"]
    out = sys.argv[1]
    # Every rank is given its own --out, so files written by rank 1 would show up in out/rank1.
    args, exp = parse_args(["--experiment", "mnist_small", "--name", "mnist_small", "--out", f"{out}/rank{rank}", "--data-root", f"{out}/data",
                            "--dataset", "synthetic", "--max-train-samples", "256", "--batch-size", "64", "--epochs", "1"])
    model = train(args, exp, return_model=True)[1]
    torch.save(model.state_dict(), f"{out}/weights{rank}.pt")
    """
)


def test_ddp_two_processes_gloo(tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script), str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    w0, w1 = torch.load(tmp_path / "weights0.pt"), torch.load(tmp_path / "weights1.pt")
    for key in w0:
        assert torch.equal(w0[key], w1[key]), key
    assert (tmp_path / "rank0" / "quick" / "mnist_small" / "test.json").is_file()
    assert not (tmp_path / "rank1").exists()
    config = __import__("json").loads((tmp_path / "rank0" / "quick" / "mnist_small" / "config.json").read_text())
    assert config["world_size"] == 2


@pytest.mark.mirror
def test_short_real_mnist_run_clears_an_accuracy_bar(data_mirror, tmp_path):
    """A minute of training on 8,000 real MNIST digits must already beat 90% on the 10,000 test digits."""
    run_dir = main([
        "--experiment", "mnist_small", "--out", str(tmp_path), "--data-root", str(tmp_path / "data"),
        "--data-mirror", str(data_mirror), "--max-train-samples", "8000", "--epochs", "1", "--batch-size", "64", "--warmup-epochs", "0.1",
    ])
    result = __import__("json").loads((run_dir / "test.json").read_text())
    assert result["test_accuracy"] >= 0.90, result


def test_a_split_smaller_than_one_batch_says_which_batch_size_fits(tmp_path, capsys):
    # The probe: "the training split (30 images) is smaller than one batch (128)." gave no fix.
    with pytest.raises(SystemExit) as stopped:
        run(tmp_path, "--max-train-samples", "30", "--batch-size", "128")
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "(30 images) is smaller than one batch (128)" in err and "--batch-size N with N <= 30" in err, err
    assert "--max-train-samples" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
