"""Start from weights: ``--init SOURCE``, ``--freeze-features`` and ``--features-lr-mult``.

SOURCE is one of

* a run folder (its best weights, or a published run's ``final.safetensors``; the weight EMA
  when the run kept one);
* a ``.safetensors`` file (ours, with or without its ``.json``, or any state dict in torchvision's
  key layout);
* a torchvision MobileNetV3 state dict (``.pth``/``.pt``, read with ``torch.load(weights_only=True)``:
  a file holding more than tensors is refused unread), or an mnv3 checkpoint;
* ``torchvision``: torchvision's ImageNet weights for the model's architecture, through
  torchvision's own weights API (``MobileNet_V3_Small_Weights.IMAGENET1K_V1`` and Large's), which
  downloads once into torch's hub folder; offline, the error says which file to put where.

Fitting the weights to the new model (:func:`fit_state_dict`): our module tree is torchvision's,
so the keys match. When the number of classes differs, the last classifier layer keeps its fresh
initialisation and the log says so. A stem (the first convolution) of 3 input channels given
1-channel data is summed over its input channels, and a 1-channel stem given 3-channel data is
replicated and divided by 3, as timm's ``adapt_input_conv`` does: either way a gray image gives
the same stem output as before. Any other difference of shape, and any missing or extra layer, is
refused, naming the layer and both shapes.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .checkpoint import CHECKPOINT_FORMAT, evaluation_weights, load_checkpoint, load_weights, weights_file
from .files import first_line

__all__ = ["InitError", "TORCHVISION_WEIGHTS", "read_source", "fit_state_dict", "initialise_from", "freeze_features",
           "start_from"]  # fmt: skip

# torchvision's ImageNet weights, per architecture (width 1.0 only: the widths torchvision publishes).
TORCHVISION_WEIGHTS = {"mobilenet_v3_small": "MobileNet_V3_Small_Weights.IMAGENET1K_V1",
                       "mobilenet_v3_large": "MobileNet_V3_Large_Weights.IMAGENET1K_V1"}  # by spec name
SOURCES = "a run folder, a .safetensors file, a torchvision MobileNetV3 state dict (.pth) or torchvision"


class InitError(ValueError):
    """``--init`` cannot use its source; the message names the source, the layer and the fix."""


def _torchvision_state(model: nn.Module) -> tuple[dict[str, torch.Tensor], str]:
    import torchvision
    from torch.hub import get_dir

    config = getattr(model, "config", {})
    arch, width = config.get("spec", {}).get("name"), config.get("width_mult")
    if arch not in TORCHVISION_WEIGHTS or width != 1.0:
        raise InitError(f"--init torchvision: torchvision publishes ImageNet weights for {' and '.join(TORCHVISION_WEIGHTS)} at width 1.0, "
                        f"not for {arch} at width {width}; train that model from scratch or --init from a run of it")
    weights = torchvision.models.get_weight(TORCHVISION_WEIGHTS[arch])
    target = Path(get_dir()) / "checkpoints" / Path(weights.url).name
    try:
        state = weights.get_state_dict(progress=True, weights_only=True)
    except (OSError, RuntimeError) as err:  # offline: URLError is an OSError
        raise InitError(f"--init torchvision: could not download {weights.url} ({first_line(err, type(err).__name__)}). "
                        f"Offline: fetch that file elsewhere and put it at {target} (torchvision then reads it from there), "
                        "or pass --init path/to/the.pth") from None
    return state, f"torchvision's {TORCHVISION_WEIGHTS[arch]} ({target})"


def _load_pickle(path: Path) -> dict[str, torch.Tensor]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise InitError(f"--init {path}: refused: the file holds more than tensors and plain data (Python objects that would run "
                        "code when loaded); save a plain state dict (torch.save(model.state_dict(), path))") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise InitError(f"--init {path}: not a readable .pth file ({type(err).__name__}: {first_line(err)})") from None
    if isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT:
        return evaluation_weights(load_checkpoint(path))
    if not isinstance(payload, dict) or not payload or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise InitError(f"--init {path}: not a state dict (a dict of layer names to tensors); {SOURCES} is expected")
    return payload


def read_source(source: str, model: nn.Module) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict that ``source`` names, and a description of where it came from.

    Raises InitError (or CheckpointError for a damaged run folder) saying what SOURCE may be.
    """
    if source == "torchvision":
        return _torchvision_state(model)
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise InitError(f"--init {source}: a folder that is not a run folder (no config.json); SOURCE is {SOURCES}")
        weights = weights_file(path, "best")
        if weights is None:
            raise InitError(f"--init {source}: the run folder holds no weights (best.pt or final.safetensors); let it finish first")
        payload = load_weights(weights) if weights.suffix == ".safetensors" else load_checkpoint(weights)
        return evaluation_weights(payload), f"the run {source} ({weights.name})"
    if not path.is_file():
        raise InitError(f"--init {source}: no such file or folder; SOURCE is {SOURCES}")
    if path.suffix == ".safetensors":
        if path.with_suffix(".json").is_file():
            return evaluation_weights(load_weights(path)), str(path)
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path)), str(path)
        except (SafetensorError, OSError, ValueError) as err:
            raise InitError(f"--init {source}: not a readable safetensors file ({first_line(err)})") from None
    return _load_pickle(path), str(path)


