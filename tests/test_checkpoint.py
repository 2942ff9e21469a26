"""Checkpoints a file cannot abuse: safe loading, published safetensors, and the model check."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from mnv3.checkpoint import CheckpointError, load_checkpoint, load_run, load_weights, save_weights, weights_file
from mnv3.evaluate import evaluate_run
from mnv3.model import build_model
from mnv3.publish import publish_run
from mnv3.train import main as train_main


class _Payload:
    """Unpickling this calls open(marker, "w"): a file appears if the loader runs code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _crafted(path: Path, marker: Path, model_config: dict) -> None:
    torch.save({"format": "mnv3-checkpoint", "model_config": model_config, "model": _Payload(marker)}, path)


@pytest.fixture
def crafted_run(trained_run, tmp_path):
    """A copy of a real run whose every checkpoint (best, last, final) carries a code payload."""
    run = tmp_path / "quick" / "mnist_small"
    shutil.copytree(trained_run, run)
    config = json.loads((run / "config.json").read_text())
    marker = tmp_path / "pwned"
    for name in ("best.pt", "last.pt", "final.pt"):
        _crafted(run / name, marker, config["model"])
    return run, marker


def _refused(call, marker: Path) -> str:
    with pytest.raises(CheckpointError) as caught:
        call()
    assert not marker.exists(), "the checkpoint ran code"
    return str(caught.value)


def test_crafted_checkpoint_runs_no_code_in_any_loader(crafted_run, tmp_path, capsys):
    run, marker = crafted_run
    loaders = {
        "load_checkpoint": lambda: load_checkpoint(run / "last.pt"),
        "load_run best": lambda: load_run(run),
        "load_run last": lambda: load_run(run, which="last"),
        "load_weights final.pt": lambda: load_weights(run / "final.pt"),
        "evaluate_run": lambda: evaluate_run(run, split="test", root=tmp_path / "data", max_samples=8),
        "publish_run": lambda: publish_run(run, tmp_path / "published"),
    }
    for name, call in loaders.items():
        message = _refused(call, marker)
        assert "holds more than tensors and plain data" in message, (name, message)
    (run / "test.json").unlink()  # resume refuses finished runs before loading anything
    with pytest.raises(SystemExit) as stopped:
        train_main(["--experiment", "mnist_small", "--name", "mnist_small", "--out", str(tmp_path), "--dataset", "synthetic",
                    "--max-train-samples", "1024", "--batch-size", "32", "--epochs", "2", "--resume"])  # fmt: skip
    assert stopped.value.code == 2 and not marker.exists()
    assert "holds more than tensors and plain data" in capsys.readouterr().err


def test_crafted_checkpoint_is_refused_by_the_exporter(crafted_run):
    export = pytest.importorskip("mnv3.export")
    run, marker = crafted_run
    assert "holds more than tensors" in _refused(lambda: export.load_wrapped_run(run), marker)


def test_published_weights_are_safetensors_and_load_like_the_run(trained_run, tmp_path):
    dest = publish_run(trained_run, tmp_path / "mnist_small")
    assert weights_file(dest) == dest / "final.safetensors"
    assert json.loads((dest / "final.json").read_text())["model_config"] == json.loads((dest / "config.json").read_text())["model"]
    raw = (dest / "final.safetensors").read_bytes()
    assert b"mnv3-weights" in raw[:4096] and b"\x80\x02" not in raw[:2]  # safetensors header, not a pickle
    published, _ = load_run(dest)
    original, _ = load_run(trained_run)
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(published(x).argmax(1), original(x).argmax(1))


def test_legacy_final_pt_still_loads_and_converts(trained_run, tmp_path):
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    for name in ("config.json", "metrics.csv", "test.json"):
        shutil.copy(trained_run / name, legacy / name)
    best = load_checkpoint(trained_run / "best.pt")
    # As the publish of commit 2a4eb25 wrote it: floating tensors in bf16, the int64 step counters as they were.
    torch.save({"format": "mnv3-checkpoint", "model_config": best["model_config"], "epoch": best["epoch"],
                "model": {k: v.bfloat16() if v.is_floating_point() else v for k, v in best["model"].items()}}, legacy / "final.pt")  # fmt: skip
    model, _ = load_run(legacy)
    assert isinstance(model, torch.nn.Module)
    converted = publish_run(legacy, tmp_path / "converted")
    assert (converted / "final.safetensors").is_file() and not (converted / "final.pt").exists()


def test_damaged_safetensors_and_missing_sidecar_are_named(tmp_path):
    model = build_model("small", num_classes=10, in_channels=1)
    path = tmp_path / "final.safetensors"
    save_weights(path, model.state_dict(), model.config, epoch=1)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="final.safetensors: not a readable safetensors file"):
        load_weights(path)
    path.with_suffix(".json").unlink()
    with pytest.raises(CheckpointError, match="final.json; one is missing"):
        load_weights(path)


def test_checkpoint_of_another_model_is_refused(trained_run, tmp_path):
    run = tmp_path / "mnist_small"
    shutil.copytree(trained_run, run)
    large = build_model("large", num_classes=10, in_channels=1)
    torch.save({"format": "mnv3-checkpoint", "model_config": large.config, "model": large.state_dict(), "epoch": 1}, run / "best.pt")
    with pytest.raises(CheckpointError, match=r"best.pt: holds the weights of mobilenet_v3_large .*config.json describes mobilenet_v3_small"):
        load_run(run)
    with pytest.raises(CheckpointError, match="holds the weights of mobilenet_v3_large"):
        publish_run(run, tmp_path / "out")


def test_written_files_follow_the_umask(trained_run, tmp_path):
    dest = publish_run(trained_run, tmp_path / "mnist_small")
    for name in ("final.safetensors", "final.json", "config.json"):
        mode = (dest / name).stat().st_mode & 0o777
        assert mode == 0o666 & ~_current_umask(), (name, oct(mode))


def _current_umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_stopped_published_run_says_how_far_it_got_not_that_it_never_started(tmp_path):
    # The committed cifar10_small_s1 stopped at epoch 54 of 60 and was published without weights.
    committed = Path(__file__).resolve().parents[1] / "reports" / "full" / "runs" / "cifar10_small_s1"
    run = shutil.copytree(committed, tmp_path / "cifar10_small_s1")
    with pytest.raises(CheckpointError, match=r"unfinished \(stopped at epoch 54 of 60\).*publish --unfinished"):
        load_run(run)
    (run / "metrics.csv").write_text((run / "metrics.csv").read_text().splitlines()[0] + "\n")  # no epoch recorded
    with pytest.raises(CheckpointError, match="interrupted before its first epoch ended"):
        load_run(run)


def test_missing_final_or_last_weights_give_the_hint_that_applies(trained_run, tmp_path, capsys):
    # The probe: --which final on a finished, unpublished run said "a published copy of a stopped run
    # carries no weights (publish --unfinished)", which does not apply to it.
    from mnv3.evaluate import main as evaluate_main

    assert evaluate_main([str(trained_run), "--which", "final", "--max-samples", "4", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert f"python -m mnv3.publish {trained_run} DEST" in err and "--which best" in err and "--unfinished" not in err, err
    published = publish_run(trained_run, tmp_path / "published")
    with pytest.raises(CheckpointError, match="keeps only its final weights; use --which best or final"):
        load_run(published, which="last")
    stopped = tmp_path / "stopped"
    shutil.copytree(trained_run, stopped, ignore=shutil.ignore_patterns("export", "test.json"))
    with pytest.raises(CheckpointError, match="only a finished run has final weights") as refused:
        load_run(stopped, which="final")
    assert "publish" not in str(refused.value)
