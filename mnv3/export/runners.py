"""Runtimes for the exported files: raw pixels in, logits out (ExecuTorch, lite interpreter,
onnxruntime, eager)."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .deps import ExportError, import_executorch, import_onnx
from .threadpool import executorch_threads


class PteRunner:
    """Runs a .pte with the ExecuTorch Python runtime: ``PteRunner(path_or_bytes)(x) -> logits``.

    The program has a static batch size; any batch is fed in chunks of it (the last one padded).
    """

    def __init__(self, program: str | Path | bytes) -> None:
        et = import_executorch()
        executorch_threads()  # started here, once, so that its informational log lines are dropped
        data = str(program) if isinstance(program, Path) else program
        try:
            self.method = et.Runtime.get().load_program(data).load_method("forward")
        except Exception as err:  # the runtime raises RuntimeError/ValueError with an error code
            what = program if isinstance(program, (str, Path)) else "the program"
            raise ExportError(
                f"{what}: ExecuTorch cannot load it ({type(err).__name__}: {(str(err).splitlines() or [''])[0]}); "
                "the file may be truncated or from another ExecuTorch version: export it again."
            ) from None
        self.input_shape = tuple(self.method.metadata.input_tensor_meta(0).sizes())

    @property
    def batch_size(self) -> int:
        return self.input_shape[0]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().contiguous()
        if tuple(x.shape[1:]) != self.input_shape[1:]:
            raise ExportError(f"the .pte takes {list(self.input_shape)} inputs, got {list(x.shape)}")
        outputs = []
        for start in range(0, len(x), self.batch_size):
            chunk = x[start : start + self.batch_size]
            n = len(chunk)
            if n < self.batch_size:
                chunk = torch.cat([chunk, chunk.new_zeros((self.batch_size - n, *chunk.shape[1:]))])
            outputs.append(self.method.execute([chunk])[0][:n].clone())
        return torch.cat(outputs)


class PtlRunner:
    """Runs a TorchScript lite (.ptl) file with the lite interpreter (LEGACY)."""

    def __init__(self, path: str | Path) -> None:
        import torch.jit.mobile as mobile

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.module = mobile._load_for_lite_interpreter(str(path))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.module(x.float().contiguous())


class OnnxRunner:
    """Runs an ONNX file with onnxruntime on the CPU (``threads`` intra-op threads)."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        ort = import_onnx().ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        self.threads = options.intra_op_num_threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input_name: x.float().contiguous().numpy()})[0]
        return torch.from_numpy(out)


class EagerRunner:
    """Runs an eager module (put in eval mode) as the other runners run files: raw pixels
    ``[N, C, H, W]`` (any dtype, cast to float32) in, logits ``[N, classes]`` out, under
    ``torch.inference_mode``. The parity report's reference."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module.eval()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.module(x.float())


def load_runner(path: str | Path, *, threads: int | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """A callable raw-pixels -> logits for an exported file, chosen by its suffix."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: no such file")
    if path.suffix == ".pte":
        return PteRunner(path)
    if path.suffix == ".ptl":
        return PtlRunner(path)
    if path.suffix == ".onnx":
        return OnnxRunner(path, threads=threads)
    raise ExportError(f"{path}: unknown model file type {path.suffix!r} (expected .pte, .ptl or .onnx)")
