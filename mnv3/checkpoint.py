"""Checkpoints: safe loading, published weights, and one way to load a trained model.

The run folder these files live in (``config.json``, ``metrics.csv``, ``last.pt``, ``best.pt``,
``test.json``) is described in :mod:`mnv3.runs`.

A checkpoint is a dict with ``format`` = "mnv3-checkpoint", ``model_config`` (``model.config``)
and ``model`` (the state dict), plus the training state that ``--resume`` needs. Checkpoints are
read with ``torch.load(weights_only=True)``: only tensors and plain data, so a crafted file cannot
run code. Published results (``reports/full/runs/<experiment>/``) hold ``final.safetensors`` (the
best weights in bf16) and ``final.json`` (the model config and provenance) instead, the format
timm and Hugging Face use for committed weights; a legacy ``final.pt`` is still read, safely.
"""
from __future__ import annotations

import dataclasses
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from .experiments import Experiment
from .files import first_line, save_torch_atomic, write_bytes_atomic, write_json_atomic
from .model import MobileNetV3, model_from_config
from .records import check_model_config as check_model_fields, check_state_dict, read_record
from .runs import load_record, run_state

__all__ = [
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "save_weights",
    "load_weights",
    "weights_file",
    "evaluation_weights",
    "load_run",
    "check_model_config",
    "check_resume",
    "repair_checkpoints",
    "best_epoch_of",
    "model_with_weights",
    "CHECKPOINT_FORMAT",
    "WEIGHTS_FORMAT",
]

CHECKPOINT_FORMAT = "mnv3-checkpoint"
WEIGHTS_FORMAT = "mnv3-weights"
# Which file holds a run's weights, in order of preference: training runs have best.pt/last.pt,
# published runs final.safetensors (or the older final.pt).
_WEIGHT_FILES = {
    "best": ("best.pt", "final.safetensors", "final.pt"),
    "last": ("last.pt",),
    "final": ("final.safetensors", "final.pt"),
}


class CheckpointError(RuntimeError):
    """A checkpoint or run folder that cannot be used, with what to do about it."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Save ``payload`` (which must hold ``model_config`` and ``model``) atomically.

    Raises OSError (e.g. disk full) with the previous file at ``path`` left intact.
    """
    save_torch_atomic({"format": CHECKPOINT_FORMAT, **payload}, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load an mnv3 checkpoint (``.pt``), or raise CheckpointError saying why it cannot be used.

    Only tensors and plain Python data are unpickled (``weights_only=True``): a file that holds
    anything else (a crafted pickle that would run code, say) is refused before any of it runs.
    Its model config is checked (:func:`mnv3.records.check_model_config`; RecordError).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint there. Train a run first (python -m mnv3.train --help).")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only load failed" in str(err).lower():
            raise CheckpointError(
                f"{path}: refused. The file holds more than tensors and plain data (Python objects that "
                "would run code when loaded), so it was not written by mnv3. Do not use it; retrain or "
                "take the checkpoint from a source you trust."
            ) from None
        raise CheckpointError(f"{path}: not a readable checkpoint (UnpicklingError: {first_line(err)}).") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, AttributeError, ImportError, OSError) as err:
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(err).__name__}: {first_line(err)}). "
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
    check_model_fields(payload["model_config"], str(path), "model_config")
    return payload


def save_weights(path: str | Path, state_dict: dict[str, torch.Tensor], model_config: dict[str, Any], **provenance: Any) -> Path:
    """Write ``state_dict`` to ``path`` (``.safetensors``) and the model config beside it (``.json``).

    ``provenance`` (epoch, dtype, source run, ...) is stored in the JSON. Returns the JSON path.
    """
    from safetensors.torch import save

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: published weights are written as .safetensors")
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    write_bytes_atomic(path, save(tensors, metadata={"format": WEIGHTS_FORMAT}))
    sidecar = path.with_suffix(".json")
    write_json_atomic(sidecar, {"format": WEIGHTS_FORMAT, "weights": path.name, "model_config": model_config, **provenance})
    return sidecar


