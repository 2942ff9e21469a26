"""Latency on the real runtime, and a cheap model of it.

**The measurement** (the paper's protocol, section 4.2, with this machine's CPU standing in for the
phone's single large core): the spec is built at width 1.0, wrapped to take raw pixels as the app's
program does (:class:`mnv3.export.RawPixelModel`), lowered to ExecuTorch fp32 with the XNNPACK
delegate at batch 1 (:func:`mnv3.export.lower_to_pte`), and run by ExecuTorch's Python runtime
with one thread. Programs are timed together, round-robin (:func:`mnv3.timing.interleaved_times`),
always beside a fixed *reference* program (the search's seed): a load change then hits all of them
alike, and each spec's latency is its median per-round ratio to the reference times the
reference's *anchor*, the lowest median the reference has had in any session (the least disturbed
one). Lowering a program costs 10-25 s here, so programs are cached on disk by spec.

**The model** (:class:`LatencyModel`): a non-negative linear regression of latency in milliseconds
over per-layer work, fitted on whole-model timings. The features (:func:`features`) are the
multiply-adds of each kind of layer (pointwise 1x1, depthwise 3x3 and 5x5, the full stem conv,
the fully connected layers of SE and the classifier) and the number of elements the elementwise
operations touch (activations, SE scaling, residual adds); the intercept is the per-call floor
(the runtime's entry, the input copy, the normalisation). A proposal of the search changes a few
layers' widths, which this captures; it is validated on held-out specs (:func:`validate`).

Everything is keyed by :func:`latency_key` (CPU model, ExecuTorch version, threads, input size and
the model's fixed settings): a saved model of another key is refitted, never reused.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

from ..environment import cpu_model, package_version
from ..files import write_bytes_atomic, write_json_atomic
from ..layers import make_divisible
from ..model import MobileNetV3, resolve_strides
from ..spec import ModelSpec, spec_from_dict
from ..timing import interleaved_times, paired_ratio

__all__ = [
    "Setting",
    "latency_key",
    "features",
    "FEATURES",
    "ProgramCache",
    "time_programs",
    "LatencyModel",
    "LatencyStore",
    "random_specs",
    "spec_digest",
]


@dataclass(frozen=True)
class Setting:
    """What a measured program is besides its spec: the input side in pixels, channels, classes,
    ``drop_first_strides``, the normalisation constants, the runtime's thread count, and the CPU's
    vector width in fp32 lanes (the channel tile of XNNPACK's kernels, :func:`features`)."""

    input_size: int
    in_channels: int
    num_classes: int
    drop_first_strides: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    threads: int = 1
    lanes: int = 16

    @classmethod
    def from_run(cls, config: Mapping[str, Any], info, *, threads: int = 1) -> "Setting":
        """The setting of a run's model (``config`` = its config.json, ``info`` its DatasetInfo) on
        this CPU (its vector width, :func:`simd_lanes`)."""
        model = config["model"]
        return cls(int(config.get("image_size") or info.image_size), int(model["in_channels"]), int(model["num_classes"]),
                   int(model.get("drop_first_strides", 0)), tuple(info.mean), tuple(info.std), threads, simd_lanes())  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "mean": list(self.mean), "std": list(self.std)}


def latency_key(setting: Setting) -> dict[str, Any]:
    """What a latency measured here depends on: CPU model, ExecuTorch version, threads, input size,
    and the model's fixed settings. A saved model is used only under an equal key."""
    return {"cpu": cpu_model(), "executorch": package_version("executorch"), "threads": setting.threads,
            "input_size": setting.input_size, "in_channels": setting.in_channels, "num_classes": setting.num_classes,
            "drop_first_strides": setting.drop_first_strides, "lanes": setting.lanes}  # fmt: skip


# ----------------------------------------------------------------------------- features

FEATURES = ("pw_macs", "dw3_macs", "dw5_macs", "stem_macs", "fc_macs", "elementwise")
LANES = {"AVX512": 16, "AVX2": 8}  # fp32 lanes of a vector register, by torch's name for the CPU's capability


