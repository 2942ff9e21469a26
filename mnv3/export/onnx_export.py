"""ONNX export (dynamic batch, a chosen opset), checked with onnx.checker and onnxruntime."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..files import write_atomic
from .deps import ExportError, import_onnx
from .runners import OnnxRunner
from .wrapper import check_finite, contiguous_copy

ONNX_OPSET = 18



def onnx_opset(path: str | Path) -> int:
    """The default-domain ("ai.onnx") opset version an ONNX file declares, read from the file."""
    model = import_onnx().onnx.load(str(path), load_external_data=False)
    versions = [entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")]
    if not versions:
        raise ExportError(f"{path}: the ONNX file declares no ai.onnx opset")
    return int(versions[0])


def export_onnx(module: nn.Module, path: str | Path, input_shape: Sequence[int], *, opset: int = ONNX_OPSET) -> str:
    """ONNX with a dynamic batch dimension (input "pixels", output "logits"), in one file, at ``opset``.

    Opset 18 and later: the torch.export-based exporter (``dynamo=True``), falling back to the
    TorchScript-based one if that fails. Older opsets: the TorchScript-based exporter, which
    writes them natively (the dynamo exporter builds opset 18 and cannot always convert down).
    The opset is read back from the file: ExportError (and no file) when it is not ``opset``.
    The file is checked with ``onnx.checker`` and loaded in onnxruntime. Returns the exporter
    used and the file's opset.
    """
    ox = import_onnx()
    check_finite(module)
    module = contiguous_copy(module).eval()
    path = Path(path)
    example = (torch.zeros(tuple(input_shape)),)
    names = {"input_names": ["pixels"], "output_names": ["logits"]}

    def dynamo(tmp: Path) -> None:
        torch.onnx.export(
            module, example, str(tmp), dynamo=True, opset_version=opset, external_data=False,
            dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},), verbose=False, **names,
        )  # fmt: skip

    def torchscript(tmp: Path) -> None:
        torch.onnx.export(
            module, example, str(tmp), dynamo=False, opset_version=opset,
            dynamic_axes={"pixels": {0: "batch"}, "logits": {0: "batch"}}, **names,
        )  # fmt: skip

    def first_line(err: Exception) -> str:
        return f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:200]}"

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        how = None
        if opset >= ONNX_OPSET:
            try:
                write_atomic(path, dynamo)
                how = "torch.onnx dynamo exporter"
            except Exception as err:
                fallback_reason = f" (the dynamo exporter failed: {first_line(err)})"
        else:
            fallback_reason = f" (opset {opset} < {ONNX_OPSET})"
        if how is None:
            try:
                write_atomic(path, torchscript)
                how = "torch.onnx TorchScript exporter" + fallback_reason
            except Exception as err:
                raise ExportError(f"ONNX export at opset {opset} failed: {first_line(err)}. Try --onnx-opset {ONNX_OPSET}.") from None
    written = onnx_opset(path)
    if written != opset:
        path.unlink(missing_ok=True)
        raise ExportError(
            f"ONNX export asked for opset {opset} but {how.split(' (')[0]} wrote opset {written}; no file kept. "
            f"Use --onnx-opset {written}."
        )
    try:
        ox.onnx.checker.check_model(str(path))
        OnnxRunner(path)(torch.zeros(tuple(input_shape)))
    except Exception as err:
        path.unlink(missing_ok=True)
        raise ExportError(
            f"ONNX export at opset {opset}: the file fails onnx.checker or onnxruntime ({first_line(err)}); "
            f"no file kept. Try --onnx-opset {ONNX_OPSET}."
        ) from None
    return f"{how}, opset {written} (read from the file)"
