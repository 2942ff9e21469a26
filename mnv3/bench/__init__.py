"""Benchmarks: CPU inference latency, training throughput and the accuracy-latency frontier.

    python -m mnv3.bench                         # all three suites -> reports/bench/*.json (+ notebook)
    python -m mnv3.bench --suite inference --threads 2 --repeats 100
    python -m mnv3.bench --suite training --device cuda      # -> reports/bench/training_gpu.json
    python -m mnv3.bench --tiny --out /tmp/bench             # the smoke test's configuration

Three suites, one JSON each (``inference.json``, ``training.json`` / ``training_gpu.json``,
``frontier.json``), all with the same ``environment`` block (CPU model, cores, the thread count
of every runtime, library versions, date, git commit, load average):

- **inference**: per setting (Small and Large at 224x224 with 1000 classes, and the experiments'
  models at their native resolution with 10 classes) and per batch size (1 and 32), the latency
  of six contenders that compute the same function with the same weights: torchvision's eager
  model, ours (``from_torchvision`` of it), the ExecuTorch fp32 and int8 programs, ONNX Runtime
  and the TorchScript lite interpreter. Every contender takes raw pixels (``RawPixelModel``) so
  the work is identical; the exports come from ``mnv3.export``.
- **training**: images per second of our model against torchvision's (``to_torchvision``, same
  architecture and initial weights) in the training step of ``mnv3.train``: ``prepare_batch``
  (augmentation), channels_last, forward, label-smoothed loss, backward, SGD with Nesterov.
- **frontier**: width multipliers 0.35 to 1.25 of Small and Large: parameters and MACs
  (``mnv3.summary``, 224x224, 1000 classes) against ExecuTorch fp32 batch-1 CPU latency, with
  the test accuracy of every trained run of the same arch and width found in ``--runs-dir``.

Method: contenders are timed round-robin, one call each per round, in orders from a Williams
design (each contender in each position, and after each other contender, equally often), so load
changes on a shared machine hit all of them alike and no one inherits a systematically lighter or
heavier predecessor; each result keeps its per-call times, median, p90 and the median of its
per-round ratios to the reference (with a bootstrap 95% interval). Threads are pinned (torch,
ExecuTorch's threadpool and onnxruntime get the same count, one by default) and recorded, and so
is the CPU time other processes took during every block.
Exports are cached by content (weights, architecture, shape, library versions) in ``--cache-dir``,
so a second run only measures. The second half of this module holds what notebook 07 computes
(tables, target verdicts, plots).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import importlib.metadata
import json
import math
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "SUITES",
    "CONTENDERS",
    "CONTENDER_LABELS",
    "TARGETS",
    "BenchConfig",
    "ModelCase",
    "inference_case",
    "training_case",
    "frontier_case",
    "make_models",
    "environment",
    "interleaved_times",
    "summarize_times",
    "run_inference",
    "run_training",
    "run_frontier",
    "run",
    "main",
    "load_results",
    "target_checks",
]

SCHEMA = "mnv3-bench"
SCHEMA_VERSION = 1
SUITES = ("inference", "training", "frontier")
REPO = Path(__file__).resolve().parents[2]
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

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Howard et al. 2019, Table 3 (ImageNet, 224x224): top-1 %, millions of MAdds and parameters,
# Pixel-1 latency (ms, one big core, TFLite). Only these multipliers are published there.
PAPER_TABLE3 = {
    ("large", 1.0): {"top1": 75.2, "madds_m": 219, "params_m": 5.4, "pixel1_ms": 51},
    ("large", 0.75): {"top1": 73.3, "madds_m": 155, "params_m": 4.0, "pixel1_ms": 39},
    ("small", 1.0): {"top1": 67.4, "madds_m": 56, "params_m": 2.5, "pixel1_ms": 15.8},
    ("small", 0.75): {"top1": 65.4, "madds_m": 44, "params_m": 2.0, "pixel1_ms": 12.8},
}

# Bump when the exported files would change for the same inputs (the cache key includes it).
_CACHE_VERSION = 1

# ============================================================================ configuration


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
    eager_channels_last: bool = True  # the eager models run channels_last, as mnv3.train/evaluate do
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
    render: bool = True
    profile: str = "default"  # "default", "quick" or "tiny" (recorded in the JSON)

    def to_json(self) -> dict[str, Any]:
        """The config as JSON values. ``cache_dir`` is written relative to the working folder, and
        left out when it lies elsewhere (~/.cache by default): the committed results must not carry
        a machine's folder layout, and where the cache was changes no number."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "cache_dir" and value is not None:
                value = _relative_to_cwd(Path(value))
                if value is None:
                    continue
            out[f.name] = str(value) if isinstance(value, Path) else (list(value) if isinstance(value, tuple) else value)
        return out


def _relative_to_cwd(path: Path) -> str | None:
    """``path`` relative to the working folder (POSIX form), or None when it is outside it."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix() or "."
    except ValueError:
        return None


def default_cache_dir() -> Path:
    """$MNV3_BENCH_CACHE, else $XDG_CACHE_HOME/mnv3/bench, else ~/.cache/mnv3/bench."""
    if os.environ.get("MNV3_BENCH_CACHE"):
        return Path(os.environ["MNV3_BENCH_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mnv3" / "bench"


def quick_config(**overrides) -> BenchConfig:
    """About half the default's time: Small at 224 and on MNIST, two training settings, three widths, fewer rounds."""
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
    """The smoke test's configuration: a four-block network, tiny inputs, a few rounds, but every
    contender and every suite (about a minute on two cores, most of it in ExecuTorch lowering)."""
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
        render=False,
        profile="tiny",
    )
    return dataclasses.replace(cfg, **overrides)


# ============================================================================ models


def tiny_spec_dict() -> dict[str, Any]:
    """Small's stem, its first two bneck rows and a 5x5 h-swish row with SE and a residual, and a
    6x head: every kind of layer in a network that ExecuTorch lowers in seconds."""
    from ..spec import load_spec

    spec = load_spec("small").to_dict()
    spec["name"] = "tiny"
    spec["blocks"] = spec["blocks"][:2] + [{"kernel": 5, "exp_size": 96, "out": 24, "se": True, "nl": "HS", "stride": 1}]
    spec["head"] = {"out": 6 * 24, "nl": "HS", "hidden": 128}
    return spec


@dataclass(frozen=True)
class ModelCase:
    """One network to benchmark: architecture, input and output sizes, normalisation, seed."""

    name: str  # e.g. "small@224", "mnist_small", "large-w0.75"
    arch: str  # "small", "large" or "tiny"
    width: float = 1.0
    in_channels: int = 3
    resolution: int = 224
    classes: int = 1000
    drop_first_strides: int = 0
    dataset: str = "imagenet"  # normalisation statistics (and augmentation, in training)
    experiment: str = ""
    seed: int = 0

    @property
    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        if self.dataset == "imagenet":
            return IMAGENET_MEAN[: self.in_channels], IMAGENET_STD[: self.in_channels]
        from ..data import dataset_info

        info = dataset_info(self.dataset)
        return info.mean, info.std

    def describe(self) -> dict[str, Any]:
        return {
            "setting": self.name,
            "arch": self.arch,
            "width": self.width,
            "in_channels": self.in_channels,
            "resolution": self.resolution,
            "classes": self.classes,
            "drop_first_strides": self.drop_first_strides,
            "dataset": self.dataset,
            "experiment": self.experiment or None,
        }


def _spec_for(arch: str):
    from ..spec import load_spec, spec_from_dict

    return spec_from_dict(tiny_spec_dict(), source="<tiny>") if arch == "tiny" else load_spec(arch)


def inference_case(name: str) -> ModelCase:
    """"small@224" / "large@224" (ImageNet shape, 1000 classes), an experiment's name (its model
    at its native resolution, 10 classes) or "tiny" (the smoke test's network at 32x32)."""
    if "@" in name:
        arch, _, size = name.partition("@")
        if arch not in ("small", "large", "tiny") or not size.isdigit():
            raise ValueError(f"unknown setting {name!r}: expected small@SIZE, large@SIZE or an experiment name")
        return ModelCase(name, arch, resolution=int(size))
    if name == "tiny":
        return ModelCase("tiny", "tiny", in_channels=3, resolution=32, classes=10, dataset="cifar10")
    return _experiment_case(name)


def _experiment_case(name: str) -> ModelCase:
    from ..data import dataset_info
    from ..experiments import EXPERIMENTS, get_experiment

    if name not in EXPERIMENTS:
        raise ValueError(
            f"unknown setting {name!r}; valid: small@224, large@224 (any size after @), tiny, {', '.join(EXPERIMENTS)}"
        )
    exp = get_experiment(name, "quick")
    info = dataset_info(exp.dataset)
    return ModelCase(
        name,
        exp.arch,
        width=exp.width_mult,
        in_channels=info.in_channels,
        resolution=exp.image_size or info.image_size,
        classes=info.num_classes,
        drop_first_strides=exp.drop_first_strides,
        dataset=exp.dataset,
        experiment=name,
    )


def training_case(name: str) -> ModelCase:
    """An experiment's model at its native size (or "tiny": the tiny network on 1x28x28)."""
    if name == "tiny":
        return ModelCase("tiny", "tiny", in_channels=1, resolution=28, classes=10, dataset="mnist")
    return _experiment_case(name)


def frontier_case(arch: str, width: float, resolution: int = 224, classes: int = 1000) -> ModelCase:
    name = f"{arch}@{resolution}" if width == 1.0 and classes == 1000 else f"{arch}-w{width:g}@{resolution}"
    if arch == "tiny":
        return ModelCase(name, arch, width=width, resolution=resolution, classes=classes, dataset="cifar10" if classes == 10 else "imagenet")
    return ModelCase(name, arch, width=width, resolution=resolution, classes=classes)


def make_models(case: ModelCase) -> tuple[nn.Module, nn.Module]:
    """(torchvision's model, ours) in eval mode, with the same weights.

    Stock Small/Large with 3 input channels come from torchvision's own configuration (any width
    multiplier); other cases (1-channel stems, dropped strides, the tiny spec) are built by mnv3 and
    converted with ``to_torchvision``. Ours is always ``from_torchvision`` of torchvision's model.
    The weights depend only on the case (seeded), so two equal cases share their exports.
    """
    from ..model import build_model
    from ..torchvision_compat import from_torchvision, to_torchvision

    torch.manual_seed(case.seed)
    if case.arch in ("small", "large") and case.in_channels == 3 and case.drop_first_strides == 0:
        from torchvision.models import mobilenetv3 as tvm

        setting, last_channel = tvm._mobilenet_v3_conf(f"mobilenet_v3_{case.arch}", width_mult=case.width)
        tv = tvm.MobileNetV3(setting, last_channel, num_classes=case.classes)
    else:
        ours = build_model(
            _spec_for(case.arch),
            num_classes=case.classes,
            in_channels=case.in_channels,
            width_mult=case.width,
            drop_first_strides=case.drop_first_strides,
        )
        tv = to_torchvision(ours)
    _randomize(tv, case.seed)
    tv.eval()
    return tv, from_torchvision(tv).eval()


