"""What a benchmark run depends on: the suites, the contenders, the targets, and the
configuration (:class:`BenchConfig`) with its two smaller profiles, ``quick`` and ``tiny``."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..paths import relative_to_cwd


SCHEMA = "mnv3-bench"
SCHEMA_VERSION = 1
SUITES = ("inference", "training", "frontier")
DEFAULT_OUT = Path("reports/bench")
DEFAULT_RUNS_DIR = Path("runs/quick")
REFERENCE = "torchvision_eager"
CONTENDERS = ("torchvision_eager", "ours_eager", "executorch_fp32", "executorch_int8", "onnxruntime", "lite_interpreter")
CONTENDER_LABELS = {
    "torchvision_eager": "torchvision eager",
    "ours_eager": "mnv3 eager",
    "executorch_fp32": "ExecuTorch fp32 (XNNPACK)",
    "executorch_int8": "ExecuTorch int8 (XNNPACK)",
    "onnxruntime": "ONNX Runtime",
    "lite_interpreter": "lite interpreter (TorchScript, legacy)",
}

# Which mnv3.export format each exported contender runs.
CONTENDER_FORMATS = {
    "executorch_fp32": "pte",
    "executorch_int8": "pte-int8",
    "onnxruntime": "onnx",
    "lite_interpreter": "ptl",
}
TRAIN_CONTENDERS = ("torchvision", "ours")

# The targets: reported against, never asserted.
TARGETS = {
    "eager_ratio_max": 1.05,  # our eager latency / torchvision's
    "executorch_speedup_min": 3.0,  # our eager latency / ExecuTorch fp32, batch 1
    "training_ratio_min": 1.0,  # our training images/s / torchvision's
}


@dataclass
class BenchConfig:
    """Everything a benchmark run depends on (the defaults are ``make bench``'s)."""

    suites: tuple[str, ...] = SUITES
    # One thread per runtime: the paper's protocol (one big core), and the only count that stays
    # stable on a shared 2-core machine (with 2 threads and one other busy process, OpenMP's
    # spinning threads made eager PyTorch 100-300x slower in our measurements).
    threads: int = 1
    out: Path = DEFAULT_OUT
    runs_dir: Path | None = DEFAULT_RUNS_DIR
    device: str = "cpu"  # the training suite's device; inference and frontier always run on the CPU
    # inference
    settings: tuple[str, ...] = ("small@224", "large@224", "mnist_small", "cifar10_large_s1")
    batches: tuple[int, ...] = (1, 32)
    repeats: int = 60  # timed rounds per (setting, batch), at most
    min_rounds: int = 12  # ... and at least (two cycles of the six contenders' orders)
    budget_s: float = 15.0  # stop adding rounds to a (setting, batch) block after this many seconds
    warmup: int = 3  # untimed calls per contender before timing
    eager_channels_last: bool = True  # --eager-layout; channels_last is what XNNPACK and oneDNN prefer on a CPU
    calibration_images: int = 16  # int8 calibration (random pixels, the timing input's distribution)
    # training
    train_settings: tuple[str, ...] = ("mnist_small", "cifar10_small_s1", "cifar10_large_s1")
    train_batch: int = 128
    train_repeats: int = 20
    train_min_rounds: int = 4
    train_budget_s: float = 20.0
    train_warmup: int = 2
    # frontier
    frontier_archs: tuple[str, ...] = ("small", "large")
    widths: tuple[float, ...] = (0.35, 0.5, 0.75, 1.0, 1.25)
    frontier_resolution: int = 224  # latency input size
    frontier_classes: int = 1000
    mac_resolution: int = 224  # parameters and MACs: the paper's setting
    frontier_repeats: int = 200  # ten cheap programs: many rounds make the medians robust to load bursts
    frontier_budget_s: float = 20.0
    # exports
    cache_dir: Path | None = None  # None: no cache (a temporary folder, deleted afterwards)
    export_workers: int = 2
    profile: str = "default"  # "default", "quick" or "tiny" (recorded in the JSON)

    def to_json(self) -> dict[str, Any]:
        """The config as JSON values. ``cache_dir`` is written relative to the working folder, and
        left out when it lies elsewhere (~/.cache by default): the committed results must not carry
        a machine's folder layout, and where the cache was changes no number."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "cache_dir" and value is not None:
                value = _inside_cwd(Path(value))
                if value is None:
                    continue
            out[f.name] = str(value) if isinstance(value, Path) else (list(value) if isinstance(value, tuple) else value)
        return out


def _inside_cwd(path: Path) -> str | None:
    """``path`` relative to the working folder (POSIX form), or None when it lies outside it."""
    shown = relative_to_cwd(path)
    return None if shown == ".." or shown.startswith("../") or Path(shown).is_absolute() else shown


def default_cache_dir() -> Path:
    """$MNV3_BENCH_CACHE, else $XDG_CACHE_HOME/mnv3/bench, else ~/.cache/mnv3/bench."""
    if os.environ.get("MNV3_BENCH_CACHE"):
        return Path(os.environ["MNV3_BENCH_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mnv3" / "bench"


def quick_config(**overrides) -> BenchConfig:
    """A shorter run than the default (no duration recorded): Small at 224 and on MNIST, two training
    settings, three widths, fewer rounds."""
    cfg = BenchConfig(
        settings=("small@224", "mnist_small"),
        repeats=30,
        budget_s=8.0,
        train_settings=("mnist_small", "cifar10_small_s1"),
        train_repeats=10,
        train_budget_s=12.0,
        widths=(0.35, 0.75, 1.0),
        frontier_repeats=30,
        frontier_budget_s=8.0,
        profile="quick",
    )
    return dataclasses.replace(cfg, **overrides)


def tiny_config(**overrides) -> BenchConfig:
    """The smoke test's configuration: a three-block network, tiny inputs, a few rounds, but every
    contender and every suite (most of its time is ExecuTorch lowering its 7 files; the README's
    Benchmarks section gives the one duration measured)."""
    cfg = BenchConfig(
        settings=("tiny",),
        batches=(1, 2),
        repeats=3,
        min_rounds=3,
        budget_s=0.0,
        warmup=1,
        calibration_images=4,
        train_settings=("tiny",),
        train_batch=8,
        train_repeats=3,
        train_min_rounds=3,
        train_budget_s=0.0,
        train_warmup=1,
        frontier_archs=("tiny",),
        widths=(0.5, 1.0),
        frontier_resolution=32,
        frontier_classes=10,
        mac_resolution=32,
        frontier_repeats=3,
        frontier_budget_s=0.0,
        profile="tiny",
    )
    return dataclasses.replace(cfg, **overrides)
