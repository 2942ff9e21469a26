"""What notebook 01 shows: the hard nonlinearities of Section 5.2 (h-sigmoid, h-swish) against
the smooth ones they replace (sigmoid, swish), their errors, and their CPU cost."""
from __future__ import annotations

from typing import Any, Callable

from .timing import percentile, time_calls

__all__ = ["nonlinearity_curves", "nonlinearity_errors", "time_nonlinearities"]


def nonlinearity_curves(lo: float = -6.0, hi: float = 6.0, points: int = 1201):
    """sigmoid, h-sigmoid, swish and h-swish on [lo, hi], and the hard-minus-smooth differences."""
    import pandas as pd
    import torch
    import torch.nn.functional as F

    x = torch.linspace(lo, hi, points, dtype=torch.float64)
    frame = pd.DataFrame(
        {
            "x": x.numpy(),
            "sigmoid": torch.sigmoid(x).numpy(),
            "h-sigmoid": F.hardsigmoid(x).numpy(),
            "swish": (x * torch.sigmoid(x)).numpy(),
            "h-swish": F.hardswish(x).numpy(),
        }
    )
    frame["h-sigmoid - sigmoid"] = frame["h-sigmoid"] - frame["sigmoid"]
    frame["h-swish - swish"] = frame["h-swish"] - frame["swish"]
    return frame


def nonlinearity_errors(curves) -> Any:
    """Maximum absolute error of each hard function against its smooth original, and where."""
    import pandas as pd

    rows = []
    for hard, smooth in (("h-sigmoid", "sigmoid"), ("h-swish", "swish")):
        diff = (curves[hard] - curves[smooth]).abs()
        i = int(diff.idxmax())
        rows.append({"function": hard, "approximates": smooth, "max |error|": float(diff[i]), "at x": float(curves["x"][i]),
                     "mean |error|": float(diff.mean())})
    return pd.DataFrame(rows).set_index("function")


def time_nonlinearities(elements: int = 10_000_000, repeats: int = 7, *, threads: int | None = None, seed: int = 0):
    """Median CPU time of each nonlinearity on a float32 tensor of ``elements`` values.

    Each function is timed out of place (it allocates its output, as in inference). The hard
    functions are timed twice: PyTorch's fused kernels (what mnv3.layers uses) and the paper's
    formula written as separate tensor ops. ``threads`` sets torch's CPU threads for the
    measurement (default: unchanged).
    """
    import pandas as pd
    import torch
    import torch.nn.functional as F

    functions: dict[str, Callable[[Any], Any]] = {
        "ReLU (reference)": torch.relu,
        "sigmoid": torch.sigmoid,
        "h-sigmoid (fused)": F.hardsigmoid,
        "h-sigmoid (formula: relu6(x+3)/6)": lambda x: F.relu6(x + 3) / 6,
        "swish (x * sigmoid(x))": lambda x: x * torch.sigmoid(x),
        "swish (fused silu)": F.silu,
        "h-swish (fused)": F.hardswish,
        "h-swish (formula: x*relu6(x+3)/6)": lambda x: x * F.relu6(x + 3) / 6,
    }
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        x = torch.randn(elements, generator=torch.Generator().manual_seed(seed)) * 4
        rows = []
        with torch.inference_mode():
            for name, fn in functions.items():
                # one warm-up call: allocator and dispatch
                median = percentile(time_calls(lambda: fn(x), runs=repeats, warmup=1), 50)
                rows.append({"function": name, "median ms": median, "ns per element": 1e6 * median / elements})
    finally:
        torch.set_num_threads(previous)
    frame = pd.DataFrame(rows).set_index("function")
    frame["relative to ReLU"] = frame["median ms"] / frame.loc["ReLU (reference)", "median ms"]
    return frame
