"""Runs that are never silently mixed up: names, locks, resume checks, crash order, full disks."""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest
import torch

from mnv3 import step as step_module
from mnv3 import train as train_module
from mnv3.checkpoint import load_checkpoint
from mnv3.experiments import get_experiment
from mnv3.lock import RunLock
from mnv3.runs import run_name
from mnv3.train import main

FAST = ["--dataset", "synthetic", "--max-train-samples", "384", "--batch-size", "64", "--epochs", "2", "--val-fraction", "0.1", "--threads", "1"]


def run(tmp: Path, *extra: str) -> Path:
    return main(["--experiment", "mnist_small", "--name", "mnist_small", "--out", str(tmp), "--data-root", str(tmp / "data"), *FAST, *extra])


def fails(capsys, tmp: Path, *extra: str) -> str:
    with pytest.raises(SystemExit) as stopped:
        run(tmp, *extra)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    return run(tmp_path_factory.mktemp("finished"))


def copy_run(src: Path, tmp: Path) -> Path:
    dest = tmp / "quick" / "mnist_small"
    shutil.copytree(src, dest)
    return dest


def test_run_names_show_the_overrides():
    exp = get_experiment("mnist_small", "quick")
    assert run_name("mnist_small", "quick", exp) == "mnist_small"
    changed = get_experiment("mnist_small", "quick", epochs=5, lr=0.05)
    assert run_name("mnist_small", "quick", changed) == "mnist_small-epochs5-lr0.05"
    assert run_name("mnist_small", "quick", exp, seed=2) == "mnist_small-seed2"
    assert run_name("mnist_small", "quick", changed, name="mine") == "mine"
    with pytest.raises(ValueError, match="--name '../x'"):
        run_name("mnist_small", "quick", exp, name="../x")


def test_an_override_never_replaces_the_profile_run(finished, tmp_path):
    own = copy_run(finished, tmp_path)
    before = (own / "test.json").read_bytes()
    other = main(["--experiment", "mnist_small", "--out", str(tmp_path), "--data-root", str(tmp_path / "data"), *FAST])
    assert other.name == "mnist_small-datasetsynthetic-batch-size64-max-train-samples384"
    assert (other / "test.json").is_file() and (own / "test.json").read_bytes() == before
    assert json.loads((other / "config.json").read_text())["overrides"] == {"dataset": "synthetic", "batch_size": 64, "max_train_samples": 384}


def test_fresh_run_over_an_existing_run_is_refused(finished, tmp_path, capsys):
    run_dir = copy_run(finished, tmp_path)
    err = fails(capsys, tmp_path)
    assert "already holds a finished run" in err and "--name" in err and "--resume" not in err
    (run_dir / "test.json").unlink()
    err = fails(capsys, tmp_path)
    assert "already holds a run" in err and "--resume" in err and "--name" in err


def test_resume_of_a_finished_run_changes_nothing(finished, tmp_path, capsys):
    run_dir = copy_run(finished, tmp_path)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    run(tmp_path, "--resume")
    assert "is finished" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != ".lock"} == {
        k: v for k, v in before.items() if k != ".lock"
    }


@pytest.mark.parametrize(
    "extra, expected",
    [(["--lr", "0.05"], "lr 0.2 -> 0.05"), (["--seed", "1"], "seed 0 -> 1"), (["--threads", "2"], "threads 1 -> 2")],
)
def test_resume_with_other_settings_names_both_values(finished, tmp_path, capsys, extra, expected):
    run_dir = copy_run(finished, tmp_path)
    (run_dir / "test.json").unlink()
    FAST_NO_THREADS = [a for a in FAST if a not in ("--threads", "1")]
    with pytest.raises(SystemExit) as stopped:
        main(["--experiment", "mnist_small", "--name", "mnist_small", "--out", str(tmp_path), "--data-root", str(tmp_path / "data"),
              *FAST_NO_THREADS, *(["--threads", "1"] if "--threads" not in extra else []), *extra, "--resume"])  # fmt: skip
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "resume refused" in err and expected in err, err


def test_a_second_training_in_the_same_folder_is_refused(tmp_path, capsys):
    run_dir = tmp_path / "quick" / "mnist_small"
    with RunLock(run_dir):
        err = fails(capsys, tmp_path)
    assert "another training holds this run folder" in err and "process" in err


def _kill_on(monkeypatch, name: str, epoch: int, error: BaseException) -> None:
    original = train_module.save_checkpoint

    def save(path, payload):
        if Path(path).name == name and payload["epoch"] == epoch:
            raise error
        return original(path, payload)

    monkeypatch.setattr(train_module, "save_checkpoint", save)


