"""The command line, ``python -m mnv3.bench``: options to :class:`BenchConfig`, then :func:`run`."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from ..files import os_error_line
from .config import SUITES, BenchConfig, default_cache_dir, quick_config, tiny_config
from .runner import run


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
            "Benchmark MobileNetV3 on this machine and write reports/bench/*.json (one file per suite); `make reports`\n"
            "then renders them in notebook 07 (07_benchmarks.html).\n\n"
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
            "Eager models run channels_last unless --eager-layout contiguous. Every contender\n"
            "takes raw pixels (normalisation inside the graph, mnv3.export.RawPixelModel). Exports are cached by content."
        ),
        epilog=(
            "targets (reported, not asserted): mnv3 eager / torchvision eager latency <= 1.05; ExecuTorch fp32 at\n"
            "batch 1 >= 3x faster than mnv3 eager; mnv3 training images/s >= torchvision's.\n\n"
            "examples:\n"
            "  python -m mnv3.bench                                   # everything (make bench); see 'how long' below\n"
            "  python -m mnv3.bench --quick                           # fewer settings, widths and rounds\n"
            "  python -m mnv3.bench --suite inference --settings small@224 --batches 1 --repeats 200\n"
            "  python -m mnv3.bench --suite training --device cuda    # on a GPU machine\n"
            "  python -m mnv3.bench --suite frontier --frontier-resolution 160\n"
            "  python -m mnv3.bench --tiny --out /tmp/bench           # smoke test: every contender and suite, tiny inputs\n\n"
            "how long: the first run exports every program it times (ExecuTorch fp32 and int8, ONNX, the lite\n"
            "interpreter), which takes several minutes on a 2-core CPU; the files are cached by content (--cache-dir)\n"
            "and later runs only time. With the cache filled, the committed reports/bench run (the default profile,\n"
            "quiet 2-core machine) took 150 s: the 'seconds' of inference.json, training.json and frontier.json.\n\n"
            "outputs: OUT/inference.json, OUT/training.json (training_gpu.json on CUDA), OUT/frontier.json; each has\n"
            "schema/version/suite, environment (cpu model, cores, threads, versions, date, git commit, load average),\n"
            "config, results (per contender: setting, arch, resolution, batch, classes, median_ms, p90_ms, n,\n"
            "ratio_to_torchvision_eager, per-call times_ms, ...), targets. `make reports` renders reports/bench/*.json in notebook 07."
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
    return parser


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """The :class:`BenchConfig` of parsed options: the --tiny / --quick / default profile, then the
    options given. With ``--device cuda`` and no --suite, only the training suite runs."""
    base = tiny_config() if args.tiny else quick_config() if args.quick else BenchConfig()
    overrides: dict[str, Any] = {
        # On a GPU machine only the training suite belongs to the device run: its CPU numbers would
        # overwrite this machine's inference.json and frontier.json.
        "suites": tuple(args.suite) if args.suite else ("training",) if args.device.startswith("cuda") else base.suites,
        "threads": args.threads, "out": args.out, "runs_dir": args.runs_dir, "device": args.device,
        "eager_channels_last": args.eager_layout == "channels_last", "export_workers": args.export_workers,
        "cache_dir": None if args.no_cache else (args.cache_dir or default_cache_dir()),
    }  # fmt: skip
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
    """``python -m mnv3.bench ARGV``: 0 once the JSON files are written, 2 for a bad setting, suite,
    thread count or device (the message on stderr, nothing written)."""
    args = _parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
        written = run(cfg)
    except ValueError as err:
        print(f"python -m mnv3.bench: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"python -m mnv3.bench: error: {os_error_line(err)}", file=sys.stderr)
        return 2
    print("[bench] wrote " + ", ".join(str(p) for p in written.values()))
    return 0