def load_weights(path: str | Path) -> dict[str, Any]:
    """Read published weights: ``{"model_config", "model", **provenance}`` like a checkpoint.

    ``path`` is a ``.safetensors`` file with its ``.json`` beside it, or a legacy ``final.pt``
    (read with :func:`load_checkpoint`). The ``.json`` is checked by :func:`mnv3.records.read_record`
    (kind "weights"). Raises CheckpointError for a missing, damaged or mismatched pair, naming the
    file and the field.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        return load_checkpoint(path)
    from safetensors import SafetensorError
    from safetensors.torch import load

    sidecar = path.with_suffix(".json")
    if not path.is_file() or not sidecar.is_file():
        raise CheckpointError(f"{path}: published weights need both {path.name} and {sidecar.name}; one is missing.")
    meta = read_record(sidecar, kind="weights")
    try:
        tensors = load(path.read_bytes())
    except (SafetensorError, ValueError, OSError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({first_line(err)}); it may be truncated.") from None
    return {**meta, "model": tensors}


def evaluation_weights(payload: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The state dict to evaluate a checkpoint with: the weight EMA when training kept one
    (``ema_decay`` > 0), else the trained weights. What it returns is checked when it is loaded
    (:func:`model_with_weights`), so an ``ema`` entry that is not a state dict is refused there."""
    return payload["ema"] if payload.get("ema") is not None else payload["model"]


def weights_file(run_dir: str | Path, which: str = "best") -> Path | None:
    """The file holding a run's ``which`` weights ("best", "last" or "final"), or None."""
    if which not in _WEIGHT_FILES:
        raise ValueError(f"which must be one of {', '.join(_WEIGHT_FILES)}, got {which!r}.")
    return next((p for p in (Path(run_dir) / name for name in _WEIGHT_FILES[which]) if p.is_file()), None)


def _describe(model_config: dict[str, Any]) -> str:
    spec = model_config.get("spec", {})
    return (
        f"{spec.get('name', '?')} (width {model_config.get('width_mult')}, {model_config.get('num_classes')} classes, "
        f"{model_config.get('in_channels')} input channels, drop_first_strides={model_config.get('drop_first_strides')})"
    )


def check_model_config(found: dict[str, Any], expected: dict[str, Any], *, where: str, expected_from: str) -> None:
    """Raise CheckpointError when a checkpoint's model is not the one its run describes."""
    if found != expected:
        differ = sorted(k for k in set(found) | set(expected) if found.get(k) != expected.get(k))
        detail = "; ".join(
            f"{k}: {found.get(k)!r} against {expected.get(k)!r}" if k != "spec" else "spec: other layer rows" for k in differ
        )
        raise CheckpointError(
            f"{where}: holds the weights of {_describe(found)}, but {expected_from} describes "
            f"{_describe(expected)} ({detail}). The file belongs to another run; put it back where it came from."
        )


def model_with_weights(model_config: dict[str, Any], state_dict: dict[str, torch.Tensor], *, where: str) -> MobileNetV3:
    """``model_from_config`` with ``state_dict`` loaded (floating tensors as fp32); RecordError
    when they do not fit: a missing or extra tensor, another shape, or a dtype that is not the
    model's kind (an int8 or bool weight, a float step counter; :func:`mnv3.records.check_state_dict`)."""
    model = model_from_config(model_config)
    check_state_dict(state_dict, model, where)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()})
    return model


def _no_weights_hint(run_dir: Path, which: str) -> str:
    """Why a run folder has no ``which`` weights, and what to do, for load_run's error."""
    state = run_state(run_dir)
    if not state["epochs_done"]:
        return "The run may have been interrupted before its first epoch ended; resume it with --resume or retrain."
    if which == "final" and any((run_dir / name).is_file() for name in _WEIGHT_FILES["best"] + _WEIGHT_FILES["last"]):
        # A training folder: final weights exist only in a published copy, and only of a finished run.
        if state["status"] != "ok":
            return f"The run is {state['label']}: only a finished run has final weights; use --which best or last."
        return (f"The run is {state['label']} but not published: final weights are written by "
                f"`python -m mnv3.publish {run_dir} DEST` (then use DEST), or use --which best or last.")
    if which == "last" and weights_file(run_dir, "final") is not None:
        return "A published run keeps only its final weights; use --which best or final."
    return f"The run is {state['label']}; a published copy of a stopped run carries no weights (publish --unfinished)."