def test_kill_between_best_and_last_resumes_from_the_newer_best(finished, tmp_path, monkeypatch, capsys):
    assert load_checkpoint(finished / "best.pt")["epoch"] == 2, "the reference run must improve in epoch 2"
    _kill_on(monkeypatch, "last.pt", 2, KeyboardInterrupt())  # dies after best.pt (epoch 2) was written
    with pytest.raises(SystemExit):
        run(tmp_path)
    run_dir = tmp_path / "quick" / "mnist_small"
    assert load_checkpoint(run_dir / "best.pt")["epoch"] == 2 and load_checkpoint(run_dir / "last.pt")["epoch"] == 1
    monkeypatch.undo()
    run(tmp_path, "--resume")
    assert "is ahead of" in capsys.readouterr().out
    result, reference = (json.loads((d / "test.json").read_text()) for d in (run_dir, finished))
    assert (result["best_epoch"], result["test_accuracy"]) == (reference["best_epoch"], reference["test_accuracy"])


def test_best_pt_left_behind_by_the_old_write_order_is_repaired(finished, tmp_path, capsys, monkeypatch):
    # Old order: last.pt (naming epoch 2 as best) was written, then the run died before best.pt.
    _kill_on(monkeypatch, "last.pt", 2, KeyboardInterrupt())
    with pytest.raises(SystemExit):
        run(tmp_path / "epoch1")
    epoch1_best = tmp_path / "epoch1" / "quick" / "mnist_small" / "last.pt"
    monkeypatch.undo()
    run_dir = copy_run(finished, tmp_path)
    (run_dir / "test.json").unlink()
    shutil.copy(epoch1_best, run_dir / "best.pt")
    run(tmp_path, "--resume")
    assert "restored it from" in capsys.readouterr().out
    assert load_checkpoint(run_dir / "best.pt")["epoch"] == 2
    result, reference = (json.loads((d / "test.json").read_text()) for d in (run_dir, finished))
    assert result["test_accuracy"] == reference["test_accuracy"]


def test_disk_full_says_what_survived_and_how_to_resume(tmp_path, monkeypatch, capsys):
    _kill_on(monkeypatch, "last.pt", 2, OSError(28, "No space left on device"))
    err = fails(capsys, tmp_path)
    assert "could not write" in err and "last.pt (No space left on device)" in err
    assert "the previous" in err and "is intact" in err and "resume with: python -m mnv3.train" in err and "--threads 1" in err
    run_dir = tmp_path / "quick" / "mnist_small"
    (run_dir / ".last.pt.x1y2.tmp").write_bytes(b"half a checkpoint")
    monkeypatch.undo()
    run(tmp_path, "--resume")
    assert not list(run_dir.glob("*.tmp")) and (run_dir / "test.json").is_file()


def test_nan_in_the_first_epoch_says_no_checkpoint_exists(tmp_path, monkeypatch, capsys):
    original = step_module.compute_loss
    monkeypatch.setattr(step_module, "compute_loss", lambda *a, **k: original(*a, **k) * float("nan"))
    err = fails(capsys, tmp_path)
    assert "non-finite at epoch 1" in err and "no checkpoint was written yet" in err and "last.pt" not in err