def _randomize(model: nn.Module, seed: int) -> None:
    """Well-scaled random weights and BatchNorm statistics (He-normal convolutions): logits of order
    one, so the parity check means something, and no activations decay into slow denormals as
    they can with an untrained network's tiny classifier initialisation."""
    from ..torchvision_compat import randomize_weights_

    randomize_weights_(model, seed, bn_mean_std=0.1, bn_scale_range=(0.75, 1.25), bn_bias_std=0.1)
    with torch.no_grad():
        # Damp each residual branch's projection (its BatchNorm's scale), as trained networks do, so
        # the activations do not grow block after block.
        for m in model.modules():
            block = getattr(m, "block", None)
            if isinstance(block, nn.Sequential) and isinstance(block[-1], nn.Sequential) and isinstance(block[-1][-1], nn.BatchNorm2d):
                block[-1][-1].weight.mul_(0.3)


def _wrap(model: nn.Module, case: ModelCase):
    from ..export import RawPixelModel

    mean, std = case.mean_std
    return RawPixelModel(model, mean, std, image_size_in=case.resolution, image_size=case.resolution).eval()


def random_pixels(case: ModelCase, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` uniform random images of the case's shape, raw pixels in [0, 1]: the timing input, and
    the int8 calibration set (the same distribution, so int8 logits stay comparable with fp32)."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, case.in_channels, case.resolution, case.resolution, generator=g)


# ============================================================================ environment


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except (OSError, ValueError):
        pass
    return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], capture_output=True, text=True, cwd=REPO, timeout=10,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},  # read-only: never refresh the index
        )  # fmt: skip
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


class CpuMeter:
    """How busy the machine was during a block, from /proc: cores used by other processes (all
    CPU time but this process's) and cores stolen by the hypervisor, averaged over the block.

    ``with CpuMeter() as m: ...`` then ``m.result`` = {"other_cores": ..., "steal_cores": ...}
    (None values where /proc is unavailable). Export workers are not running while timing.
    """

    def __enter__(self) -> "CpuMeter":
        self.start = self._read()
        return self

    def __exit__(self, *exc) -> None:
        end = self._read()
        self.result: dict[str, float | None] = {"other_cores": None, "steal_cores": None}
        if self.start is None or end is None:
            return
        hz = os.sysconf("SC_CLK_TCK")
        wall = end[0] - self.start[0]
        if wall <= 0:
            return
        busy, own, steal = ((end[i] - self.start[i]) / hz / wall for i in (1, 2, 3))
        self.result = {"other_cores": round(max(0.0, busy - own), 2), "steal_cores": round(steal, 2)}

    @staticmethod
    def _read() -> tuple[float, int, int, int] | None:
        try:
            fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
            user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
            own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
            return time.monotonic(), user + nice + system + irq + softirq, int(own[11]) + int(own[12]), steal
        except (OSError, ValueError, IndexError):
            return None


def _busy_note(meter: CpuMeter, log: Callable[[str], None]) -> str:
    other = meter.result.get("other_cores")
    if other is None:
        return ""
    text = f"other processes used {other:.2f} cores"
    if other > 0.25:
        log(f"[bench]   WARNING: {text} during this block: its numbers are disturbed (best compared within the block)")
    return text


def set_threads(threads: int) -> dict[str, int | None]:
    """Pin torch's intra-op threads and ExecuTorch's threadpool to ``threads``; return the counts
    read back (onnxruntime is given the same count per session)."""
    torch.set_num_threads(threads)
    counts: dict[str, int | None] = {"requested": threads, "torch": torch.get_num_threads(),
                                     "torch_interop": torch.get_num_interop_threads(), "executorch": None,
                                     "onnxruntime": threads}  # fmt: skip
    with contextlib.suppress(Exception):
        from ..export import _quiet_imports

        with _quiet_imports():
            from executorch.extension.pybindings import portable_lib
        if portable_lib._threadpool_get_thread_count() != threads:
            portable_lib._unsafe_reset_threadpool(threads)
        counts["executorch"] = int(portable_lib._threadpool_get_thread_count())
    return counts


def environment(threads: dict[str, Any], device: str = "cpu") -> dict[str, Any]:
    """Where and with what the numbers were measured."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    env = {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable,
        "memory_gb": _memory_gb(),
        "threads": threads,
        "device": device,
        "gpu": torch.cuda.get_device_name() if device.startswith("cuda") and torch.cuda.is_available() else None,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torchvision": _package_version("torchvision"),
            "executorch": _package_version("executorch"),
            "onnxruntime": _package_version("onnxruntime"),
            "onnx": _package_version("onnx"),
            "numpy": _package_version("numpy"),
            "mnv3": _package_version("mnv3"),
        },
        "platform": platform.platform(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": None,
        "load_average_start": _load_average(),
        "thread_environment": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_NUM_THREADS")},
        "command": "python -m mnv3.bench " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith(("bench.py", "bench", os.path.join("bench", "__main__.py"))) else None,
    }
    status = _git("status", "--porcelain", "--untracked-files=no")
    if status is not None:
        env["git_dirty"] = bool(status)
    return env


# ============================================================================ timing


def interleaved_times(
    calls: Mapping[str, Callable[[], Any]],
    *,
    warmup: int = 3,
    max_rounds: int = 60,
    min_rounds: int = 10,
    budget_s: float = 15.0,
    sync: Callable[[], Any] | None = None,
) -> dict[str, list[float]]:
    """Per-call wall times (ms) of each call, measured round-robin.

    Every round calls each contender once, so a load change hits all of them alike; the orders
    cycle through a Williams design (:func:`balanced_orders`): over a cycle every contender sits in
    every position equally often and follows every other contender equally often, so neither
    position nor the previous contender's footprint (freed buffers, caches) favours anyone. Rounds
    continue until ``max_rounds``, or ``budget_s`` seconds once ``min_rounds`` are done. ``sync``
    (e.g. ``torch.cuda.synchronize``) runs inside each timed interval. Times of round r sit at
    index r of every list, so per-round ratios pair calls made moments apart.
    """
    names = list(calls)
    orders = balanced_orders(len(names))
    for _ in range(warmup):
        for name in names:
            calls[name]()
        if sync:
            sync()
    times: dict[str, list[float]] = {name: [] for name in names}
    start = time.perf_counter()
    rounds = 0
    while rounds < max_rounds:
        for name in (names[i] for i in orders[rounds % len(orders)]):
            t0 = time.perf_counter()
            calls[name]()
            if sync:
                sync()
            times[name].append((time.perf_counter() - t0) * 1000.0)
        rounds += 1
        # Stop at the end of a cycle of orders, so the design stays balanced.
        if rounds >= min_rounds and rounds % len(orders) == 0 and time.perf_counter() - start >= budget_s:
            break
    return times


def balanced_orders(n: int) -> list[list[int]]:
    """A Williams design for ``n`` contenders: n orders (2n when n is odd) in which every
    contender takes every position equally often and directly follows every other one equally
    often. n = 2: AB, BA; n = 4: ABDC, BCAD, CDBA, DACB."""
    if n < 1:
        return [[]]
    first, lo, hi = [0], 1, n - 1
    while len(first) < n:
        if len(first) % 2:
            first.append(lo)
            lo += 1
        else:
            first.append(hi)
            hi -= 1
    rows = [[(x + r) % n for x in first] for r in range(n)]
    return rows + [row[::-1] for row in rows] if n % 2 else rows


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default) of already sorted values."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize_times(times: Sequence[float]) -> dict[str, float | int]:
    """median, p90, mean, min (ms) and n of per-call times."""
    values = sorted(times)
    return {
        "median_ms": _percentile(values, 50),
        "p90_ms": _percentile(values, 90),
        "mean_ms": sum(values) / len(values) if values else math.nan,
        "min_ms": values[0] if values else math.nan,
        "n": len(values),
    }


def paired_ratio(times: Sequence[float], reference: Sequence[float], *, seed: int = 0, resamples: int = 2000) -> dict[str, Any]:
    """Median of the per-round ratios times[r] / reference[r] and a bootstrap 95% interval of it."""
    import numpy as np

    ratios = np.asarray(times, dtype=float) / np.asarray(reference, dtype=float)
    if len(ratios) == 0:
        return {"median": math.nan, "ci95": [math.nan, math.nan]}
    rng = np.random.default_rng(seed)
    boot = np.median(ratios[rng.integers(0, len(ratios), size=(resamples, len(ratios)))], axis=1)
    return {"median": float(np.median(ratios)), "ci95": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))]}


def _round(value: Any, digits: int = 6) -> Any:
    """Floats to ``digits`` significant digits (JSON stays readable, small differences survive)."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}") if math.isfinite(value) else None
    if isinstance(value, list):
        return [_round(v, digits) for v in value]
    if isinstance(value, dict):
        return {k: _round(v, digits) for k, v in value.items()}
    return value


# ============================================================================ exports (cached)


@dataclass
class Artefact:
    """One exported file, from this run or from the cache."""

    fmt: str
    batch: int | None
    path: Path | None = None
    export_seconds: float | None = None
    cached: bool = False
    size_bytes: int | None = None
    fully_delegated: bool | None = None
    non_delegated_compute: dict[str, int] = field(default_factory=dict)
    note: str = ""
    error: str | None = None

    def to_json(self, setting: str) -> dict[str, Any]:
        return _round({
            "setting": setting, "format": self.fmt, "batch": self.batch, "export_seconds": self.export_seconds,
            "cached": self.cached, "size_bytes": self.size_bytes, "fully_delegated": self.fully_delegated,
            "non_delegated_compute": self.non_delegated_compute, "note": self.note, "error": self.error,
        })  # fmt: skip


_SUFFIX = {"pte": ".pte", "pte-int8": ".pte", "onnx": ".onnx", "ptl": ".ptl"}


def _weights_digest(module: nn.Module) -> str:
    """sha256 of the state dict (names, dtypes, shapes, bytes) and the model's config."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    inner = getattr(module, "model", module)
    digest.update(json.dumps(getattr(inner, "config", {}), sort_keys=True, default=str).encode())
    digest.update(json.dumps([getattr(module, "image_size_in", None), getattr(module, "image_size", None)]).encode())
    return digest.hexdigest()


def _export_versions() -> dict[str, str | None]:
    """The exporting libraries' versions and a digest of the mnv3 code that shapes the graph."""
    versions = {p: _package_version(p) for p in ("torch", "executorch", "torchao", "onnx", "onnxscript")}
    code = hashlib.sha256()
    for name in ("export.py", "layers.py", "model.py"):
        with contextlib.suppress(OSError):
            code.update((Path(__file__).resolve().parents[1] / name).read_bytes())
    versions["mnv3_code"] = code.hexdigest()[:16]
    return versions


class ArtefactStore:
    """Exports the files the benchmark needs, in parallel worker processes, with a content cache.

    ``request`` registers a (format, model, batch); ``build`` exports what the cache lacks and
    returns every requested :class:`Artefact`. The cache key covers the weights, the model config,
    the input shape, the calibration, the format and the exporting libraries' versions.
    """

    def __init__(self, cache_dir: Path | None, *, workers: int = 2, calibration_images: int = 16, log: Callable[[str], None] = print):
        self._tmp = None
        if cache_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="mnv3-bench-")
            cache_dir = Path(self._tmp.name)
        self.cache_dir = Path(cache_dir)
        self.workers = max(1, workers)
        self.calibration_images = calibration_images
        self.log = log
        self._requests: dict[str, dict[str, Any]] = {}
        self._digests: dict[int, str] = {}
        self.artefacts: dict[str, Artefact] = {}

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()

    def _key(self, fmt: str, wrapper: nn.Module, case: ModelCase, batch: int | None) -> str:
        digest = self._digests.get(id(wrapper))
        if digest is None:
            digest = self._digests[id(wrapper)] = _weights_digest(wrapper)
        payload = {
            "cache_version": _CACHE_VERSION, "fmt": fmt, "batch": batch, "weights": digest,
            "shape": [case.in_channels, case.resolution, case.resolution], "versions": _export_versions(),
            "calibration": [self.calibration_images, case.seed] if fmt == "pte-int8" else None,
        }  # fmt: skip
        key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]
        return f"{fmt}-{case.arch}-w{case.width:g}-{case.resolution}px-b{batch if batch else 'any'}-{key}"

    def request(self, fmt: str, wrapper: nn.Module, case: ModelCase, batch: int | None) -> str:
        """Register an export; returns its key (the same key for the same content)."""
        batch = None if fmt in ("onnx", "ptl") else batch
        key = self._key(fmt, wrapper, case, batch)
        self._requests.setdefault(key, {"fmt": fmt, "wrapper": wrapper, "case": case, "batch": batch})
        return key

    def _folder(self, key: str) -> Path:
        return self.cache_dir / key

    def _from_cache(self, key: str, req: dict[str, Any]) -> Artefact | None:
        folder = self._folder(key)
        meta_path = folder / "meta.json"
        model = folder / f"model{_SUFFIX[req['fmt']]}"
        if not (meta_path.is_file() and model.is_file()):
            return None
        try:
            meta = json.loads(meta_path.read_text())
        except ValueError:
            return None
        return Artefact(
            req["fmt"], req["batch"], model, meta.get("export_seconds"), True, model.stat().st_size,
            meta.get("fully_delegated"), meta.get("non_delegated_compute", {}), meta.get("note", ""),
        )  # fmt: skip

    def build(self) -> dict[str, Artefact]:
        missing: dict[str, dict[str, Any]] = {}
        for key, req in self._requests.items():
            if key in self.artefacts:
                continue
            hit = self._from_cache(key, req)
            if hit is not None:
                self.artefacts[key] = hit
            else:
                missing[key] = req
        if not missing:
            return self.artefacts
        # Jobs: one per file, except int8, which quantizes once per model for all its batches.
        jobs: list[tuple[str, list[str]]] = []
        int8: dict[str, list[str]] = {}
        for key, req in missing.items():
            if req["fmt"] == "pte-int8":
                int8.setdefault(self._digests[id(req["wrapper"])], []).append(key)
            else:
                jobs.append((req["fmt"], [key]))
        jobs += [("pte-int8", keys) for keys in int8.values()]
        cost = {"pte-int8": 3, "pte": 2, "onnx": 1, "ptl": 1}
        jobs.sort(key=lambda job: -cost[job[0]] * len(job[1]))  # longest first: better packing
        self.log(f"[bench] exporting {len(missing)} file(s) in {len(jobs)} job(s), {min(self.workers, len(jobs))} process(es); "
                 f"cache: {self.cache_dir}")  # fmt: skip
        start = time.perf_counter()
        payloads = []
        for fmt, keys in jobs:
            first = missing[keys[0]]
            calibration = random_pixels(first["case"], self.calibration_images, seed=first["case"].seed + 100) if fmt == "pte-int8" else None
            targets = [(missing[k]["batch"], str(self._folder(k) / f"model{_SUFFIX[fmt]}")) for k in keys]
            payloads.append((keys, (fmt, first["wrapper"], targets, calibration)))
        if self.workers == 1 or len(payloads) == 1:
            results = [(keys, _export_job(*args)) for keys, args in payloads]
        else:
            ctx = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(max_workers=min(self.workers, len(payloads)), mp_context=ctx) as pool:
                futures = [(keys, pool.submit(_export_job, *args)) for keys, args in payloads]
                results = []
                for keys, fut in futures:
                    try:
                        results.append((keys, fut.result()))
                    except Exception as err:  # noqa: BLE001 - a broken worker is reported per file
                        results.append((keys, [{"error": f"{type(err).__name__}: {err}"} for _ in keys]))
        for keys, metas in results:
            for key, meta in zip(keys, metas):
                req = missing[key]
                path = self._folder(key) / f"model{_SUFFIX[req['fmt']]}"
                if meta.get("error"):
                    self.artefacts[key] = Artefact(req["fmt"], req["batch"], error=meta["error"])
                    self.log(f"[bench]   FAILED {key}: {meta['error'].splitlines()[0]}")
                    continue
                (self._folder(key) / "meta.json").write_text(json.dumps(meta, indent=1))
                self.artefacts[key] = Artefact(
                    req["fmt"], req["batch"], path, meta["export_seconds"], False, path.stat().st_size,
                    meta.get("fully_delegated"), meta.get("non_delegated_compute", {}), meta.get("note", ""),
                )  # fmt: skip
        self.log(f"[bench] exports done in {time.perf_counter() - start:.1f} s")
        return self.artefacts


def _export_job(fmt: str, wrapper: nn.Module, targets: list[tuple[int | None, str]], calibration: torch.Tensor | None) -> list[dict[str, Any]]:
    """Export ``wrapper`` in ``fmt`` at each (batch, path) of ``targets``; runs in a worker process.

    Returns one metadata dict per target: export_seconds, delegation (ExecuTorch), note, or error.
    """
    from .. import export as ex

    if multiprocessing.parent_process() is not None:
        torch.set_num_threads(1)  # two workers share the cores; lowering is single-threaded anyway
    metas: list[dict[str, Any]] = []
    quantized = None
    for batch, path in targets:
        start = time.perf_counter()
        meta: dict[str, Any] = {"format": fmt, "batch": batch, "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            report = None
            if fmt == "pte":
                report = ex.export_pte(wrapper, path, batch_size=batch, require_full_delegation=False)
            elif fmt == "pte-int8":
                if quantized is None:
                    quantized = ex.quantize_int8(wrapper, calibration, batch_size=min(16, len(calibration)))
                    meta["quantize_seconds"] = round(time.perf_counter() - start, 2)
                report = ex.export_pte_int8(quantized, path, wrapper.input_shape(batch), require_full_delegation=False)
                meta["note"] = f"PT2E static int8 (XNNPACKQuantizer, per-channel), calibrated on {len(calibration)} random images"
            elif fmt == "onnx":
                meta["note"] = ex.export_onnx(wrapper, path, wrapper.input_shape(1))
            elif fmt == "ptl":
                meta["note"] = "TorchScript lite (" + ex.export_ptl(wrapper, path, wrapper.input_shape(1)) + ")"
            else:
                raise ValueError(f"unknown format {fmt!r}")
            meta["export_seconds"] = round(time.perf_counter() - start, 2)  # the first int8 file includes quantization
            if report is not None:
                meta["fully_delegated"] = bool(report["fully_delegated"])
                meta["non_delegated_compute"] = report["non_delegated_compute"]
        except Exception as err:  # noqa: BLE001 - reported per file, the other contenders still run
            meta = {"error": f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=4)}"}
        metas.append(meta)
    return metas


# ============================================================================ inference


def _eager_runner(module: nn.Module, channels_last: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    if channels_last:
        module = module.to(memory_format=torch.channels_last)

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            return module(x)

    return run


def _exported_runner(contender: str, artefact: Artefact, threads: int) -> Callable[[torch.Tensor], torch.Tensor]:
    from .. import export as ex

    if contender.startswith("executorch"):
        return ex.PteRunner(artefact.path)
    if contender == "onnxruntime":
        return ex.OnnxRunner(artefact.path, threads=threads)
    if contender == "lite_interpreter":
        return ex.PtlRunner(artefact.path)
    raise ValueError(contender)


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows)


def _fmt_ms(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else (f"{value:.3f}" if value < 10 else f"{value:.1f}")


def run_inference(cfg: BenchConfig, store: ArtefactStore, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The inference suite: every contender, every setting and batch, round-robin timed."""
    prepared = prepare_inference(cfg, store)
    return measure_inference(cfg, prepared, store.build(), log)


def prepare_inference(cfg: BenchConfig, store: ArtefactStore) -> list[tuple]:
    """Build each setting's two models and request its exported files from ``store``."""
    prepared = []
    for name in cfg.settings:
        case = inference_case(name)
        tv, ours = make_models(case)
        tv_w, ours_w = _wrap(tv, case), _wrap(ours, case)
        keys = {}
        for contender, fmt in CONTENDER_FORMATS.items():
            for batch in cfg.batches:
                keys[(contender, batch)] = store.request(fmt, ours_w, case, batch)
        prepared.append((case, tv_w, ours_w, keys))
    return prepared


def measure_inference(cfg: BenchConfig, prepared: list[tuple], artefacts: Mapping[str, Artefact], log: Callable[[str], None] = print) -> dict[str, Any]:
    results, exports = [], []
    for case, tv_w, ours_w, keys in prepared:
        seen = set()
        for key in keys.values():
            if key not in seen:
                seen.add(key)
                exports.append(artefacts[key].to_json(case.name))
        for batch in cfg.batches:
            results += _time_setting(cfg, case, batch, tv_w, ours_w, {c: artefacts[keys[(c, batch)]] for c in CONTENDER_FORMATS}, log)
    return {"results": results, "exports": exports, "targets": inference_targets(results)}


def _time_setting(cfg, case, batch, tv_w, ours_w, artefacts: dict[str, Artefact], log) -> list[dict[str, Any]]:
    x = random_pixels(case, batch, seed=1)
    runners: dict[str, Callable] = {
        "torchvision_eager": _eager_runner(tv_w, cfg.eager_channels_last),
        "ours_eager": _eager_runner(ours_w, cfg.eager_channels_last),
    }
    errors: dict[str, str] = {}
    for contender, artefact in artefacts.items():
        if artefact.error:
            errors[contender] = f"export failed: {artefact.error.splitlines()[0]}"
            continue
        try:
            runners[contender] = _exported_runner(contender, artefact, cfg.threads)
        except Exception as err:  # noqa: BLE001
            errors[contender] = f"cannot load {artefact.path.name}: {type(err).__name__}: {err}"
    # Parity: each contender once on the same input, against torchvision's logits.
    reference = runners[REFERENCE](x).float()
    diffs: dict[str, float] = {}
    for name in list(runners):
        try:
            out = runners[name](x).float()
            if out.shape != reference.shape:
                raise ValueError(f"output shape {tuple(out.shape)}, expected {tuple(reference.shape)}")
            diffs[name] = float((out - reference).abs().max())
        except Exception as err:  # noqa: BLE001
            errors[name] = f"run failed: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            del runners[name]
    order = [c for c in CONTENDERS if c in runners]
    start = time.perf_counter()
    load_before = _load_average()
    with CpuMeter() as meter:
        times = interleaved_times(
            {c: (lambda r=runners[c]: r(x)) for c in order},
            warmup=cfg.warmup, max_rounds=cfg.repeats, min_rounds=cfg.min_rounds, budget_s=cfg.budget_s,
        )  # fmt: skip
    seconds = time.perf_counter() - start
    ref_stats = summarize_times(times[REFERENCE])
    profile = None
    if "ours_eager" in times and summarize_times(times["ours_eager"])["median_ms"] > TARGETS["eager_ratio_max"] * ref_stats["median_ms"]:
        # Over the target: say where the time goes, op by op, against torchvision's.
        profile = eager_profile_diff(runners[REFERENCE], runners["ours_eager"], x)
    rows = []
    for contender in CONTENDERS:
        row: dict[str, Any] = {"contender": contender, "label": CONTENDER_LABELS[contender], **case.describe(), "batch": batch,
                               "threads": cfg.threads, "eager_layout": "channels_last" if cfg.eager_channels_last else "contiguous"}
        if contender in times:
            stats = summarize_times(times[contender])
            pair = paired_ratio(times[contender], times[REFERENCE])
            row.update(stats)
            row.update(
                ratio_to_torchvision_eager=stats["median_ms"] / ref_stats["median_ms"],
                paired_ratio_median=pair["median"],
                paired_ratio_ci95=pair["ci95"],
                images_per_s=batch * 1000.0 / stats["median_ms"],
                max_abs_diff_vs_torchvision=diffs.get(contender),
                logit_scale=float(reference.abs().max()),
                times_ms=times[contender],
                error=None,
            )
            if contender == "ours_eager" and profile is not None:
                row["profile_diff_vs_torchvision"] = profile
        else:
            row.update(median_ms=None, p90_ms=None, mean_ms=None, min_ms=None, n=0, ratio_to_torchvision_eager=None,
                       paired_ratio_median=None, paired_ratio_ci95=None, images_per_s=None,
                       max_abs_diff_vs_torchvision=None, logit_scale=None, times_ms=[], error=errors.get(contender, "not run"))  # fmt: skip
        row["block_seconds"] = seconds
        row["load_average"] = [load_before, _load_average()]
        row["cpu_other_cores"] = meter.result["other_cores"]
        row["cpu_steal_cores"] = meter.result["steal_cores"]
        rows.append(_round(row))
    n = len(times[REFERENCE])
    lines = [("contender", "median ms", "p90 ms", "ratio to torchvision eager", "max |diff|")]
    for row in rows:
        ratio = row["ratio_to_torchvision_eager"]
        lines.append((row["label"], _fmt_ms(row["median_ms"]), _fmt_ms(row["p90_ms"]),
                      "-" if ratio is None else f"{ratio:.3f}",
                      row["error"][:60] if row["error"] else f"{row['max_abs_diff_vs_torchvision']:.1e}"))  # fmt: skip
    log(f"[bench] {case.name} ({case.in_channels}x{case.resolution}x{case.resolution}, {case.classes} classes), batch {batch}: "
        f"{n} rounds in {seconds:.1f} s; {_busy_note(meter, log)}")  # fmt: skip
    log(_table(lines))
    return rows


def eager_profile_diff(reference: Callable, ours: Callable, x: Any, *, calls: int = 2, top: int = 6) -> list[dict[str, Any]]:
    """Per op, our model's self CPU time and call count per call minus torchvision's.

    Returns the ``top`` ops by time difference plus every op whose count differs, as
    [{"op", "ours_ms", "torchvision_ms", "diff_ms", "ours_count", "torchvision_count"}]. Counts
    are exact where times are noisy: ``aten::clamp_min`` (ReLU) in one model against
    ``aten::clamp_min_`` (in place) in the other, for instance.
    """
    from torch.profiler import ProfilerActivity, profile

    os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # no profiler chatter on stderr
    per_op: dict[str, list[float]] = {}
    for i, run in enumerate((reference, ours)):
        run(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(calls):
                run(x)
        for event in prof.key_averages():
            entry = per_op.setdefault(event.key, [0.0, 0.0, 0.0, 0.0])
            entry[i] += event.self_cpu_time_total / 1000.0 / calls
            entry[2 + i] += event.count / calls
    rows = [{"op": op, "ours_ms": v[1], "torchvision_ms": v[0], "diff_ms": v[1] - v[0], "ours_count": v[3], "torchvision_count": v[2]}
            for op, v in per_op.items()]  # fmt: skip
    rows.sort(key=lambda r: -abs(r["diff_ms"]))
    keep = rows[:top] + [r for r in rows[top:] if r["ours_count"] != r["torchvision_count"]]
    return _round(keep, 4)


def profile_note(diff: Sequence[Mapping[str, Any]]) -> str:
    """One sentence from :func:`eager_profile_diff`: the ops only one model runs, then time differences."""
    only_ours = [d for d in diff if d.get("ours_count") and not d.get("torchvision_count")]
    only_tv = [d for d in diff if d.get("torchvision_count") and not d.get("ours_count")]
    parts = []
    if only_ours or only_tv:
        parts.append("ops only ours runs (per call): " + (", ".join(f"{d['op']} x{d['ours_count']:g}" for d in only_ours) or "none")
                     + "; only torchvision: " + (", ".join(f"{d['op']} x{d['torchvision_count']:g}" for d in only_tv) or "none"))  # fmt: skip
        names = {d["op"] for d in only_tv}
        if any(d["op"] + "_" in names for d in only_ours):
            parts.append("torchvision runs in place (op_) what ours runs out of place (op), allocating and touching a fresh output each time")
    timed = sorted(diff, key=lambda d: -abs(d["diff_ms"]))[:4]
    parts.append("largest self-CPU-time differences per call (ours - torchvision): " + ", ".join(f"{d['op']} {d['diff_ms']:+.1f} ms" for d in timed))
    return "; ".join(parts)


def _index(results: Iterable[dict[str, Any]], key: str = "contender") -> dict[tuple, dict[str, Any]]:
    return {(r["setting"], r["batch"], r[key]): r for r in results}


def _within_noise(ci: Sequence[float] | None, threshold: float) -> bool | None:
    """Whether the paired ratios' 95% interval contains the threshold (None without an interval)."""
    if not ci or ci[0] is None:
        return None
    return ci[0] <= threshold <= ci[1]


def _ci_note(ci: Sequence[float] | None, threshold: float) -> str:
    if not ci or ci[0] is None:
        return ""
    lo, hi = ci
    if lo <= threshold <= hi:
        where = f"which contains {threshold:g}: the difference is within this machine's noise"
    else:
        where = f"entirely {'below' if hi < threshold else 'above'} {threshold:g}"
    return f"paired per-round ratios: 95% interval [{lo:.3f}, {hi:.3f}], {where}"


def inference_targets(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's inference targets, one row per setting (and batch), with a verdict and a note."""
    index = _index(results)
    rows = []
    for (setting, batch, contender), r in index.items():
        if contender != "ours_eager" or r["median_ms"] is None:
            continue
        limit = TARGETS["eager_ratio_max"]
        value = r["ratio_to_torchvision_eager"]
        met = value <= limit
        note = _ci_note(r["paired_ratio_ci95"], limit)
        if not met and r.get("profile_diff_vs_torchvision"):
            note += "; " + profile_note(r["profile_diff_vs_torchvision"])
        rows.append({
            "target": "eager: ours / torchvision latency <= 1.05", "setting": setting, "batch": batch,
            "value": value, "threshold": limit, "met": met,
            "within_noise": _within_noise(r["paired_ratio_ci95"], limit), "note": note,
        })  # fmt: skip
    for (setting, batch, contender), r in index.items():
        if contender != "executorch_fp32" or batch != 1:
            continue
        ours = index.get((setting, batch, "ours_eager"))
        if not ours or r["median_ms"] is None or ours["median_ms"] is None:
            continue
        speedup = ours["median_ms"] / r["median_ms"]
        limit = TARGETS["executorch_speedup_min"]
        note = f"ExecuTorch fp32 {r['median_ms']:.3f} ms against our eager {ours['median_ms']:.3f} ms"
        if speedup < limit:
            note += "; " + _executorch_shortfall(r, ours, index)
        rows.append({"target": "ExecuTorch fp32 >= 3x faster than our eager model (batch 1)", "setting": setting,
                     "batch": 1, "value": speedup, "threshold": limit, "met": speedup >= limit,
                     "within_noise": None, "note": note})  # fmt: skip
    return _round(rows)


def _executorch_shortfall(et: dict[str, Any], ours: dict[str, Any], index: Mapping[tuple, dict[str, Any]]) -> str:
    """Why ExecuTorch fp32 is less than 3x faster, from the other contenders of the same block."""
    key = (et["setting"], et["batch"])
    onnx = index.get((*key, "onnxruntime"))
    int8 = index.get((*key, "executorch_int8"))
    parts = []
    if onnx and onnx["median_ms"]:
        parts.append(f"ONNX Runtime takes {onnx['median_ms']:.3f} ms ({ours['median_ms'] / onnx['median_ms']:.2f}x faster than eager)")
        if onnx["median_ms"] >= 0.85 * et["median_ms"]:
            parts.append("so ExecuTorch is as fast as the other optimized runtime and the gap to 3x is eager PyTorch's "
                         f"({ours.get('eager_layout')} oneDNN convolutions, {ours.get('threads')} thread(s)) being closer "
                         "to optimized kernels on this CPU than the target assumes")  # fmt: skip
        else:
            parts.append("so ExecuTorch leaves speed on the table here")
    if int8 and int8["median_ms"]:
        parts.append(f"ExecuTorch int8 is {ours['median_ms'] / int8['median_ms']:.2f}x faster than eager")
    return "; ".join(parts)


# ============================================================================ training


def run_training(cfg: BenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The training suite: our model against torchvision's, alternating steps of the same loop."""
    from ..data import dataset_info, make_synthetic
    from ..experiments import get_experiment
    from ..torchvision_compat import to_torchvision
    from ..model import build_model
    from ..train import make_optimizer, train_step

    device = torch.device(cfg.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    results = []
    for name in cfg.train_settings:
        case = training_case(name)
        exp = get_experiment(case.experiment, "quick") if case.experiment else get_experiment("mnist_small", "quick")
        info = dataset_info(case.dataset)
        torch.manual_seed(case.seed)
        ours = build_model(_spec_for(case.arch), num_classes=case.classes, in_channels=case.in_channels,
                           width_mult=case.width, dropout=exp.dropout, drop_first_strides=case.drop_first_strides)  # fmt: skip
        tv = to_torchvision(ours)
        models = {"torchvision": tv, "ours": ours}
        images, labels = make_synthetic(cfg.train_batch * 4, num_classes=case.classes, channels=case.in_channels, size=case.resolution)
        images, labels = images.to(device), labels.to(device)
        use_amp = device.type == "cuda" and exp.amp != "off"
        amp_dtype = torch.float16 if exp.amp == "fp16" else torch.bfloat16

        def autocast(device=device, amp_dtype=amp_dtype, use_amp=use_amp):
            return torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=use_amp)

        steps, counters = {}, {}
        for key, model in models.items():
            for m in model.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.momentum = exp.bn_momentum
            model.to(device).train()
            if exp.channels_last:
                model.to(memory_format=torch.channels_last)
            optimizer = make_optimizer(model, exp)
            scaler = torch.amp.GradScaler("cuda", enabled=use_amp and exp.amp == "fp16")
            counter = {"i": 0}

            def step(model=model, optimizer=optimizer, scaler=scaler, counter=counter):
                # mnv3.train's own step, not a copy, so these numbers describe training.
                i = counter["i"] % 4
                counter["i"] += 1
                idx = slice(i * cfg.train_batch, (i + 1) * cfg.train_batch)
                counter["loss"], _ = train_step(model, optimizer, scaler, images[idx], labels[idx], info, exp,
                                                image_size=case.resolution, autocast=autocast)  # fmt: skip

            steps[key] = step
            counters[key] = counter
        sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
        load_before = _load_average()
        start = time.perf_counter()
        with CpuMeter() as meter:
            times = interleaved_times(steps, warmup=cfg.train_warmup, max_rounds=cfg.train_repeats,
                                      min_rounds=cfg.train_min_rounds, budget_s=cfg.train_budget_s, sync=sync)  # fmt: skip
        seconds = time.perf_counter() - start
        tv_stats = summarize_times(times["torchvision"])
        profile = None
        slower = paired_ratio(times["torchvision"], times["ours"])["ci95"][1] < TARGETS["training_ratio_min"]
        if slower and device.type == "cpu":
            # Clearly slower than torchvision: say where the time goes, op by op (forward and backward).
            profile = eager_profile_diff(lambda _: steps["torchvision"](), lambda _: steps["ours"](), None, calls=1)
        lines = [("model", "median step ms", "p90 ms", "images/s", "ratio to torchvision")]
        for key in TRAIN_CONTENDERS:
            stats = summarize_times(times[key])
            pair = paired_ratio(times["torchvision"], times[key])  # > 1: ours is faster
            row = {
                "contender": key, "label": "torchvision" if key == "torchvision" else "mnv3", **case.describe(),
                "batch": cfg.train_batch, "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
                "amp": exp.amp if use_amp else "off", "channels_last": exp.channels_last,
                "median_step_ms": stats["median_ms"], "p90_step_ms": stats["p90_ms"], "mean_step_ms": stats["mean_ms"],
                "n": stats["n"], "images_per_s": cfg.train_batch * 1000.0 / stats["median_ms"],
                "images_per_s_mean": cfg.train_batch * 1000.0 / stats["mean_ms"],
                "ratio_to_torchvision": tv_stats["median_ms"] / stats["median_ms"],
                "paired_ratio_median": pair["median"], "paired_ratio_ci95": pair["ci95"],
                "final_loss": float(counters[key]["loss"]),  # finite: the arithmetic stayed normal
                **({"profile_diff_vs_torchvision": profile} if key == "ours" and profile is not None else {}),
                "times_ms": times[key], "block_seconds": seconds, "load_average": [load_before, _load_average()],
                "cpu_other_cores": meter.result["other_cores"], "cpu_steal_cores": meter.result["steal_cores"],
            }  # fmt: skip
            results.append(_round(row))
            lines.append((row["label"], _fmt_ms(row["median_step_ms"]), _fmt_ms(row["p90_step_ms"]),
                          f"{row['images_per_s']:.0f}", f"{row['ratio_to_torchvision']:.3f}"))  # fmt: skip
        log(f"[bench] training {case.name} ({case.in_channels}x{case.resolution}x{case.resolution}, "
            f"drop_first_strides {case.drop_first_strides}, batch {cfg.train_batch}, {device}): "
            f"{len(times['ours'])} rounds in {seconds:.1f} s; {_busy_note(meter, log)}")  # fmt: skip
        log(_table(lines))
    return {"results": results, "targets": training_targets(results),
            "step": "mnv3.train.train_step: prepare_batch (augmentation) + forward + label-smoothed cross-entropy + backward + SGD (Nesterov)"}  # fmt: skip


def training_targets(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        if r["contender"] != "ours":
            continue
        limit = TARGETS["training_ratio_min"]
        value = r["ratio_to_torchvision"]
        met = value >= limit
        note = _ci_note(r["paired_ratio_ci95"], limit)
        if not met and r.get("profile_diff_vs_torchvision"):
            note += "; " + profile_note(r["profile_diff_vs_torchvision"])
        rows.append({"target": "training: ours / torchvision images/s >= 1", "setting": r["setting"], "batch": r["batch"],
                     "device": r["device"], "value": value, "threshold": limit, "met": met,
                     "within_noise": _within_noise(r["paired_ratio_ci95"], limit), "note": note})  # fmt: skip
    return _round(rows)


# ============================================================================ frontier


def find_trained_runs(runs_dir: str | Path | None) -> list[dict[str, Any]]:
    """Every finished run under ``runs_dir`` (config.json + test.json): arch, width, accuracy."""
    if runs_dir is None or not Path(runs_dir).is_dir():
        return []
    found = []
    for config_path in sorted(Path(runs_dir).glob("*/config.json")):
        test_path = config_path.parent / "test.json"
        if not test_path.is_file():
            continue
        try:
            config, test = json.loads(config_path.read_text()), json.loads(test_path.read_text())
            model = config["model"]
            arch = str(model["spec"]["name"]).removeprefix("mobilenet_v3_")
            found.append({
                "experiment": config.get("experiment", config_path.parent.name), "run_dir": str(config_path.parent),
                "arch": arch, "width": float(model.get("width_mult", 1.0)), "dataset": config.get("dataset"),
                "image_size": config.get("image_size"), "drop_first_strides": model.get("drop_first_strides", 0),
                "test_accuracy": float(test["test_accuracy"]), "epochs": test.get("epochs"),
                "profile": config.get("profile"),
            })  # fmt: skip
        except (KeyError, ValueError, TypeError):
            continue
    return found


def run_frontier(cfg: BenchConfig, store: ArtefactStore, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Width multipliers of each arch: params and MACs against ExecuTorch fp32 batch-1 latency."""
    points = prepare_frontier(cfg, store)
    return measure_frontier(cfg, points, store.build(), log)


def prepare_frontier(cfg: BenchConfig, store: ArtefactStore) -> list[dict[str, Any]]:
    """Each (arch, width): parameters and MACs, and a request for its batch-1 fp32 program."""
    from ..summary import summarize, totals

    points = []
    for arch in cfg.frontier_archs:
        for width in cfg.widths:
            case = frontier_case(arch, width, cfg.frontier_resolution, cfg.frontier_classes)
            _, ours = make_models(case)
            wrapper = _wrap(ours, case)
            at = totals(summarize(ours, cfg.mac_resolution))
            at_latency = at if cfg.frontier_resolution == cfg.mac_resolution else totals(summarize(ours, cfg.frontier_resolution))
            key = store.request("pte", wrapper, case, 1)
            points.append({"case": case, "key": key, "params": at["params"], "macs": at["macs"], "macs_at_latency_resolution": at_latency["macs"]})
    return points


def measure_frontier(cfg: BenchConfig, points: list[dict[str, Any]], artefacts: Mapping[str, Artefact], log: Callable[[str], None] = print) -> dict[str, Any]:
    from ..export import PteRunner

    runs = find_trained_runs(cfg.runs_dir)
    calls, errors = {}, {}
    channels = points[0]["case"].in_channels if points else 3
    x = torch.rand(1, channels, cfg.frontier_resolution, cfg.frontier_resolution, generator=torch.Generator().manual_seed(2))
    for p in points:
        art = artefacts[p["key"]]
        if art.error:
            errors[p["case"].name] = art.error.splitlines()[0]
            continue
        runner = PteRunner(art.path)
        calls[p["case"].name] = lambda r=runner: r(x)
    load_before = _load_average()
    start = time.perf_counter()
    with CpuMeter() as meter:
        times = interleaved_times(calls, warmup=cfg.warmup, max_rounds=cfg.frontier_repeats, min_rounds=cfg.min_rounds,
                                  budget_s=cfg.frontier_budget_s) if calls else {}  # fmt: skip
    seconds = time.perf_counter() - start
    rows = []
    lines = [("model", "params", "MACs (M)", "median ms", "p90 ms", "accuracy (runs)")]
    for p in points:
        case, art = p["case"], artefacts[p["key"]]
        stats = summarize_times(times[case.name]) if case.name in times else {"median_ms": None, "p90_ms": None, "mean_ms": None, "min_ms": None, "n": 0}
        accuracy = [r for r in runs if r["arch"] == case.arch and abs(r["width"] - case.width) < 1e-9]
        paper = PAPER_TABLE3.get((case.arch, case.width)) if cfg.frontier_classes == 1000 and cfg.mac_resolution == 224 else None
        row = {
            "contender": "executorch_fp32", **case.describe(), "batch": 1, "params": p["params"], "macs": p["macs"],
            "mac_resolution": cfg.mac_resolution, "macs_at_latency_resolution": p["macs_at_latency_resolution"],
            **stats, "times_ms": times.get(case.name, []), "accuracy": accuracy, "paper": paper,
            "export": art.to_json(case.name), "error": errors.get(case.name),
            "block_seconds": seconds, "load_average": [load_before, _load_average()],
            "cpu_other_cores": meter.result["other_cores"], "cpu_steal_cores": meter.result["steal_cores"],
        }  # fmt: skip
        rows.append(_round(row))
        acc = ", ".join(f"{a['experiment']} {100 * a['test_accuracy']:.1f}%" for a in accuracy) or "-"
        lines.append((case.name, f"{p['params']:,}", f"{p['macs'] / 1e6:.1f}", _fmt_ms(stats["median_ms"]), _fmt_ms(stats["p90_ms"]), acc))
    log(f"[bench] frontier: ExecuTorch fp32, batch 1, {cfg.frontier_resolution}x{cfg.frontier_resolution}, "
        f"{len(next(iter(times.values()), []))} rounds in {seconds:.1f} s; {_busy_note(meter, log)}")  # fmt: skip
    log(_table(lines))
    return {"results": rows, "runs_dir": str(cfg.runs_dir) if cfg.runs_dir else None, "trained_runs": runs}


# ============================================================================ the whole run


def _document(suite: str, cfg: BenchConfig, env: dict[str, Any], body: dict[str, Any], seconds: float) -> dict[str, Any]:
    env = {**env, "load_average_end": _load_average()}
    return {"schema": SCHEMA, "version": SCHEMA_VERSION, "suite": suite, "environment": env, "config": cfg.to_json(),
            "targets_definition": TARGETS, "seconds": round(seconds, 1), **body}  # fmt: skip


def run(cfg: BenchConfig, log: Callable[[str], None] = print) -> dict[str, Path]:
    """Run the configured suites; write one JSON per suite into ``cfg.out``; return their paths."""
    from ..files import write_json_atomic

    unknown = [s for s in cfg.suites if s not in SUITES]
    if unknown:
        raise ValueError(f"unknown suite(s) {', '.join(unknown)}; valid: {', '.join(SUITES)}")
    if cfg.threads < 1:
        raise ValueError("threads must be at least 1")
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {cfg.device}: CUDA is not available on this machine")
    for name in cfg.settings:
        inference_case(name)  # fail on a bad name before any work
    for name in cfg.train_settings:
        training_case(name)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    threads = set_threads(cfg.threads)
    log(f"[bench] threads: {threads}; suites: {', '.join(cfg.suites)}; profile {cfg.profile}; out {out}")
    env = environment(threads, cfg.device)
    store = ArtefactStore(cfg.cache_dir, workers=cfg.export_workers, calibration_images=cfg.calibration_images, log=log)
    written: dict[str, Path] = {}
    total = time.perf_counter()
    try:
        # All exports first, in one pool of worker processes; then the measurements, one at a time.
        prepared = {}
        if "inference" in cfg.suites:
            prepared["inference"] = prepare_inference(cfg, store)
        if "frontier" in cfg.suites:
            prepared["frontier"] = prepare_frontier(cfg, store)
        start = time.perf_counter()
        artefacts = store.build() if prepared else {}
        export_seconds = round(time.perf_counter() - start, 1)
        for suite in cfg.suites:
            start = time.perf_counter()
            if suite == "inference":
                body = measure_inference(cfg, prepared["inference"], artefacts, log)
                name = "inference"
            elif suite == "training":
                body = run_training(cfg, log)
                name = "training_gpu" if cfg.device.startswith("cuda") else "training"
            else:
                body = measure_frontier(cfg, prepared["frontier"], artefacts, log)
                name = "frontier"
            if suite != "training":
                body["export_phase_seconds"] = export_seconds  # shared by the inference and frontier suites
            path = out / f"{name}.json"
            write_json_atomic(path, _document(suite, cfg, env, body, time.perf_counter() - start))
            written[name] = path
            log(f"[bench] {suite}: {path} ({time.perf_counter() - start:.1f} s)")
            for t in body.get("targets", []):
                log(f"[bench]   target {'MET' if t['met'] else 'NOT MET'}: {t['target']} [{t['setting']}, batch {t['batch']}] = {t['value']:.3f}"
                    + (f" ({t['note']})" if t.get("note") else ""))  # fmt: skip
    finally:
        store.close()
    log(f"[bench] total {time.perf_counter() - total:.1f} s")
    return written


def render_notebook(out: Path, runs_dir: Path | None, log: Callable[[str], None] = print) -> Path | None:
    """Execute notebooks/07_benchmarks.ipynb on ``out`` into ``out/07_benchmarks.html``."""
    from .. import reports

    notebook = reports.Notebook(
        "07_benchmarks", "Benchmarks", parameters={"bench_dir": str(Path(out).resolve())},
        source=reports.NOTEBOOK_DIR / "07_benchmarks.ipynb",
    )  # fmt: skip
    ctx = reports.make_context("quick", runs_dir=runs_dir, reports_dir=out)
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(REPO) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), *paths])
    result = reports.execute_report(notebook, ctx, log=log)
    if result.status != "ok":
        log(f"[bench] the notebook did not render: {result.message}")
        return None
    return result.html


# ============================================================================ command line


def _csv(kind: Callable[[str], Any]) -> Callable[[str], tuple]:
    def parse(text: str) -> tuple:
        try:
            return tuple(kind(t.strip()) for t in text.split(",") if t.strip())
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return parse


def _parser() -> argparse.ArgumentParser:
    d = BenchConfig()
    parser = argparse.ArgumentParser(
        prog="python -m mnv3.bench",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Benchmark MobileNetV3 on this machine and write reports/bench/*.json (one file per suite), then render "
            "notebooks/07_benchmarks.ipynb into reports/bench/07_benchmarks.html.\n\n"
            "suites:\n"
            "  inference  CPU latency (median, p90) at batch 1 and 32, at 224x224 with 1000 classes (small@224, large@224)\n"
            "             and at the experiments' native sizes with 10 classes (mnist_small: 1x28x28, cifar10_large_s1:\n"
            "             3x32x32 with the first two strides dropped). Contenders, same weights (from_torchvision):\n"
            "             torchvision eager, mnv3 eager, ExecuTorch fp32 and int8 (XNNPACK), ONNX Runtime, lite interpreter.\n"
            "             Each contender's latency is divided by torchvision eager's.\n"
            "  training   images/s of mnv3 against torchvision (to_torchvision: same architecture and weights) in\n"
            "             mnv3.train's step: prepare_batch, channels_last, forward, loss, backward, SGD. Batch 128.\n"
            "             --device cuda writes training_gpu.json (bf16 autocast, as the experiments).\n"
            "  frontier   width 0.35-1.25 of Small and Large: params and MACs (224x224, 1000 classes) against\n"
            "             ExecuTorch fp32 batch-1 latency, with the test accuracy of trained runs in --runs-dir.\n\n"
            "method: after warm-up calls, contenders are timed round-robin, one call each per round, in balanced orders\n"
            "(Williams design: every position and every predecessor equally often), so load changes on a shared\n"
            "machine hit all of them; ratios come from one run. torch, ExecuTorch's threadpool and onnxruntime\n"
            "use --threads threads (default 1: the paper's one-core protocol, and stable while other jobs share the\n"
            "machine; with 2 threads on a busy 2-core machine OpenMP's spin-waiting makes eager PyTorch erratic).\n"
            "Eager models run channels_last (as mnv3.train and evaluate do). Every contender\n"
            "takes raw pixels (normalisation inside the graph, mnv3.export.RawPixelModel). Exports are cached by content."
        ),
        epilog=(
            "targets (reported, not asserted): mnv3 eager / torchvision eager latency <= 1.05; ExecuTorch fp32 at\n"
            "batch 1 >= 3x faster than mnv3 eager; mnv3 training images/s >= torchvision's.\n\n"
            "examples:\n"
            "  python -m mnv3.bench                                   # everything (make bench): ~10 min cold, less cached\n"
            "  python -m mnv3.bench --quick                           # fewer settings, widths and rounds: ~5 min cold\n"
            "  python -m mnv3.bench --suite inference --settings small@224 --batches 1 --repeats 200\n"
            "  python -m mnv3.bench --suite training --device cuda    # on a GPU machine\n"
            "  python -m mnv3.bench --suite frontier --frontier-resolution 160\n"
            "  python -m mnv3.bench --tiny --out /tmp/bench           # smoke test: every contender, in about a minute\n\n"
            "outputs: OUT/inference.json, OUT/training.json (training_gpu.json on CUDA), OUT/frontier.json; each has\n"
            "schema/version/suite, environment (cpu model, cores, threads, versions, date, git commit, load average),\n"
            "config, results (per contender: setting, arch, resolution, batch, classes, median_ms, p90_ms, n,\n"
            "ratio_to_torchvision_eager, per-call times_ms, ...), targets; and OUT/07_benchmarks.html."
        ),
    )
    parser.add_argument("--suite", type=_csv(str), default=None, metavar="LIST",
                        help=f"comma-separated, from {','.join(SUITES)} (default: all; only training with --device cuda)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=d.threads, metavar="N", help=f"CPU threads for every runtime (default {d.threads})")
    parser.add_argument("--repeats", type=int, default=None, metavar="N", help=f"timed rounds per setting and batch, at most (default {d.repeats})")
    parser.add_argument("--min-rounds", type=int, default=None, metavar="N", help=f"timed rounds, at least (default {d.min_rounds})")
    parser.add_argument("--budget", type=float, default=None, metavar="S",
                        help=f"seconds per setting and batch after which no round is added once --min-rounds are done (default {d.budget_s:g})")  # fmt: skip
    parser.add_argument("--warmup", type=int, default=None, metavar="N", help=f"untimed calls per contender first (default {d.warmup})")
    parser.add_argument("--quick", action="store_true", help="small@224 and mnist_small, two training settings, widths 0.35/0.75/1.0, fewer rounds")
    parser.add_argument("--tiny", action="store_true", help="the smoke test: a three-block network at 28-32 px, 3 rounds, every contender")
    parser.add_argument("--out", type=Path, default=d.out, metavar="DIR", help=f"where the JSON files go (default {d.out})")
    parser.add_argument("--runs-dir", type=Path, default=d.runs_dir, metavar="DIR", help=f"trained runs for the frontier's accuracy (default {d.runs_dir})")
    parser.add_argument("--device", default=d.device, help="the training suite's device: cpu or cuda[:N] (inference is always on the CPU)")
    group = parser.add_argument_group("what is measured")
    group.add_argument("--settings", type=_csv(str), default=None, metavar="LIST",
                       help=f"inference settings: small@SIZE, large@SIZE, tiny or experiment names (default {','.join(d.settings)})")  # fmt: skip
    group.add_argument("--batches", type=_csv(int), default=None, metavar="LIST", help="inference batch sizes (default 1,32)")
    group.add_argument("--eager-layout", choices=("channels_last", "contiguous"), default="channels_last",
                       help="memory format of the eager contenders (default channels_last)")  # fmt: skip
    group.add_argument("--train-settings", type=_csv(str), default=None, metavar="LIST",
                       help=f"training settings: experiment names or tiny (default {','.join(d.train_settings)})")  # fmt: skip
    group.add_argument("--train-batch", type=int, default=None, metavar="N", help=f"training batch size (default {d.train_batch})")
    group.add_argument("--frontier-archs", type=_csv(str), default=None, metavar="LIST", help="default small,large")
    group.add_argument("--widths", type=_csv(float), default=None, metavar="LIST", help="width multipliers (default 0.35,0.5,0.75,1.0,1.25)")
    group.add_argument("--frontier-resolution", type=int, default=None, metavar="PX", help="frontier latency input size (default 224; MACs and parameters stay at 224)")
    exports = parser.add_argument_group("exports")
    exports.add_argument("--cache-dir", type=Path, default=None, metavar="DIR", help=f"exported files, reused across runs (default {default_cache_dir()})")
    exports.add_argument("--no-cache", action="store_true", help="export everything afresh into a temporary folder")
    exports.add_argument("--export-workers", type=int, default=d.export_workers, metavar="N", help=f"parallel export processes (default {d.export_workers})")
    parser.add_argument("--no-render", action="store_true", help="do not execute notebook 07 afterwards")
    return parser


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    base = tiny_config() if args.tiny else quick_config() if args.quick else BenchConfig()
    overrides: dict[str, Any] = {
        # On a GPU machine only the training suite belongs to the device run: its CPU numbers would
        # overwrite this machine's inference.json and frontier.json.
        "suites": tuple(args.suite) if args.suite else ("training",) if args.device.startswith("cuda") else base.suites,
        "threads": args.threads, "out": args.out, "runs_dir": args.runs_dir, "device": args.device,
        "eager_channels_last": args.eager_layout == "channels_last", "export_workers": args.export_workers,
        "cache_dir": None if args.no_cache else (args.cache_dir or default_cache_dir()),
    }  # fmt: skip
    if args.no_render:
        overrides["render"] = False
    optional = {
        "repeats": args.repeats, "min_rounds": args.min_rounds, "budget_s": args.budget, "warmup": args.warmup,
        "settings": args.settings, "batches": args.batches, "train_settings": args.train_settings,
        "train_batch": args.train_batch, "frontier_archs": args.frontier_archs, "widths": args.widths,
        "frontier_resolution": args.frontier_resolution,
    }  # fmt: skip
    overrides.update({k: v for k, v in optional.items() if v is not None})
    if args.repeats is not None:
        overrides["frontier_repeats"] = args.repeats
    return dataclasses.replace(base, **overrides)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
        written = run(cfg)
    except ValueError as err:
        print(f"python -m mnv3.bench: error: {err}", file=sys.stderr)
        return 2
    if cfg.render:
        html = render_notebook(cfg.out, cfg.runs_dir)
        if html:
            print(f"[bench] notebook: {html}")
    print("[bench] wrote " + ", ".join(str(p) for p in written.values()))
    return 0


# ============================================================================ what notebook 07 computes


def load_results(bench_dir: str | Path) -> dict[str, dict[str, Any] | None]:
    """{"inference", "training", "training_gpu", "frontier"}: each suite's JSON, or None if absent."""
    out = {}
    for name in ("inference", "training", "training_gpu", "frontier"):
        path = Path(bench_dir) / f"{name}.json"
        out[name] = json.loads(path.read_text()) if path.is_file() else None
    return out


def environment_frame(results: Mapping[str, Any]):
    """One column per suite: machine, threads, versions, date, commit, load average."""
    import pandas as pd

    columns = {}
    for name, data in results.items():
        if not data:
            continue
        env = data["environment"]
        t = env.get("threads", {})
        columns[name] = {
            "CPU": env.get("cpu_model"), "cores (usable)": f"{env.get('cpu_count')} ({env.get('usable_cores')})",
            "GPU": env.get("gpu") or "-",
            "threads (torch / ExecuTorch / onnxruntime)": f"{t.get('torch')} / {t.get('executorch')} / {t.get('onnxruntime')}",
            "torch": env["versions"].get("torch"), "torchvision": env["versions"].get("torchvision"),
            "executorch": env["versions"].get("executorch"), "onnxruntime": env["versions"].get("onnxruntime"),
            "python": env["versions"].get("python"), "date (UTC)": env.get("date"),
            "git commit": (env.get("git_commit") or "?")[:10] + (" (dirty)" if env.get("git_dirty") else ""),
            "load average (1/5/15 min) at start": ", ".join(f"{v:.1f}" for v in env.get("load_average_start") or []),
            "load average at end": ", ".join(f"{v:.1f}" for v in env.get("load_average_end") or []),
            "suite seconds": data.get("seconds"), "profile": data.get("config", {}).get("profile"),
        }  # fmt: skip
    return pd.DataFrame(columns)


def inference_frame(data: Mapping[str, Any]):
    """One row per (setting, batch, contender): median/p90 ms, rounds, ratio to torchvision eager."""
    import pandas as pd

    rows = []
    for r in data["results"]:
        rows.append({
            "setting": r["setting"], "input": f"{r['in_channels']}x{r['resolution']}x{r['resolution']}", "classes": r["classes"],
            "batch": r["batch"], "contender": r["label"], "median ms": r["median_ms"], "p90 ms": r["p90_ms"], "n": r["n"],
            "ratio to torchvision eager": r["ratio_to_torchvision_eager"],
            "paired ratio (95% interval)": _interval(r.get("paired_ratio_median"), r.get("paired_ratio_ci95")),
            "images/s": r["images_per_s"], "max |logit diff|": r.get("max_abs_diff_vs_torchvision"),
            "other processes (cores)": r.get("cpu_other_cores"), "error": r.get("error") or "",
        })  # fmt: skip
    return pd.DataFrame(rows)


def _interval(median: float | None, ci: Sequence[float] | None) -> str:
    if median is None:
        return "-"
    return f"{median:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci and ci[0] is not None else f"{median:.3f}"


def inference_pivot(data: Mapping[str, Any], value: str = "median_ms"):
    """Rows (setting, batch), columns contenders, cells ``value`` (median_ms, p90_ms or ratio_to_torchvision_eager)."""
    import pandas as pd

    frame = pd.DataFrame([{"setting": r["setting"], "batch": r["batch"], "contender": r["label"], value: r[value]} for r in data["results"]])
    table = frame.pivot_table(index=["setting", "batch"], columns="contender", values=value, sort=False)
    order = [CONTENDER_LABELS[c] for c in CONTENDERS if CONTENDER_LABELS[c] in table.columns]
    return table[order]


def target_checks(results: Mapping[str, Any]):
    """Every target row of the suites present: target, setting, value, threshold, verdict, note."""
    import pandas as pd

    rows = []
    for name in ("inference", "training", "training_gpu"):
        data = results.get(name)
        for t in (data or {}).get("targets", []):
            op = "≤" if "<=" in t["target"] else "≥"
            where = f"{t['setting']}, batch {t['batch']}" + (f", {t['device']}" if t.get("device") else "")
            if t["met"]:
                statement = f"{t['value']:.3f} {op} {t['threshold']:g}: met"
            elif t.get("within_noise"):
                statement = f"{t['value']:.3f} is not {op} {t['threshold']:g}: not met, within noise"
            else:
                statement = f"{t['value']:.3f} is not {op} {t['threshold']:g}: NOT met"
            rows.append({"target": t["target"], "where": where, "value": round(t["value"], 3), "statement": statement,
                         "met": t["met"], "within_noise": t.get("within_noise"), "note": t.get("note", "")})  # fmt: skip
    return pd.DataFrame(rows)


def target_summary(results: Mapping[str, Any]) -> list[str]:
    """One Markdown line per target: met everywhere, or where it falls short."""
    checks = target_checks(results)
    lines = []
    if checks.empty:
        return lines
    for target, group in checks.groupby("target", sort=False):
        short = group[~group["met"]]
        values = ", ".join(f"{v:.3f}" for v in group["value"])
        if short.empty:
            lines.append(f"- **{target}**: met in all {len(group)} measurements ({values}).")
        else:
            misses = "; ".join(f"{row['where']}: {row['statement']}" for _, row in short.iterrows())
            lines.append(f"- **{target}**: met in {len(group) - len(short)} of {len(group)} measurements ({values}). "
                         f"Short: {misses} (why: the notes in the table below).")  # fmt: skip
    return lines


SHORT_LABELS = {
    "torchvision_eager": "torchvision\neager",
    "ours_eager": "mnv3\neager",
    "executorch_fp32": "ET\nfp32",
    "executorch_int8": "ET\nint8",
    "onnxruntime": "ONNX\nRuntime",
    # (ET: ExecuTorch)
    "lite_interpreter": "lite\ninterp.",
}


def _log_axis(axis, values) -> None:
    """Readable log-scale ticks (0.1, 0.2, 0.5, 1, 2, 5, ...) with plain numbers."""
    import matplotlib.ticker as mticker

    axis.set_major_locator(mticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(mticker.NullFormatter())


def plot_inference(data: Mapping[str, Any]):
    """Latency of every contender relative to torchvision eager (log scale), one panel per batch size."""
    import matplotlib.pyplot as plt
    import numpy as np

    results = [r for r in data["results"] if r["median_ms"] is not None]
    batches = sorted({r["batch"] for r in results})
    settings = list(dict.fromkeys(r["setting"] for r in results))
    fig, axes = plt.subplots(1, len(batches), figsize=(6.8 * len(batches), 1.6 + 1.05 * len(settings)), squeeze=False)
    height = 0.8 / len(CONTENDERS)
    for ax, batch in zip(axes[0], batches):
        for i, contender in enumerate(CONTENDERS):
            ys, values = [], []
            for j, s in enumerate(settings):
                r = next((r for r in results if r["setting"] == s and r["batch"] == batch and r["contender"] == contender), None)
                if r is not None:
                    ys.append(j + i * height)
                    values.append(r["ratio_to_torchvision_eager"])
            ax.barh(ys, values, height, label=CONTENDER_LABELS[contender], color=f"C{i}")
            for y, v in zip(ys, values):
                ax.text(v * 1.03, y, f"{v:.2f}", va="center", fontsize=6.5)
        ax.axvline(1.0, color="k", lw=0.8)
        ax.set_xscale("log")
        _log_axis(ax.xaxis, None)
        ax.set_xlim(right=ax.get_xlim()[1] * 1.25)
        ax.set_yticks(np.arange(len(settings)) + 0.4 - height / 2, settings)
        ax.invert_yaxis()
        ax.set(xlabel="latency / torchvision eager (median; log scale; < 1 is faster)", title=f"batch {batch}")
        ax.grid(axis="x", which="major", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle("CPU inference latency relative to torchvision eager")
    fig.tight_layout(rect=(0, 0.09, 1, 1))
    return fig


def plot_latency_distributions(data: Mapping[str, Any], batch: int = 1):
    """Per-call times of every contender (box plots), one panel per setting, at ``batch``."""
    import matplotlib.pyplot as plt

    results = [r for r in data["results"] if r["batch"] == batch and r["times_ms"]]
    settings = list(dict.fromkeys(r["setting"] for r in results))
    if not settings:
        return None
    fig, axes = plt.subplots(1, len(settings), figsize=(3.9 * len(settings), 3.8), squeeze=False)
    for ax, s in zip(axes[0], settings):
        rows = [r for r in results if r["setting"] == s]
        ax.boxplot([r["times_ms"] for r in rows], whis=(10, 90), flierprops={"markersize": 3})
        ax.set_xticks(range(1, len(rows) + 1), [SHORT_LABELS.get(r["contender"], r["contender"]) for r in rows], fontsize=7)
        ax.set_yscale("log")
        _log_axis(ax.yaxis, None)
        ax.set(title=f"{s}, batch {batch}", ylabel="ms per call (log)")
        ax.grid(axis="y", which="major", alpha=0.3)
    fig.tight_layout()
    return fig


def training_frame(*datas: Mapping[str, Any] | None):
    import pandas as pd

    rows = []
    for data in datas:
        for r in (data or {}).get("results", []):
            rows.append({
                "setting": r["setting"], "device": r["device"], "input": f"{r['in_channels']}x{r['resolution']}x{r['resolution']}",
                "drop_first_strides": r["drop_first_strides"], "batch": r["batch"], "model": r["label"],
                "median step ms": r["median_step_ms"], "p90 step ms": r["p90_step_ms"], "n": r["n"],
                "images/s": r["images_per_s"], "ratio to torchvision": r["ratio_to_torchvision"],
                "paired ratio (95% interval)": _interval(r.get("paired_ratio_median"), r.get("paired_ratio_ci95")),
                "other processes (cores)": r.get("cpu_other_cores"),
            })  # fmt: skip
    return pd.DataFrame(rows)


def plot_training(*datas: Mapping[str, Any] | None):
    """Left: training images/s of torchvision and mnv3 per setting (log scale). Right: mnv3's
    throughput over torchvision's, the median of the per-round ratios with its 95% interval."""
    import matplotlib.pyplot as plt
    import numpy as np

    rows = [r for data in datas for r in (data or {}).get("results", [])]
    if not rows:
        return None
    groups = list(dict.fromkeys((r["setting"], r["device"]) for r in rows))
    fig, (ax, ax_ratio) = plt.subplots(1, 2, figsize=(11, 1.2 + 0.75 * len(groups)), gridspec_kw={"width_ratios": [3, 2]})
    for i, model in enumerate(TRAIN_CONTENDERS):
        values = [next((r["images_per_s"] for r in rows if (r["setting"], r["device"]) == g and r["contender"] == model), np.nan) for g in groups]
        ys = np.arange(len(groups)) + 0.4 * i
        ax.barh(ys, values, 0.4, label="torchvision" if model == "torchvision" else "mnv3", color=f"C{i}")
        for y, v in zip(ys, values):
            ax.text(v * 1.03, y, f"{v:.0f}", va="center", fontsize=7)
    ax.set_xscale("log")
    _log_axis(ax.xaxis, None)
    ax.set_xlim(right=ax.get_xlim()[1] * 1.5)
    ax.set_yticks(np.arange(len(groups)) + 0.2, [f"{s}\n{d}" for s, d in groups], fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel="training images / s (median step; log scale)", title="throughput, steps alternating")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8)
    for k, g in enumerate(groups):
        r = next((r for r in rows if (r["setting"], r["device"]) == g and r["contender"] == "ours"), None)
        if r is None or r.get("paired_ratio_median") is None:
            continue
        lo, hi = r["paired_ratio_ci95"]
        med = r["paired_ratio_median"]
        ax_ratio.errorbar(med, k, xerr=[[med - lo], [hi - med]], fmt="o", color="C1", capsize=4,
                          label="per-round ratios: median, 95% interval" if k == 0 else None)  # fmt: skip
        ax_ratio.plot(r["ratio_to_torchvision"], k, "kx", label="ratio of the medians (the target's value)" if k == 0 else None)
        ax_ratio.text(max(hi, r["ratio_to_torchvision"]), k - 0.25, f" {r['ratio_to_torchvision']:.3f}", fontsize=8)
    ax_ratio.axvline(1.0, color="k", lw=0.8)
    ax_ratio.set_yticks(range(len(groups)), ["" for _ in groups])
    ax_ratio.set_ylim(len(groups) - 0.5, -0.5)
    ax_ratio.set(xlabel="mnv3 / torchvision images/s", title="ratio (target: at least 1)")
    ax_ratio.grid(axis="x", alpha=0.3)
    ax_ratio.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.25 - 0.1 / max(1, len(groups))), frameon=False)
    fig.tight_layout()
    return fig


def frontier_frame(data: Mapping[str, Any]):
    import pandas as pd

    rows = []
    for r in data["results"]:
        rows.append({
            "arch": r["arch"], "width": r["width"], "params": r["params"], "MACs (M)": r["macs"] / 1e6,
            f"ExecuTorch fp32 median ms ({r['resolution']}px)": r["median_ms"], "p90 ms": r["p90_ms"], "n": r["n"],
            "trained runs (test accuracy)": ", ".join(f"{a['experiment']}: {100 * a['test_accuracy']:.2f}%" for a in r["accuracy"]) or "-",
            "paper ImageNet top-1 (Table 3)": r["paper"]["top1"] if r.get("paper") else None,
        })  # fmt: skip
    return pd.DataFrame(rows)


ARCH_COLORS = {"small": "C0", "large": "C3", "tiny": "C2"}


def plot_frontier(data: Mapping[str, Any]):
    """Latency against MACs and against parameters (log-log), a line per arch through its widths;
    and accuracy against latency: the paper's ImageNet top-1 where Table 3 has it, and every
    trained run of the same arch and width."""
    import matplotlib.pyplot as plt

    results = [r for r in data["results"] if r["median_ms"] is not None]
    with_accuracy = any(r["accuracy"] or r.get("paper") for r in results)
    panels = 3 if with_accuracy else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.4 * panels, 4.5))
    archs = list(dict.fromkeys(r["arch"] for r in results))
    res = results[0]["resolution"] if results else "?"
    mac_res = results[0].get("mac_resolution", 224) if results else 224
    for ax, key, label in ((axes[0], "macs", f"MACs (millions, {mac_res}x{mac_res}; log)"), (axes[1], "params", "parameters (millions; log)")):
        for arch in archs:
            pts = sorted((r for r in results if r["arch"] == arch), key=lambda r: r["width"])
            xs, ys = [r[key] / 1e6 for r in pts], [r["median_ms"] for r in pts]
            ax.plot(xs, ys, "-o", color=ARCH_COLORS.get(arch, "C4"), label=f"MobileNetV3-{arch.capitalize()}")
            for r, x_, y_ in zip(pts, xs, ys):
                ax.annotate(f"{r['width']:g}", (x_, y_), textcoords="offset points", xytext=(5, -11), fontsize=8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        _log_axis(ax.xaxis, None)
        _log_axis(ax.yaxis, None)
        ax.set(xlabel=label, ylabel=f"ExecuTorch fp32 latency, batch 1, {res}px (ms; log)")
        ax.grid(which="major", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    axes[0].set_title("latency against MACs (labels: width multiplier)")
    axes[1].set_title("latency against parameters")
    if with_accuracy:
        ax = axes[2]
        markers = {"mnist": "s", "cifar10": "^", "cifar100": "v", "fashion_mnist": "D", "kmnist": "P", "synthetic": "x"}
        for arch in archs:
            color = ARCH_COLORS.get(arch, "C4")
            paper = sorted((r for r in results if r["arch"] == arch and r.get("paper")), key=lambda r: r["width"])
            if paper:
                ax.plot([r["median_ms"] for r in paper], [r["paper"]["top1"] for r in paper], "--o", mfc="none", color=color,
                        label=f"{arch.capitalize()}: paper, ImageNet top-1 (Table 3)")  # fmt: skip
                for r in paper:
                    ax.annotate(f"{r['width']:g}", (r["median_ms"], r["paper"]["top1"]), textcoords="offset points", xytext=(5, -11), fontsize=8)
            for r in results:
                if r["arch"] != arch:
                    continue
                for a in r["accuracy"]:
                    ax.plot(r["median_ms"], 100 * a["test_accuracy"], markers.get(a["dataset"], "o"), color=color, ms=8)
                    ax.annotate(f"{a['experiment']}", (r["median_ms"], 100 * a["test_accuracy"]),
                                textcoords="offset points", xytext=(-4, 6), fontsize=7, ha="right")  # fmt: skip
        ax.set_xscale("log")
        _log_axis(ax.xaxis, None)
        lo, hi = ax.get_xlim()
        ax.set_xlim(lo / 1.3, hi * 1.3)
        ax.set(xlabel=f"ExecuTorch fp32 latency at {res}px, this CPU (ms; log)", ylabel="top-1 accuracy (%)",
               title="accuracy against latency (filled: trained runs)")  # fmt: skip
        ax.grid(which="major", alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1, frameon=False)
    fig.tight_layout()
    return fig

