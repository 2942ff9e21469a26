"""LEGACY: TorchScript for the PyTorch Mobile lite interpreter (the original project's path)."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..files import write_atomic
from .deps import ExportError
from .runners import PtlRunner
from .wrapper import check_finite, contiguous_copy


def export_ptl(module: nn.Module, path: str | Path, input_shape: Sequence[int]) -> str:
    """LEGACY: TorchScript for the PyTorch Mobile lite interpreter (the original project's path).

    ``torch.utils.mobile_optimizer.optimize_for_mobile`` is unavailable in builds without
    XNNPACK (ours), so the module is scripted (traced if scripting fails), frozen (BatchNorm folded
    into the convolutions) and saved with ``_save_for_lite_interpreter``; the file is then loaded
    back with the lite interpreter to prove it runs. Returns how it was converted.
    """
    saver = getattr(torch.jit.ScriptModule, "_save_for_lite_interpreter", None)
    if saver is None:
        raise ExportError(
            f"torch {torch.__version__} has no TorchScript lite interpreter export (_save_for_lite_interpreter); "
            "PyTorch Mobile is deprecated: drop 'ptl' from --formats and use the ExecuTorch .pte."
        )
    check_finite(module)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        module = contiguous_copy(module).eval()
        try:
            scripted, how = torch.jit.script(module), "script"
        except Exception:
            scripted, how = torch.jit.trace(module, (torch.zeros(tuple(input_shape)),)), "trace"
        try:
            scripted, how = torch.jit.freeze(scripted), how + "+freeze"
        except Exception:
            pass
        write_atomic(path, lambda tmp: scripted._save_for_lite_interpreter(str(tmp)))
        try:
            PtlRunner(path)(torch.zeros(tuple(input_shape)))
        except Exception as err:
            raise ExportError(f"{path}: written, but the lite interpreter cannot run it ({type(err).__name__}: {err})") from None
    return how