def load_run(run_dir: str | Path, which: str = "best", map_location: str | torch.device = "cpu") -> tuple[MobileNetV3, dict[str, Any]]:
    """The trained model of a run folder, in eval mode (fp32), and the run's ``config.json``.

    ``which`` is "best" (highest validation accuracy; a published run's ``final`` weights), "last"
    or "final". Raises CheckpointError when the folder has no config or weights, when the weights
    file is unreadable or unsafe, or when it holds another model than ``config.json`` describes;
    RecordError (:mod:`mnv3.records`) when config.json, final.json or a tensor breaks its rules.
    """
    run_dir = Path(run_dir)
    if which not in _WEIGHT_FILES:
        raise ValueError(f"which must be one of {', '.join(_WEIGHT_FILES)}, got {which!r}.")
    if not (run_dir / "config.json").exists():
        raise CheckpointError(f"{run_dir}: not a run folder (no config.json). Train one with python -m mnv3.train.")
    config = load_record(run_dir)
    path = weights_file(run_dir, which)
    if path is None:
        why = _no_weights_hint(run_dir, which)
        raise CheckpointError(
            f"{run_dir}: no weights ({', '.join(_WEIGHT_FILES[which])} missing). {why}"
        )
    payload = load_weights(path) if path.suffix == ".safetensors" else load_checkpoint(path, map_location=map_location)
    check_model_config(payload["model_config"], config["model"], where=str(path), expected_from=str(run_dir / "config.json"))
    return model_with_weights(payload["model_config"], evaluation_weights(payload), where=str(path)).eval(), config


def best_epoch_of(history: list[dict[str, Any]]) -> int:
    """The first epoch of ``history`` (metrics rows) with the highest validation accuracy, 0 for none:
    training saves best.pt only on a strict gain."""
    return max(history, key=lambda r: r["val_acc"])["epoch"] if history else 0


def _differences(stored: dict[str, Any], now: dict[str, Any]) -> list[str]:
    return [f"{key} {stored.get(key)!r} -> {now.get(key)!r}" for key in now if stored.get(key) != now.get(key)]


def check_resume(state: dict[str, Any], path: Path, fields: dict[str, Any], launch: dict[str, Any], model_config: dict[str, Any]) -> None:
    """Refuse to resume from ``state`` (read from ``path``) when it was written for another model
    or with other experiment fields or launch settings; CheckpointError names each difference."""
    check_model_config(state["model_config"], model_config, where=str(path), expected_from="this launch's experiment")
    # A field added to Experiment after the checkpoint was written had its default value then.
    defaults = {f.name: f.default for f in dataclasses.fields(Experiment)}
    changed = _differences({**defaults, **state.get("experiment", {})}, fields)
    if "launch" in state:  # checkpoints from before the launch was stored cannot be checked
        changed += _differences(state["launch"], launch)
    if changed:
        raise CheckpointError(
            f"{path}: resume refused, it was written with other settings ({'; '.join(changed)}). "
            f"Resume with the original settings (see {path.parent / 'config.json'}), or start a new run with --name."
        )


def repair_checkpoints(run_dir: Path) -> None:
    """Put best.pt and last.pt of ``run_dir`` back in step after a kill between their writes, or
    raise CheckpointError when neither file holds the best epoch's weights."""
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    state = load_checkpoint(last_path)
    best = load_checkpoint(best_path) if best_path.is_file() else None
    if best is not None and best["epoch"] > state["epoch"]:
        # Killed between writing best.pt and last.pt: best.pt is the newer state, whole.
        print(f"{best_path} is ahead of {last_path} (epoch {best['epoch']} > {state['epoch']}): resuming from it.", flush=True)
        save_checkpoint(last_path, {k: v for k, v in best.items() if k != "format"})
        return
    if not state["history"]:
        return
    best_epoch = best_epoch_of(state["history"])
    if best is None or best["epoch"] != best_epoch:
        if state["epoch"] != best_epoch:
            raise CheckpointError(
                f"{best_path} holds epoch {best['epoch'] if best else 'nothing'}, but {last_path} names epoch {best_epoch} "
                "as the best, and neither file holds that epoch's weights. Retrain the run (delete the folder)."
            )
        print(f"{best_path} did not hold the best epoch ({best_epoch}); restored it from {last_path}.", flush=True)
        save_checkpoint(best_path, {k: v for k, v in state.items() if k != "format"})