def test_progress_lines_when_output_is_not_a_terminal(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MNV3_PROGRESS_SECONDS", "0")
    run(tmp_path)
    out = capsys.readouterr().out
    assert "epoch 1/2, step 1/6: loss" in out and "img/s" in out


def test_a_terminal_without_a_size_still_shows_the_bar(tmp_path):
    # In a terminal that reports 0 x 0 (a pseudo-terminal nobody sized), tqdm drew a zero-width bar,
    # and the 30-second lines are off on a terminal: an epoch passed without a word.
    import os
    import select
    import subprocess
    import sys

    pty = pytest.importorskip("pty")
    master, slave = pty.openpty()  # a new pseudo-terminal has no window size
    assert tuple(os.get_terminal_size(slave)) == (0, 0)
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    env.pop("TQDM_DISABLE", None)
    child = subprocess.Popen([sys.executable, "-m", "mnv3.train", "--experiment", "mnist_small", "--out", str(tmp_path),
                              "--data-root", str(tmp_path / "data"), *FAST, "--epochs", "1"],
                             stdin=slave, stdout=slave, stderr=slave, env=env, cwd=repo)  # fmt: skip
    os.close(slave)
    out = b""
    while select.select([master], [], [], 300)[0]:
        try:
            chunk = os.read(master, 1 << 16)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert child.wait(timeout=60) == 0, out.decode(errors="replace")
    frames = out.decode(errors="replace").split("\r")
    drawn = [frame for frame in frames if frame.startswith("epoch 1/1:") and "%|" in frame]
    # tqdm skips frames closer than its mininterval (0.1 s) apart, so which steps are drawn depends on
    # the machine's speed: any step's frame with its numbers will do.
    assert drawn and any("/6 [" in frame and "loss=" in frame for frame in drawn), frames
    assert max(len(frame) for frame in drawn) <= train_module.FALLBACK_TERMINAL["ncols"]


def test_config_records_the_machine(finished):
    config = json.loads((finished / "config.json").read_text())
    machine = config["machine"]
    assert machine["torch_threads"] == 1 and machine["cpu_count"] >= 1 and machine["cpu_model"]
    assert machine["load_average"] is None or len(machine["load_average"]) == 3
    assert machine["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and machine["isa_settings"] == {}


def test_huge_width_and_bad_ddp_timeout_fail_in_one_line(tmp_path, capsys):
    from mnv3.model import build_model
    from mnv3.spec import SpecError

    with pytest.raises(SpecError, match="about .* parameters \\(width_mult 100"):
        build_model("large", width_mult=100)
    with pytest.raises(SystemExit):
        main(["--experiment", "mnist_small", "--ddp-timeout", "0"])
    assert "--ddp-timeout must be a positive number of seconds" in capsys.readouterr().err


def test_resume_command_rebuilds_the_whole_launch():
    args = argparse.Namespace(experiment="cifar10_small_s1", profile="full", out="runs", seed=3, name=None, threads=4,
                              device="cuda", data_mirror=None, data_root="data", skip_test=False)  # fmt: skip
    exp = get_experiment("cifar10_small_s1", "full", epochs=5)
    command = train_module._launch_command(args, exp, world_size=4, resume=True)
    assert command.startswith("torchrun --nproc_per_node 4 -m mnv3.train --experiment cifar10_small_s1 --profile full")
    for part in ("--seed 3", "--epochs 5", "--threads 4", "--device cuda", "--resume"):
        assert part in command, part


def test_ablation_table_reads_validation_not_test(finished, tmp_path):
    from mnv3.runs import ablation_rows, ablation_table

    run_dir = copy_run(finished, tmp_path)
    (run_dir / "test.json").write_text("{not json: the table must not read the test result}")
    rows = ablation_rows(run_dir.parent)
    best = max(float(r["val_acc"]) for r in __import__("csv").DictReader(open(finished / "metrics.csv")))
    assert len(rows) == 1 and rows[0]["best_val_acc"] == pytest.approx(best) and rows[0]["epochs_done"] == 2
    assert rows[0]["overrides"] == {"dataset": "synthetic", "batch_size": 64, "max_train_samples": 384}
    assert f"{100 * best:.2f}%" in ablation_table(rows)
    experiment = __import__("json").loads((run_dir / "config.json").read_text())["experiment"]
    assert rows[0]["experiment"] == experiment and f"| {experiment} |" in ablation_table(rows)
    assert rows[0]["state"] == "finished"
    assert ablation_rows(run_dir) == rows  # a single run folder is a table of one
    other = dict(rows[0], name="other-seed1", experiment="a_first", seed=1, best_val_acc=0.01)
    table = ablation_table([*rows, other])
    assert "seed=1" in table and table.index("| other-seed1 |") < table.index(f"| {rows[0]['name']} |")  # grouped by experiment
    (run_dir / "test.json").unlink()  # a stopped run is labelled, never passed off as finished
    assert "unfinished (all 2 epochs trained, no test evaluation)" in ablation_table(ablation_rows(run_dir.parent))


def test_out_of_range_fields_and_mixed_up_weights_fail_in_one_line(finished, tmp_path, capsys):
    from mnv3.checkpoint import CheckpointError, load_run
    from mnv3.model import build_model
    from mnv3.publish import publish_run
    from mnv3.records import RecordError

    for flag, value in (("--ema-decay", "1.5"), ("--cutout", "-3"), ("--lr", "-1"), ("--threads", "0")):
        with pytest.raises(SystemExit):
            main(["--experiment", "mnist_small", flag, value])
        assert flag in capsys.readouterr().err
    run_dir = copy_run(finished, tmp_path)
    config = json.loads((run_dir / "config.json").read_text())
    large = build_model("large", num_classes=10, in_channels=1)
    torch.save({"format": "mnv3-checkpoint", "model_config": config["model"], "model": large.state_dict(), "epoch": 2}, run_dir / "best.pt")
    with pytest.raises(RecordError, match="best.pt: the weights do not fit the model its config describes"):
        load_run(run_dir)
    with pytest.raises(RecordError, match="do not fit the model its config describes"):
        publish_run(run_dir, tmp_path / "out")
    other = dict(config["model"], dropout=0.3)
    torch.save({"format": "mnv3-checkpoint", "model_config": other, "model": {}, "epoch": 2}, run_dir / "best.pt")
    with pytest.raises(CheckpointError, match="dropout: 0.3 against 0.2"):
        load_run(run_dir)


def test_a_refused_run_leaves_no_empty_folder(tmp_path, capsys):
    fails(capsys, tmp_path, "--resume")
    assert not (tmp_path / "quick" / "mnist_small").exists()


# ----------------------------------------------------------------------------- what cannot work, refused up front (issue 22)


@pytest.mark.parametrize("size", ["100000", "5000"])
def test_an_image_size_no_model_trains_at_is_refused_with_the_memory_it_would_need(tmp_path, capsys, size):
    # 100000 px asked the allocator for 1.28 TB and left config.json behind; 5000 px grew the
    # process to 24 GiB until the kernel killed it without a word.
    err = fails(capsys, tmp_path, "--image-size", size)
    assert f"--image-size {size} is over the limit of 1024 px" in err and "GiB" in err and len(err.strip().splitlines()) == 1, err
    gib = float(err.split("at least about ")[1].split(" GiB")[0].replace(",", ""))
    assert gib > (1e5 if size == "100000" else 100)  # Small at 5000 px: about 8 GB of activations per image
    assert not (tmp_path / "quick").exists()


def test_a_batch_that_cannot_fit_in_memory_is_refused_before_the_run_folder(tmp_path, capsys):
    err = fails(capsys, tmp_path, "--image-size", "1024", "--batch-size", "65536")
    assert "with 65536 images per step would need at least about" in err and "GiB are free. Lower --batch-size or --image-size" in err
    assert not (tmp_path / "quick").exists()


def test_the_memory_estimate_follows_the_model():
    from mnv3.summary import training_memory

    small = dict(num_classes=10, in_channels=1, image_size=224, batch_size=16)
    per_image = training_memory("small", **small) - training_memory("small", **{**small, "batch_size": 0})
    assert 150e6 < per_image < 400e6  # 16 images; measured growth on the 2-core CPU: 390 MB (see the docstring)
    assert training_memory("large", **small, drop_first_strides=2) > 10 * training_memory("small", **small)
    assert training_memory("small", **{**small, "image_size": 448}) > 3.5 * per_image


def test_out_or_data_root_that_cannot_be_written_is_one_line(tmp_path, read_only_dir, capsys, data_mirror):
    (tmp_path / "runs").write_text("a file where the runs folder goes")
    with pytest.raises(SystemExit):
        main(["--experiment", "mnist_small", "--out", str(tmp_path / "runs"), *FAST])
    err = capsys.readouterr().err
    assert err.startswith("error: ") and f"{tmp_path / 'runs'} is a file, not a folder" in err and "Traceback" not in err, err
    with pytest.raises(SystemExit):
        main(["--experiment", "mnist_small", "--out", str(read_only_dir), *FAST])
    err = capsys.readouterr().err
    assert err.startswith(f"error: {read_only_dir}") and len(err.strip().splitlines()) == 1, err
    with pytest.raises(SystemExit):  # MNIST decoded from the mirror, then its cache cannot be written
        main(["--experiment", "mnist_small", "--out", str(tmp_path / "out"), "--data-root", str(read_only_dir),
              "--data-mirror", str(data_mirror), "--epochs", "1", "--threads", "1"])
    err = capsys.readouterr().err
    assert err.startswith(f"error: {read_only_dir}") and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out" / "quick" / "mnist_small").exists()  # the refused run leaves no folder


def test_resume_refuses_a_damaged_record_or_cast_weights_before_training(finished, tmp_path, capsys):
    run_dir = copy_run(finished, tmp_path)
    (run_dir / "test.json").unlink()  # a stopped run
    metrics = (run_dir / "metrics.csv").read_text()
    good = (run_dir / "config.json").read_text()
    (run_dir / "config.json").write_text(good.replace('"image_size": 28', '"image_size": 100000'))
    err = fails(capsys, tmp_path, "--resume")
    assert "config.json: field 'image_size' is 100000" in err and len(err.strip().splitlines()) == 1, err
    (run_dir / "config.json").write_text(good)
    state = load_checkpoint(run_dir / "last.pt")
    state["model"]["classifier.3.weight"] = state["model"]["classifier.3.weight"].to(torch.int8)
    torch.save(state, run_dir / "last.pt")
    err = fails(capsys, tmp_path, "--resume")
    assert "last.pt (model): tensor 'classifier.3.weight' is int8" in err, err
    assert (run_dir / "metrics.csv").read_text() == metrics  # nothing trained
