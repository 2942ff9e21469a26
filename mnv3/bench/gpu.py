"""GPU training throughput of the training loop's step (``mnv3.step.run_step``): images/s and peak memory.

    python -m mnv3.bench.gpu                      # the plan scripts/gpu_bench.sh runs (CUDA)
    python -m mnv3.bench.gpu --device cpu --plan tiny --out /tmp/b   # the smoke test

Each measurement builds one model (ours, or torchvision's with the same weights through
``to_torchvision``), puts a synthetic uint8 dataset of four batches on the device, and times
``run_step``: the per-step seed, augmentation, forward under bf16 autocast, loss, backward, SGD,
the schedule and the running metrics, as ``python -m mnv3.train`` runs them, not a copy.
``mode`` is eager, ``compiled`` (``torch.compile``, as the full profile trains) or ``graphed``
(``torch.compile(mode="reduce-overhead")``: forward and backward replayed as CUDA graphs; the
optimizer step stays outside them). Compile state is reset before each row
(``torch.compiler.reset``, i.e. ``torch._dynamo.reset``), so a row never reuses the graphs of
the row before; inductor's on-disk cache still serves graphs it has seen. Each row records how
many graphs inductor declined to capture as CUDA graphs (``cudagraph_skips``, with its reasons):
a "graphed" row with skips ran partly without graphs. The first ``warmup`` steps (compilation,
cuDNN autotuning, graph capture) are timed apart, as ``first_steps_seconds``. Results go to
``OUT/gpu_training.json``, rewritten after every row (notebook 07 does not read it yet: no GPU
run has made one).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..data import dataset_info
from ..environment import machine_record
from ..experiments import get_experiment
from ..files import os_error_line, write_json_atomic
from ..model import build_model
from ..timing import time_calls

__all__ = ["Measurement", "PLANS", "CudagraphSkips", "measure", "run", "main"]

MODES = ("eager", "compiled", "graphed")
LAYOUTS = ("nchw", "channels_last")
# Targets of the GPU-step issue: one H200, bf16, after warm-up.
TARGETS = {"cifar10_small_s1": 100_000, "cifar10_large_s1": 40_000, "mnist_small": 200_000}


@dataclasses.dataclass(frozen=True)
class Measurement:
    experiment: str  # a full-profile experiment: its dataset, architecture and strides
    model: str  # "ours" or "torchvision"
    mode: str  # one of MODES
    layout: str  # one of LAYOUTS
    batch: int


def _grid(experiments, models, modes, layouts, batches) -> list[Measurement]:
    return [Measurement(e, m, mo, l, b) for e in experiments for m in models for mo in modes for l in layouts for b in batches]


_SMALL = "cifar10_small_s1"
# "full", in the order that matters when time runs out (every row is written as it ends): each
# row decides a default or sizes a run. A compiled or graphed row costs a compile (70-80 s in the
# first H200 runs, less from inductor's on-disk cache); an eager row a few seconds.
PLANS: dict[str, list[Measurement]] = {
    "full": [
        Measurement(_SMALL, "ours", "compiled", "nchw", 256),  # the target row, as the full profile trains
        Measurement(_SMALL, "ours", "graphed", "nchw", 256),  # CUDA graphs: whether --cuda-graphs becomes the default
        Measurement(_SMALL, "ours", "eager", "nchw", 256),  # what compiling buys
        Measurement(_SMALL, "torchvision", "eager", "nchw", 256),  # ours against torchvision's model, same step
        Measurement(_SMALL, "ours", "eager", "channels_last", 256),  # the memory format (NCHW since the first H200 runs)
        Measurement(_SMALL, "ours", "eager", "nchw", 1024),  # the batch: the same ms a step at 4x the batch = host-bound
        Measurement("cifar10_large_s1", "ours", "eager", "nchw", 256),  # Large's step, to size the final runs
        Measurement("mnist_small", "ours", "eager", "nchw", 1024),
        Measurement("cifar10_large_s1", "ours", "graphed", "nchw", 256),  # the other two targets, last
        Measurement("mnist_small", "ours", "graphed", "nchw", 1024),
    ],
    "tiny": _grid(("mnist_small",), ("ours", "torchvision"), ("eager",), LAYOUTS, (8,)),
}

# Where inductor says why it did not capture a graph: "cudagraphs" artifact logger on recent
# torch, "perf_hints" on older ones (2.4-2.6). Both are also counted in counters["inductor"].
_SKIP_LOGGERS = ("torch._inductor.cudagraph_utils.__cudagraphs", "torch._inductor.cudagraph_utils.__perf_hints")


class CudagraphSkips(logging.Handler):
    """Counts, while in a ``with`` block, the graphs inductor declined to capture as CUDA graphs
    (``torch._dynamo.utils.counters["inductor"]["cudagraph_skips"]``) and keeps the reasons it
    logged ("skipping cudagraphs due to mutated inputs", ...). ``count`` and ``reasons`` hold them
    after the block; on a CPU every graphed compile counts one skip (CUDA graphs need CUDA)."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.count, self.reasons, self._start = 0, [], 0

    def emit(self, record: logging.LogRecord) -> None:
        self.reasons.append(record.getMessage())

    def __enter__(self) -> "CudagraphSkips":
        from torch._dynamo.utils import counters

        self._start = counters["inductor"]["cudagraph_skips"]
        for name in _SKIP_LOGGERS:
            logging.getLogger(name).addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        from torch._dynamo.utils import counters

        for name in _SKIP_LOGGERS:
            logging.getLogger(name).removeHandler(self)
        self.count = counters["inductor"]["cudagraph_skips"] - self._start