def simd_lanes() -> int:
    """fp32 lanes of this CPU's vector registers: 16 with AVX-512, 8 with AVX2, else 4 (SSE, NEON),
    read from ``torch.backends.cpu.get_cpu_capability()``; XNNPACK's kernels pick the same ISA."""
    return LANES.get(torch.backends.cpu.get_cpu_capability(), 4)


def _tiled(channels: int, lanes: int) -> int:
    return -(-channels // lanes) * lanes


def features(spec: ModelSpec, setting: Setting) -> dict[str, float]:
    """Per-layer work of ``spec`` at width 1.0 under ``setting``, summed by kind (millions).

    ``pw_macs``: 1x1 convolutions (expansions, projections, the head conv); ``dw3_macs`` /
    ``dw5_macs``: depthwise convolutions by kernel (other kernels count as the nearer one);
    ``stem_macs``: the first, full convolution; ``fc_macs``: SE's two layers (the classifier's
    size never changes here, so its cost is part of the intercept); ``elementwise``: elements
    written by activations, SE scaling and residual adds.

    Multiply-adds are counted as the CPU does them: XNNPACK's kernels work on whole vectors of
    ``setting.lanes`` channels, so every channel count (inputs and outputs) is rounded up to a
    multiple of it. Cutting 40 channels to 32 then saves a third of the work (three vectors of 16
    to two), not a fifth: on our AVX-512 CPU, without this rounding the model ranked the seed's
    single-layer cuts at Spearman 0.72, with it 0.92 (tiles of 8 and 32 did worse; see the README).
    """
    t = setting.lanes
    strides = resolve_strides(spec, setting.drop_first_strides)
    side = math.ceil(setting.input_size / strides[0])
    f = dict.fromkeys(FEATURES, 0.0)
    f["stem_macs"] = side * side * spec.stem.kernel**2 * setting.in_channels * _tiled(spec.stem.out, t)
    f["elementwise"] = side * side * spec.stem.out
    channels = spec.stem.out
    for row, stride in zip(spec.blocks, strides[1:]):
        out_side = math.ceil(side / stride)
        exp = _tiled(row.exp_size, t)
        if row.exp_size != channels:
            f["pw_macs"] += side * side * _tiled(channels, t) * exp
            f["elementwise"] += side * side * row.exp_size
        f["dw5_macs" if row.kernel >= 5 else "dw3_macs"] += out_side * out_side * row.kernel**2 * exp
        f["elementwise"] += out_side * out_side * row.exp_size
        if row.se:
            squeeze = _tiled(make_divisible(row.exp_size // 4), t)
            f["fc_macs"] += 2 * exp * squeeze
            f["elementwise"] += out_side * out_side * row.exp_size
        f["pw_macs"] += out_side * out_side * exp * _tiled(row.out, t)
        if stride == 1 and row.out == channels:
            f["elementwise"] += out_side * out_side * row.out
        channels, side = row.out, out_side
    last = spec.blocks[-1].out
    head = channels * (spec.head.out // last) if spec.head.out % last == 0 else spec.head.out
    f["pw_macs"] += side * side * _tiled(channels, t) * _tiled(head, t)
    f["elementwise"] += side * side * head
    return {k: v / 1e6 for k, v in f.items()}


# ----------------------------------------------------------------------------- measuring

TURN_WARMUP = 3  # untimed calls before each timed one (mnv3.timing.interleaved_times)
LOADS = 3  # loads of each program timed (time_programs)


def spec_digest(spec: ModelSpec) -> str:
    """A short content hash of a spec's layers (its name and notes left out)."""
    data = spec.to_dict()
    data.pop("name", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


class ProgramCache:
    """ExecuTorch programs of specs under one setting, lowered once and kept in ``folder``
    (``<digest>.pte``; lowering takes 10-25 s on our 2-core machine)."""

    def __init__(self, folder: str | Path, setting: Setting) -> None:
        # What the program's bytes depend on: the libraries and the model's settings, not the runtime's threads or the CPU.
        what = {k: v for k, v in (latency_key(setting) | setting.to_dict()).items() if k not in ("cpu", "threads", "lanes")}
        key = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]
        self.folder = Path(folder) / key
        self.setting = setting

    def path(self, spec: ModelSpec) -> Path:
        """The program of ``spec``, lowered now if the cache lacks it."""
        path = self.folder / f"{spec_digest(spec)}.pte"
        if not path.is_file():
            from ..export import RawPixelModel, lower_to_pte

            s = self.setting
            torch.manual_seed(0)  # the weights' values do not change the fp32 program's work
            model = MobileNetV3(spec, num_classes=s.num_classes, in_channels=s.in_channels,
                                drop_first_strides=s.drop_first_strides).eval()  # fmt: skip
            wrapper = RawPixelModel(model, s.mean, s.std, image_size_in=s.input_size, image_size=s.input_size).eval()
            data, _ = lower_to_pte(wrapper, (1, s.in_channels, s.input_size, s.input_size), what=f"spec {spec_digest(spec)}")
            write_bytes_atomic(path, data)
        return path


def time_programs(paths: Mapping[str, Path], reference: str, *, threads: int = 1, budget_s: float = 20.0, loads: int = LOADS,
                  min_rounds: int = 30, max_rounds: int = 2000) -> dict[str, Any]:  # fmt: skip
    """Time ExecuTorch programs side by side at batch 1 with ``threads`` runtime threads.

    ``paths`` maps names to .pte files and must hold ``reference``. Each program is loaded
    ``loads`` times and every load is a contender of its own (:func:`mnv3.timing.interleaved_times`):
    where a load's buffers land in memory moves its time by up to about 1% here, as much as a small
    cut, so a program's figures are the mean over its loads. Returns {"programs": {name:
    {"median_ms", "p10_ms", "p90_ms", "ratio" (the median per-round ratio to the reference,
    per load, averaged over loads), "ratio_ci95" (of the first load)}}, "rounds", "other_cores"
    (CPU other processes used meanwhile, :class:`mnv3.bench.machine.CpuMeter`), "seconds"}. Times
    are wall-clock milliseconds of one ``execute`` call, input tensor prepared beforehand, each
    after :data:`TURN_WARMUP` untimed calls of the same load (warm caches, as a program running alone).
    """
    from ..bench.machine import CpuMeter, set_threads
    from ..export import PteRunner

    if reference not in paths:
        raise ValueError(f"the reference {reference!r} must be among the timed programs")
    set_threads(threads)
    calls: dict[tuple[str, int], Callable[[], Any]] = {}
    for name, path in paths.items():
        for load in range(loads):
            runner = PteRunner(Path(path))
            x = torch.rand(runner.input_shape)
            calls[(name, load)] = lambda r=runner, x=x: r.method.execute([x])
    start = time.perf_counter()
    with CpuMeter() as meter:
        # Each program is timed warm (turn_warmup): interleaved cold, a program's time grew with the number of
        # others in the session (their weights evict its own), 0.36 ms alone against 0.55 among 12 for the seed.
        times = interleaved_times(calls, warmup=5, min_rounds=min_rounds, max_rounds=max_rounds, budget_s=budget_s,
                                  turn_warmup=TURN_WARMUP)
    reference_times = np.mean([times[(reference, load)] for load in range(loads)], axis=0)
    programs = {}
    for name in paths:
        per_load = [times[(name, load)] for load in range(loads)]
        ratios = [paired_ratio(values, reference_times) for values in per_load]
        programs[name] = {"median_ms": float(np.mean([np.median(v) for v in per_load])),
                          "p10_ms": float(np.mean([np.percentile(v, 10) for v in per_load])),
                          "p90_ms": float(np.mean([np.percentile(v, 90) for v in per_load])),
                          "ratio": float(np.mean([r["median"] for r in ratios])), "ratio_ci95": ratios[0]["ci95"]}  # fmt: skip
    return {"programs": programs, "rounds": len(reference_times), "loads": loads, "other_cores": meter.result.get("other_cores"),
            "seconds": round(time.perf_counter() - start, 2)}  # fmt: skip


# ----------------------------------------------------------------------------- the model


class LatencyModel:
    """latency_ms = intercept + sum_k coef_k * feature_k, every coefficient >= 0 (scipy's NNLS).

    ``points`` are the measurements it was fitted on: {"spec" (JSON form), "latency_ms", "why"}.
    """

    def __init__(self, setting: Setting, points: Sequence[Mapping[str, Any]] = ()) -> None:
        self.setting = setting
        self.points: list[dict[str, Any]] = [dict(p) for p in points]
        self.coef = np.zeros(len(FEATURES))
        self.intercept = 0.0
        if self.points:
            self.fit()

    def _matrix(self, specs: Iterable[ModelSpec]) -> np.ndarray:
        rows = [[features(s, self.setting)[k] for k in FEATURES] for s in specs]
        return np.asarray(rows, dtype=float).reshape(-1, len(FEATURES))

    def fit(self) -> "LatencyModel":
        """Refit on every point (at least 3). Returns self."""
        from scipy.optimize import nnls

        if len(self.points) < 3:
            raise ValueError(f"a latency model needs at least 3 measured specs, got {len(self.points)}")
        x = self._matrix(spec_from_dict(p["spec"]) for p in self.points)
        y = np.asarray([p["latency_ms"] for p in self.points], dtype=float)
        # Columns scaled to unit norm, so NNLS weighs them alike; the intercept is a column of ones.
        design = np.hstack([np.ones((len(x), 1)), x])
        scale = np.linalg.norm(design, axis=0)
        scale[scale == 0] = 1.0
        solution, _ = nnls(design / scale, y)
        solution = solution / scale
        self.intercept, self.coef = float(solution[0]), solution[1:]
        return self

    def add(self, spec: ModelSpec, latency_ms: float, why: str) -> None:
        """Add a measurement and refit (the search calls this after each whole-model timing)."""
        self.points.append({"spec": spec.to_dict(), "latency_ms": float(latency_ms), "why": why})
        self.fit()

    def predict(self, spec: ModelSpec) -> float:
        """Predicted latency of ``spec`` in milliseconds."""
        return float(self.intercept + self._matrix([spec])[0] @ self.coef)

    def to_dict(self) -> dict[str, Any]:
        return {"format": "mnv3-latency-model", "key": latency_key(self.setting), "setting": self.setting.to_dict(),
                "features": list(FEATURES), "intercept_ms": self.intercept,
                "coef_ms_per_million": dict(zip(FEATURES, self.coef.tolist())), "points": self.points}  # fmt: skip


class LatencyStore:
    """The measurements of one setting on disk (``latency.json`` in ``folder``), the reference's
    anchor, and the programs' cache: what the search refits its :class:`LatencyModel` from.

    ``measure(specs)`` lowers what is missing, times the specs beside the reference, converts the
    ratios to milliseconds with the anchor and records each session. A file of another
    :func:`latency_key` is set aside (renamed ``latency-<time>.json``) and measuring starts anew.
    """

    def __init__(self, folder: str | Path, setting: Setting, reference: ModelSpec, *, log: Callable[[str], None] = print) -> None:
        self.folder = Path(folder)
        self.setting = setting
        self.reference = reference
        self.cache = ProgramCache(self.folder / "programs", setting)
        self.path = self.folder / "latency.json"
        self.log = log
        self.data: dict[str, Any] = {"format": "mnv3-latency", "key": latency_key(setting), "setting": setting.to_dict(),
                                     "reference": reference.to_dict(), "anchor_ms": None, "sessions": [], "measured": {}}  # fmt: skip
        if self.path.is_file():
            stored = json.loads(self.path.read_text())
            if stored.get("key") == self.data["key"] and stored.get("reference") == self.data["reference"]:
                self.data = stored
            else:
                aside = self.path.with_name(f"latency-{time.strftime('%Y%m%d-%H%M%S')}.json")
                self.path.rename(aside)
                log(f"{self.path}: measured under another CPU, ExecuTorch version, setting or reference; kept as {aside.name}, measuring anew")

    def measure(self, specs: Mapping[str, ModelSpec], *, why: str, budget_s: float = 20.0) -> dict[str, float]:
        """Latency in ms of each named spec (lowered if needed, timed beside the reference)."""
        from tqdm.auto import tqdm

        paths = {"reference": self.cache.path(self.reference)}
        for name, spec in tqdm(list(specs.items()), desc="lowering to ExecuTorch", leave=False, disable=None):
            paths[name] = self.cache.path(spec)
        session = time_programs(paths, "reference", threads=self.setting.threads, budget_s=budget_s)
        reference_ms = session["programs"]["reference"]["median_ms"]
        anchor = self.data["anchor_ms"]
        self.data["anchor_ms"] = reference_ms if anchor is None else min(anchor, reference_ms)
        result = {}
        for name, spec in specs.items():
            timing = session["programs"][name]
            entry = {"spec": spec.to_dict(), "ratio": timing["ratio"], "ratio_ci95": timing["ratio_ci95"],
                     "median_ms": timing["median_ms"], "session": len(self.data["sessions"]), "why": why}  # fmt: skip
            self.data["measured"][spec_digest(spec)] = entry
            result[name] = timing["ratio"] * self.data["anchor_ms"]
        self.data["sessions"].append({"why": why, "rounds": session["rounds"], "other_cores": session["other_cores"],
                                      "reference_median_ms": reference_ms, "seconds": session["seconds"],
                                      "time": time.strftime("%Y-%m-%d %H:%M:%S")})  # fmt: skip
        write_json_atomic(self.path, self.data)
        return result

    def latency_ms(self, spec: ModelSpec) -> float | None:
        """The measured latency of ``spec`` (ratio times the current anchor), None when unmeasured."""
        entry = self.data["measured"].get(spec_digest(spec))
        return None if entry is None or self.data["anchor_ms"] is None else entry["ratio"] * self.data["anchor_ms"]

    def model(self, exclude: Iterable[str] = ()) -> LatencyModel:
        """A :class:`LatencyModel` fitted on every measurement but those whose ``why`` is in ``exclude``."""
        points = [{"spec": e["spec"], "latency_ms": e["ratio"] * self.data["anchor_ms"], "why": e["why"]}
                  for e in self.data["measured"].values() if e["why"] not in set(exclude)]  # fmt: skip
        return LatencyModel(self.setting, points)


def random_specs(parent: ModelSpec, count: int, *, seed: int = 0, drop_first_strides: int = 0, low: float = 0.5) -> list[ModelSpec]:
    """``count`` specs of ``parent``'s structure with random widths, to fit and validate a latency
    model on: each expansion (where the block has an expansion conv) and each bottleneck group
    (:func:`mnv3.search.surgery.bottleneck_groups`) scaled by its own factor drawn from
    [``low``, 1], rounded to a multiple of 8; draws that would change the structure are redrawn."""
    from ..spec import SpecError
    from .surgery import CHANNEL_STEP, bottleneck_groups, check_same_structure, structure

    rng = np.random.default_rng(seed)
    expand = structure(parent, drop_first_strides).expand
    groups = bottleneck_groups(parent, drop_first_strides)

    def shrink(value: int) -> int:
        return max(CHANNEL_STEP, int(round(value * rng.uniform(low, 1.0) / CHANNEL_STEP)) * CHANNEL_STEP)

    specs: list[ModelSpec] = []
    while len(specs) < count:
        outs = {i: b.out for i, b in enumerate(parent.blocks)}
        for group in groups:
            new = shrink(parent.blocks[group[0]].out)
            outs.update({i: new for i in group})
        blocks = tuple(dataclasses.replace(b, out=outs[i], exp_size=shrink(b.exp_size) if expand[i] else b.exp_size)
                       for i, b in enumerate(parent.blocks))  # fmt: skip
        child = dataclasses.replace(parent, blocks=blocks, source=f"random spec {len(specs)} (seed {seed})")
        try:
            check_same_structure(parent, child, drop_first_strides)
        except SpecError:
            continue
        specs.append(child)
    return specs
