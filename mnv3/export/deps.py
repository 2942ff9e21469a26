"""The optional packages (ExecuTorch, torchao, ONNX, onnxruntime), imported only when a format
needs them, and the errors every export step raises."""
from __future__ import annotations

import contextlib
import importlib
import logging
from types import SimpleNamespace

INSTALL_HINT = 'pip install -e ".[export]"'


class ExportError(RuntimeError):
    """A problem the user can fix, stated in one message (the CLI prints it and exits with 2)."""


class MissingDependencyError(ExportError):
    """An optional package that the requested format needs is not installed."""


class DelegationError(ExportError):
    """Part of the network would run outside the XNNPACK delegate (slowly, in portable kernels)."""


def _require(module: str, package: str, purpose: str):
    """Import ``module`` or raise MissingDependencyError naming ``package`` and the install command."""
    try:
        importlib.import_module(module.split(".")[0])  # fails first if the package itself is absent
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingDependencyError(
            f"{purpose} needs the optional package '{package}', which is not installed or cannot be "
            f"imported ({type(err).__name__}: {err}). Install the export extras: {INSTALL_HINT}"
        ) from None


@contextlib.contextmanager
def quiet_imports():
    """A context manager that raises the ``torch.utils._pytree`` logger to ERROR inside the block
    and restores its level after, even when the block raises.

    Wrap imports of executorch (and of torchao, which it pulls in): torchao logs a deprecation
    warning from torch's pytree at import, on every command that touches ExecuTorch.
    """
    logger = logging.getLogger("torch.utils._pytree")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def import_executorch() -> SimpleNamespace:
    """The ExecuTorch pieces used here: ``to_edge_transform_and_lower`` (export and lowering),
    ``XnnpackPartitioner`` and ``Runtime`` (the Python runtime that runs .pte programs).

    Also the check that the pte formats can run: call it before any work. Raises
    MissingDependencyError naming the package and ``INSTALL_HINT`` when executorch is missing.
    """
    purpose = "ExecuTorch (the pte and pte-int8 formats)"
    with quiet_imports():
        exir = _require("executorch.exir", "executorch", purpose)
        partitioner = _require("executorch.backends.xnnpack.partition.xnnpack_partitioner", "executorch", purpose)
        runtime = _require("executorch.runtime", "executorch", purpose)
    return SimpleNamespace(
        to_edge_transform_and_lower=exir.to_edge_transform_and_lower,
        XnnpackPartitioner=partitioner.XnnpackPartitioner,
        Runtime=runtime.Runtime,
    )


def import_delegation_info():
    """ExecuTorch's own delegation count, the function
    ``executorch.devtools.backend_debug.get_delegation_info`` (an edge program's graph module in,
    per-op delegated and non-delegated counts out). Raises MissingDependencyError without executorch."""
    with quiet_imports():
        debug = _require("executorch.devtools.backend_debug", "executorch", "the XNNPACK delegation report")
    return debug.get_delegation_info


def import_pt2e() -> SimpleNamespace:
    """PT2E quantization: ``XNNPACKQuantizer`` and ``get_symmetric_quantization_config``
    (executorch) and ``prepare_pt2e`` / ``convert_pt2e`` (torchao).

    Raises MissingDependencyError naming executorch or torchao when either is missing.
    """
    purpose = "int8 quantization (pte-int8)"
    with quiet_imports():
        quantizer = _require("executorch.backends.xnnpack.quantizer.xnnpack_quantizer", "executorch", purpose)
        # executorch's quantizer is built on torchao's PT2E classes, so torchao's prepare/convert must be used.
        pt2e = _require("torchao.quantization.pt2e.quantize_pt2e", "torchao", purpose)
    return SimpleNamespace(
        XNNPACKQuantizer=quantizer.XNNPACKQuantizer,
        get_symmetric_quantization_config=quantizer.get_symmetric_quantization_config,
        prepare_pt2e=pt2e.prepare_pt2e,
        convert_pt2e=pt2e.convert_pt2e,
    )


def import_onnx() -> SimpleNamespace:
    """ONNX export's packages: ``onnx`` (the model checker) and ``ort`` (onnxruntime, which runs the
    file); onnxscript is imported only to check that it is there, since torch.onnx needs it.

    Raises MissingDependencyError naming the missing package and ``INSTALL_HINT``.
    """
    purpose = "ONNX export"
    onnx = _require("onnx", "onnx", purpose)
    _require("onnxscript", "onnxscript", purpose)  # torch.onnx's exporter builds the graph with it
    ort = _require("onnxruntime", "onnxruntime", purpose)
    return SimpleNamespace(onnx=onnx, ort=ort)
