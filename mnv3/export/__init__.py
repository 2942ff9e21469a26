"""Export a trained run for phones, check the exported files against eager PyTorch, and write
the Android app's assets.

    python -m mnv3.export runs/quick/mnist_small                   # all formats -> RUN/export/
    python -m mnv3.export RUN --formats pte --skip-parity          # just the app's model.pte
    python -m mnv3.export android-assets --mnist RUN --cifar RUN   # -> android-demo/app/src/main/assets

Formats (files in the export folder):

- ``pte``      model.pte       ExecuTorch program, fp32, the whole network in the XNNPACK delegate.
                               This is what the Android app runs.
- ``pte-int8`` model_int8.pte  the same after PT2E static int8 quantization (XNNPACKQuantizer,
                               symmetric, per-channel weights), calibrated on training images. The
                               first bneck block stays fp32 inside the delegate (INT8_KEEP_FP32,
                               --int8-keep-fp32; INT8_FINDING says why).
- ``ptl``      model.ptl       TorchScript for the lite interpreter. LEGACY: the original project's
                               path; PyTorch Mobile is deprecated upstream in favour of ExecuTorch.
- ``onnx``     model.onnx      ONNX (opset 18 unless asked otherwise, dynamic batch), checked with onnxruntime.

Every artefact takes **raw pixels** in [0, 1] (pixel / 255), float32 NCHW at the dataset's native
size (1x28x28 for the MNIST family, 3x32x32 for CIFAR): :class:`RawPixelModel` does the mean/std
normalisation (and, for runs trained on upsampled images, the bilinear resize) inside the graph,
so an app cannot get them wrong. ``model.json`` tells the app the input contract and the labels;
``parity.json`` / ``parity.md`` compare every artefact with eager PyTorch (logit difference, top-1
agreement, full test-set accuracy, file size; batch-1 CPU latency only when asked with
``--latency-runs``: on a shared machine it means little, and ``make bench`` times the same
programs properly).

ExecuTorch, ONNX and onnxruntime are optional dependencies, imported only when a format needs
them: ``pip install -e ".[export]"``.

One job per module: ``wrapper`` (the raw-pixel model), ``pte`` / ``ptl`` / ``onnx_export`` (the
converters; ``delegation`` checks the XNNPACK lowering), ``runners`` (running the files),
``threadpool`` (ExecuTorch's threadpool, started without its informational log lines),
``manifest`` (model.json), ``parity`` (parity.json / parity.md), ``readers`` (those files read back
for notebooks/06_export.ipynb), ``android`` (the app's assets), ``run`` (:func:`export_run`, the
whole export), ``cli`` (the command line), ``formats`` and ``deps`` (the optional imports and the
errors). Every name in ``__all__`` is importable from ``mnv3.export`` itself; notebook 06 imports
``mnv3.export.readers``.
"""
from __future__ import annotations

from .android import DEFAULT_ASSETS_DIR, make_android_assets, png_to_input, save_png
from .cli import main
from .delegation import check_delegation, delegation_report
from . import deps
from .deps import INSTALL_HINT, DelegationError, ExportError, MissingDependencyError
from .formats import FILE_NAMES, FORMATS
from .manifest import (
    LEGACY_NOTE, MANIFEST_FORMAT, MANIFEST_KEYS, MANIFEST_VERSION, NORMALIZATION_NOTE, model_manifest, verify_files,
)  # fmt: skip
from .onnx_export import ONNX_OPSET, export_onnx, onnx_opset
from .parity import EVAL_BUDGET_S, NOT_TIMED, PROBE_BATCH, accuracy, compare_logits, measure_latency, write_parity
from .ptl import export_ptl
from .pte import (
    FP32_KINDS, INT8_FINDING, INT8_KEEP_FP32, INT8_MAX_DROP_POINTS, calibration_images, export_pte, export_pte_int8,
    fp32_module_names, lower_to_pte, quantize_int8, to_edge_xnnpack,
)  # fmt: skip
from .run import export_run
from .runners import OnnxRunner, PteRunner, PtlRunner, load_runner
from .threadpool import EXECUTORCH_INFO_LINES, dropping_stderr_lines, executorch_threads
from .wrapper import RawPixelModel, check_finite, load_wrapped_run, wrap_for_export

__all__ = [
    "FORMATS",
    "FILE_NAMES",
    "DEFAULT_ASSETS_DIR",
    "ExportError",
    "MissingDependencyError",
    "DelegationError",
    "RawPixelModel",
    "wrap_for_export",
    "load_wrapped_run",
    "to_edge_xnnpack",
    "delegation_report",
    "check_delegation",
    "lower_to_pte",
    "export_pte",
    "calibration_images",
    "quantize_int8",
    "fp32_module_names",
    "FP32_KINDS",
    "export_pte_int8",
    "export_ptl",
    "export_onnx",
    "onnx_opset",
    "check_finite",
    "PteRunner",
    "PtlRunner",
    "OnnxRunner",
    "load_runner",
    "model_manifest",
    "verify_files",
    "compare_logits",
    "accuracy",
    "measure_latency",
    "write_parity",
    "export_run",
    "save_png",
    "png_to_input",
    "make_android_assets",
    "executorch_threads",
    "dropping_stderr_lines",
    "main",
    # Constants, as the single-module mnv3.export had them.
    "INSTALL_HINT",
    "ONNX_OPSET",
    "INT8_MAX_DROP_POINTS",
    "INT8_KEEP_FP32",
    "INT8_FINDING",
    "NOT_TIMED",
    "PROBE_BATCH",
    "EVAL_BUDGET_S",
    "LEGACY_NOTE",
    "NORMALIZATION_NOTE",
    "MANIFEST_FORMAT",
    "MANIFEST_KEYS",
    "MANIFEST_VERSION",
    "EXECUTORCH_INFO_LINES",
]
