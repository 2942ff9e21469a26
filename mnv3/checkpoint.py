"""Checkpoints and run folders: atomic writes, clear errors, and one way to load a trained model.

A run folder (``runs/<profile>/<experiment>/``) holds:

- ``config.json``: the experiment's fields, the model config, seed, versions, git commit, device;
- ``metrics.csv``: one row per epoch;
- ``last.pt`` / ``best.pt``: checkpoints (best by validation accuracy);
- ``test.json``: the final test-set evaluation.

A checkpoint is a dict with ``format`` = "mnv3-checkpoint", ``model_config`` (``model.config``)
and ``model`` (the state dict), plus the training state that ``--resume`` needs.
"""
from __future__ import annotations

import json
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from .model import MobileNetV3, model_from_config

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "load_run", "write_json_atomic", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "mnv3-checkpoint"


class CheckpointError(RuntimeError):
    """A checkpoint or run folder that cannot be used, with what to do about it."""


def _atomic_write(path: Path, write) -> None:
    # Write beside the target and rename: an interrupted run never leaves a half-written file.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes files private; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Save ``payload`` (which must hold ``model_config`` and ``model``) atomically."""
    _atomic_write(Path(path), lambda f: torch.save({"format": CHECKPOINT_FORMAT, **payload}, f))


def write_json_atomic(path: str | Path, data: Any) -> None:
    _atomic_write(Path(path), lambda f: f.write((json.dumps(data, indent=2) + "\n").encode()))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load an mnv3 checkpoint, or raise CheckpointError saying why it cannot be used."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint there. Train a run first (python -m mnv3.train --help).")
    try:
        # weights_only=False: the training state holds Python RNG state and numpy arrays. Only load
        # checkpoints you made yourself; the format check below rejects foreign ones.
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, AttributeError, ImportError) as err:
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no detail'}). "
            "It may be truncated by an interrupted copy; use the run's other checkpoint (best.pt or last.pt) or retrain."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(
            f"{path}: not an mnv3 checkpoint (format is {found!r}, expected {CHECKPOINT_FORMAT!r}). "
            "For torchvision weights, load them into torchvision's model and use mnv3.from_torchvision."
        )
    for key in ("model_config", "model"):
        if key not in payload:
            raise CheckpointError(f"{path}: checkpoint has no {key!r} entry; it was not written by mnv3.train.")
    return payload


def load_run(run_dir: str | Path, which: str = "best", map_location: str | torch.device = "cpu") -> tuple[MobileNetV3, dict[str, Any]]:
    """The trained model of a run folder, in eval mode, and the run's ``config.json``.

    ``which`` is "best" (highest validation accuracy) or "last". Full-profile results stored under
    ``reports/full/`` hold ``final.pt`` (weights only, half precision to stay small); "best" falls
    back to it there.
    """
    run_dir = Path(run_dir)
    if which not in ("best", "last", "final"):
        raise ValueError(f"which must be 'best', 'last' or 'final', got {which!r}.")
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{run_dir}: not a run folder (no config.json). Train one with python -m mnv3.train.")
    config = json.loads(config_path.read_text())
    candidates = [run_dir / f"{which}.pt"] + ([run_dir / "final.pt"] if which == "best" else [])
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise CheckpointError(
            f"{run_dir}: no weights ({', '.join(p.name for p in candidates)} missing). "
            "The run may have been interrupted before its first epoch ended; resume it with --resume or retrain."
        )
    payload = load_checkpoint(path, map_location=map_location)
    model = model_from_config(payload["model_config"])
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in payload["model"].items()})
    return model.eval(), config
