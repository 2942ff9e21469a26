"""The weight EMA of the recipe search (``--ema-decay``): an exponential moving average of a
model's weights and BatchNorm statistics, updated on the device after every optimizer step.

The averaged copy is what validation, ``best.pt``'s evaluation weights and the test use
(:func:`mnv3.checkpoint.evaluation_weights`). The update is two fused launches (``torch._foreach_*``)
over tensor lists built once, so it adds no host work that grows with the model: the earlier
version rebuilt two state dicts and issued a copy per integer buffer on every step, which cost
8 ms a call on the busy 2-core CPU.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from .experiments import Experiment

__all__ = ["WeightEMA", "make_ema"]


def _tensors(module: nn.Module) -> list[torch.Tensor]:
    # Parameter objects keep their identity when a module moves (only .data changes), but buffers
    # are replaced: WeightEMA is built once the model sits on its training device.
    return [*module.parameters(), *module.buffers()]


class WeightEMA:
    """``ema <- decay * ema + (1 - decay) * model`` after each step, for the floating-point weights
    and BatchNorm running statistics alike (as timm's ModelEmaV2); integer buffers
    (``num_batches_tracked``) are copied.

    ``module`` is a frozen copy of ``model`` in eval mode, the model that evaluation runs.
    ``decay`` is in (0, 1); 0.999 is the sweep's candidate (timm's default for ImageNet is 0.9998,
    over far more steps). Build it after ``model`` is on its training device and do not move either
    afterwards: the update pairs the two models' tensors as they are at construction.
    Raises ValueError for a decay outside (0, 1).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay!r}.")
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        pairs = list(zip(_tensors(self.module), _tensors(model), strict=True))
        self._float_pairs = ([e for e, _ in pairs if e.is_floating_point()], [m for e, m in pairs if e.is_floating_point()])
        self._other_pairs = ([e for e, _ in pairs if not e.is_floating_point()], [m for e, m in pairs if not e.is_floating_point()])

    @torch.no_grad()
    def update(self) -> None:
        """One averaging step on the device; never waits for the host. torch's AveragedModel
        would read a device counter on the host every step, which stalls a GPU."""
        torch._foreach_lerp_(*self._float_pairs, 1.0 - self.decay)
        if self._other_pairs[0]:
            torch._foreach_copy_(*self._other_pairs)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged model's state dict (what ``best.pt`` keeps under ``"ema"``)."""
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load a saved average in place (the update's tensor lists stay valid)."""
        self.module.load_state_dict(state)


def make_ema(model: nn.Module, exp: Experiment) -> WeightEMA | None:
    """The :class:`WeightEMA` of ``model`` at ``exp.ema_decay``, or None when EMA is off (0)."""
    return WeightEMA(model, exp.ema_decay) if exp.ema_decay else None