def _model(m: Measurement) -> tuple[nn.Module, Any]:
    exp = get_experiment(m.experiment, "full", batch_size=m.batch, channels_last=m.layout == "channels_last", compile=False)
    info = dataset_info(exp.dataset)
    torch.manual_seed(0)
    model = build_model(exp.arch, num_classes=info.num_classes, in_channels=info.in_channels, width_mult=exp.width_mult,
                        dropout=exp.dropout, drop_first_strides=exp.drop_first_strides)  # fmt: skip
    if m.model == "torchvision":
        from ..torchvision_compat import to_torchvision

        model = to_torchvision(model)
    return model, exp


def measure(m: Measurement, device: torch.device, *, steps: int, warmup: int) -> dict[str, Any]:
    """Time ``steps`` calls of ``run_step`` after ``warmup`` untimed ones; returns one result row."""
    from ..step import EpochMetrics, make_trainer, run_step

    torch.compiler.reset()  # this row compiles its own graphs, whatever the row before left
    model, exp = _model(m)
    info = dataset_info(exp.dataset)
    size = info.image_size
    trainer = make_trainer(model, exp, info, device, image_size=size, steps_per_epoch=warmup + steps)
    if m.mode != "eager":
        trainer.net = torch.compile(trainer.eager, mode="reduce-overhead" if m.mode == "graphed" else "default")
    images = torch.randint(0, 256, (4 * m.batch, info.in_channels, size, size), dtype=torch.uint8, device=device)
    labels = torch.randint(0, info.num_classes, (4 * m.batch,), device=device)
    batches = torch.randperm(4 * m.batch, device=device).view(4, m.batch).repeat((warmup + steps + 3) // 4, 1)
    metrics = EpochMetrics(device)

    def block(first: int, count: int) -> None:
        for i in range(first, first + count):
            run_step(trainer, images, labels, batches, 0, i, metrics)

    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    # Whole blocks of steps, one sync at the end of each: a sync per step would stall the very
    # queue whose throughput is measured.
    with CudagraphSkips() as skips:
        first = time_calls(lambda: block(0, warmup), runs=1, sync=sync)[0] / 1000
        metrics = EpochMetrics(device)
        seconds = time_calls(lambda: block(warmup, steps), runs=1, sync=sync)[0] / 1000
    bad_step, loss_sum, _ = metrics.read()
    return {
        **dataclasses.asdict(m),
        "images_per_s": steps * m.batch / seconds,
        "step_ms": 1000 * seconds / steps,
        "steps": steps,
        "first_steps_seconds": first,
        "warmup_steps": warmup,
        "peak_memory_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        "mean_loss": loss_sum / metrics.seen if bad_step < 0 else float("nan"),
        "cudagraph_skips": skips.count,
        "cudagraph_skip_reasons": skips.reasons,
    }


def _ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ours / torchvision's images/s at each eager setting both were measured at."""
    key = lambda r: (r["experiment"], r["mode"], r["layout"], r["batch"])  # noqa: E731
    tv = {key(r): r["images_per_s"] for r in rows if r["model"] == "torchvision" and "images_per_s" in r}
    return [{"setting": key(r), "ratio": r["images_per_s"] / tv[key(r)]} for r in rows
            if r["model"] == "ours" and key(r) in tv and "images_per_s" in r]  # fmt: skip


def run(plan: list[Measurement], device: torch.device, out: Path, *, steps: int, warmup: int,
        budget_seconds: float | None = None, log: Callable[[str], None] = print) -> Path:  # fmt: skip
    """Measure every entry of ``plan``, writing ``out/gpu_training.json`` after each (so an
    interrupted run keeps what it measured); a failing entry is recorded with its error, and once
    ``budget_seconds`` have passed the remaining entries are recorded as skipped, unmeasured."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    rows: list[dict[str, Any]] = []
    path = Path(out) / "gpu_training.json"
    environment = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.machine()})",
        "torch": torch.__version__, "python": platform.python_version(), "machine": machine_record(torch.get_num_threads()),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"), "amp": "bf16" if device.type == "cuda" else "off (fp32 on the CPU)",
        "steps": steps, "warmup": warmup, "budget_seconds": budget_seconds,
    }  # fmt: skip
    start = time.perf_counter()
    for m in plan:
        label = f"{m.experiment:18s} {m.model:11s} {m.mode:8s} {m.layout:13s} batch {m.batch:5d}"
        if budget_seconds is not None and time.perf_counter() - start >= budget_seconds:
            row = {**dataclasses.asdict(m), "skipped": f"the budget of {budget_seconds:g} s was spent"}
            log(f"{label}: skipped, budget spent")
        else:
            try:
                row = measure(m, device, steps=steps, warmup=warmup)
                log(f"{label}: {row['images_per_s']:10.0f} img/s, {row['step_ms']:.2f} ms a step, first {warmup} steps "
                    f"{row['first_steps_seconds']:.1f} s, cudagraph skips {row['cudagraph_skips']}")  # fmt: skip
            except Exception as err:  # a mode that fails on this stack is a result too
                row = {**dataclasses.asdict(m), "error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"}
                log(f"{label}: {row['error']}")
        rows.append(row)
        write_json_atomic(path, {"environment": environment, "results": rows, "ratios": _ratios(rows), "targets": TARGETS})
    return path


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m mnv3.bench.gpu", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="scripts/gpu_bench.sh runs the full plan on a GPU and keeps the JSON; "
                                            "scripts/gpu_plan.md says how long it takes.")  # fmt: skip
    parser.add_argument("--plan", choices=sorted(PLANS), default="full", help="what to measure (default full; tiny: the smoke test)")
    parser.add_argument("--device", default="cuda", help="cuda (the current GPU), cuda:N or cpu (default cuda)")
    parser.add_argument("--steps", type=int, default=60, help="timed steps per measurement (default 60)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first: compilation, autotuning, graph capture (default 10)")
    parser.add_argument("--budget-seconds", type=float, default=None,
                        help="start no measurement after this many seconds; the rest are recorded as skipped (default: no limit)")
    parser.add_argument("--out", type=Path, default=Path("reports/bench"), help="folder of gpu_training.json (default reports/bench)")
    args = parser.parse_args(argv)
    from ..step import resolve_device

    try:
        device = resolve_device(args.device)
    except ValueError as err:
        print(f"error: {err} The CPU smoke test: --device cpu --plan tiny.", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        return run(PLANS[args.plan], device, args.out, steps=args.steps, warmup=args.warmup, budget_seconds=args.budget_seconds)
    except OSError as err:
        print(f"error: {os_error_line(err)}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print(f"interrupted; {args.out / 'gpu_training.json'} keeps the rows measured so far", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