def _first(model: nn.Module, kind: type) -> str:
    return next(name for name, m in model.named_modules() if isinstance(m, kind))


def _last(model: nn.Module, kind: type) -> str:
    return [name for name, m in model.named_modules() if isinstance(m, kind)][-1]


def _shape(t: torch.Tensor) -> str:
    return "[" + ", ".join(map(str, t.shape)) + "]"


def fit_state_dict(model: nn.Module, state: dict[str, torch.Tensor], *, source: str = "the source") -> tuple[dict[str, torch.Tensor], list[str]]:
    """``state`` fitted to ``model``'s shapes, and one note per change made (see the module docstring).

    The stem is the first Conv2d, the head the last Linear. Raises InitError naming the layer and
    both shapes for any other mismatch, and the missing or extra layers when the keys differ.
    """
    own = model.state_dict()
    missing, extra = [k for k in own if k not in state], [k for k in state if k not in own]  # in layer order
    if missing or extra:
        listed = lambda what, keys: f"{what} {len(keys)}: {', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''}" if keys else ""  # noqa: E731
        detail = "; ".join(part for part in (listed("missing", missing), listed("extra", extra)) if part)
        raise InitError(f"--init {source}: its layers are not this model's ({detail}); it is not a MobileNetV3 in torchvision's "
                        "layout, or of another architecture")
    stem, head = _first(model, nn.Conv2d) + ".weight", _last(model, nn.Linear)
    fitted, notes = {}, []
    for key, mine in own.items():
        theirs = state[key]
        if theirs.shape == mine.shape:
            fitted[key] = theirs.to(mine.dtype)
        elif key == stem and theirs.dim() == 4 and theirs.shape[0] == mine.shape[0] and theirs.shape[2:] == mine.shape[2:] \
                and (theirs.shape[1], mine.shape[1]) in ((3, 1), (1, 3)):
            adapted = theirs.float().sum(1, keepdim=True) if mine.shape[1] == 1 else theirs.float().repeat(1, 3, 1, 1) / 3
            fitted[key] = adapted.to(mine.dtype)
            notes.append(f"stem {key} {'summed over its 3 input channels for 1-channel' if mine.shape[1] == 1 else 'replicated to 3 input channels (/3) for RGB'} data")
        elif key in (f"{head}.weight", f"{head}.bias") and theirs.shape[0] != mine.shape[0] and theirs.shape[1:] == mine.shape[1:]:
            fitted[key] = mine
            if key.endswith(".weight"):
                notes.append(f"{head} re-initialised: the source has {theirs.shape[0]} classes, this model {mine.shape[0]}")
        else:
            raise InitError(f"--init {source}: layer {key} has shape {_shape(theirs)} in the source but {_shape(mine)} in this model; "
                            "only the class count (the last layer) and the stem's input channels may differ")
    return fitted, notes


def initialise_from(model: nn.Module, source: str, log: Callable[[str], None] | None = print) -> list[str]:
    """Load ``source`` into ``model`` (fitted by :func:`fit_state_dict`); returns the notes, which are
    also logged. Float weights are cast to the model's dtype (published weights are bf16)."""
    state, where = read_source(source, model)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    fitted, notes = fit_state_dict(model, state, source=source)
    model.load_state_dict(fitted)
    if log:
        log(f"--init: weights from {where}" + "".join(f"; {n}" for n in notes))
    return notes


def _always_eval(self: nn.Module, mode: bool = True) -> nn.Module:
    return nn.Module.train(self, False)


def freeze_features(model: nn.Module) -> None:
    """Train ``model``'s classifier alone: the parameters of ``model.features`` stop taking gradients,
    and its BatchNorm layers stay in eval mode (their running statistics stay as loaded), whatever
    ``model.train()`` says. The state dict keeps its keys, so checkpoints and export are unchanged."""
    for p in model.features.parameters():
        p.requires_grad_(False)
    model.features.train = _always_eval.__get__(model.features)  # copied along by deepcopy (the EMA)
    model.features.eval()


def start_from(model: nn.Module, init: str, freeze: bool, *, resume: bool, log: Callable[[str], None] | None = print) -> None:
    """What training does with ``--init`` and ``--freeze-features``: load the source unless resuming
    (the checkpoint replaces every weight, so a resumed run never needs the source again), then freeze."""
    if init and not resume:
        initialise_from(model, init, log)
    if freeze:
        freeze_features(model)

