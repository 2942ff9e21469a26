"""GPU training throughput of ``mnv3.train.train_step``: images/s and peak memory.

    python -m mnv3.bench.gpu                      # the plan scripts/gpu_bench.sh runs (CUDA)
    python -m mnv3.bench.gpu --device cpu --plan tiny --out /tmp/b   # the smoke test

Each measurement builds one model (ours, or torchvision's with the same weights through
``to_torchvision``), puts a synthetic uint8 dataset of four batches on the device, and times
``train_step`` (augmentation, forward under bf16 autocast, loss, backward, SGD): the same
function ``python -m mnv3.train`` runs, not a copy. ``mode`` is eager, ``compiled``
(``torch.compile``) or ``graphed`` (``torch.compile(mode="reduce-overhead")``: forward and backward
replayed as CUDA graphs; the optimizer step stays outside them). The first ``warmup`` steps
(compilation, cuDNN autotuning, graph capture) are timed apart, as ``first_steps_seconds``.
Results go to ``OUT/gpu_training.json`` (notebook 07 does not read it yet: no GPU run has made one).
"""
from __future__ import annotations

import argparse
import dataclasses
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
from ..timing import time_calls
from ..model import build_model


__all__ = ["Measurement", "PLANS", "measure", "run", "main"]

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


# "full" fits about 3 minutes of an H200: every eager setting, and the compiled and graphed ones
# (40-80 s of compiling each) only where the issue asks for them.
PLANS: dict[str, list[Measurement]] = {
    "full": _grid(TARGETS, ("ours", "torchvision"), ("eager",), LAYOUTS, (256, 512, 1024))
    + _grid(("cifar10_small_s1",), ("ours",), ("compiled", "graphed"), ("nchw",), (256,))
    + _grid(("mnist_small",), ("ours",), ("graphed",), ("nchw",), (1024,)),
    "tiny": _grid(("mnist_small",), ("ours", "torchvision"), ("eager",), LAYOUTS, (8,)),
}


def _model(m: Measurement, device: torch.device) -> tuple[nn.Module, Any]:
    exp = get_experiment(m.experiment, "full", batch_size=m.batch, channels_last=m.layout == "channels_last", compile=False)
    info = dataset_info(exp.dataset)
    torch.manual_seed(0)
    model = build_model(exp.arch, num_classes=info.num_classes, in_channels=info.in_channels, width_mult=exp.width_mult,
                        dropout=exp.dropout, drop_first_strides=exp.drop_first_strides)  # fmt: skip
    if m.model == "torchvision":
        from ..torchvision_compat import to_torchvision

        model = to_torchvision(model)
    from ..train import prepare_for_training

    return prepare_for_training(model, exp, device), exp


def measure(m: Measurement, device: torch.device, *, steps: int, warmup: int) -> dict[str, Any]:
    """Time ``steps`` calls of ``train_step`` after ``warmup`` untimed ones; returns one result row."""
    from ..train import make_optimizer, train_step

    model, exp = _model(m, device)
    info = dataset_info(exp.dataset)
    net = model if m.mode == "eager" else torch.compile(model, mode="reduce-overhead" if m.mode == "graphed" else "default")
    optimizer = make_optimizer(model, exp)
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=False)  # bf16 needs no scaling

    def autocast():
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp)

    size = info.image_size
    images = torch.randint(0, 256, (4 * m.batch, info.in_channels, size, size), dtype=torch.uint8, device=device)
    labels = torch.randint(0, info.num_classes, (4 * m.batch,), device=device)
    order = torch.randperm(4 * m.batch, device=device).view(4, m.batch)

    def step(i: int) -> torch.Tensor:
        idx = order[i % 4]
        return train_step(net, optimizer, scaler, images[idx], labels[idx], info, exp, image_size=size, autocast=autocast)[0]

    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    # Whole blocks of steps, one sync at the end of each: a sync per step would stall the very
    # queue whose throughput is measured.
    losses: list[torch.Tensor] = []
    first = time_calls(lambda: [step(i) for i in range(warmup)], runs=1, sync=sync)[0] / 1000
    seconds = time_calls(lambda: losses.extend(step(i) for i in range(steps)), runs=1, sync=sync)[0] / 1000
    loss = losses[-1]
    return {
        **dataclasses.asdict(m),
        "images_per_s": steps * m.batch / seconds,
        "step_ms": 1000 * seconds / steps,
        "steps": steps,
        "first_steps_seconds": first,
        "warmup_steps": warmup,
        "peak_memory_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        "final_loss": float(loss),
    }


def _ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ours / torchvision's images/s at each eager setting both were measured at."""
    key = lambda r: (r["experiment"], r["mode"], r["layout"], r["batch"])  # noqa: E731
    tv = {key(r): r["images_per_s"] for r in rows if r["model"] == "torchvision" and "images_per_s" in r}
    return [{"setting": key(r), "ratio": r["images_per_s"] / tv[key(r)]} for r in rows
            if r["model"] == "ours" and key(r) in tv and "images_per_s" in r]  # fmt: skip


def run(plan: list[Measurement], device: torch.device, out: Path, *, steps: int, warmup: int,
        log: Callable[[str], None] = print) -> Path:  # fmt: skip
    """Measure every entry of ``plan``, writing ``out/gpu_training.json`` after each (so an
    interrupted run keeps what it measured); a failing entry is recorded with its error."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    rows: list[dict[str, Any]] = []
    path = Path(out) / "gpu_training.json"
    environment = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.machine()})",
        "torch": torch.__version__, "python": platform.python_version(), "machine": machine_record(torch.get_num_threads()),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"), "amp": "bf16" if device.type == "cuda" else "off (fp32 on the CPU)",
    }  # fmt: skip
    for m in plan:
        try:
            row = measure(m, device, steps=steps, warmup=warmup)
            log(f"{m.experiment:18s} {m.model:11s} {m.mode:8s} {m.layout:13s} batch {m.batch:5d}: "
                f"{row['images_per_s']:10.0f} img/s, first {warmup} steps {row['first_steps_seconds']:.1f} s")  # fmt: skip
        except Exception as err:  # a mode that fails on this stack is a result too
            row = {**dataclasses.asdict(m), "error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"}
            log(f"{m}: {row['error']}")
        rows.append(row)
        write_json_atomic(path, {"environment": environment, "results": rows, "ratios": _ratios(rows), "targets": TARGETS})
    return path


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m mnv3.bench.gpu", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="scripts/gpu_bench.sh runs the full plan on a GPU and keeps the JSON.")  # fmt: skip
    parser.add_argument("--plan", choices=sorted(PLANS), default="full", help="what to measure (default full; tiny: the CPU smoke test)")
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per measurement (default 30)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first: compilation, autotuning (default 10)")
    parser.add_argument("--out", type=Path, default=Path("reports/bench"), help="folder of gpu_training.json (default reports/bench)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device here; this benchmark is for a GPU (--device cpu --plan tiny is the smoke test)", file=sys.stderr)
        raise SystemExit(2)
    try:
        return run(PLANS[args.plan], device, args.out, steps=args.steps, warmup=args.warmup)
    except OSError as err:
        print(f"error: {os_error_line(err)}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
