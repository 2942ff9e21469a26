"""The command line, ``python -m mnv3.search``: four commands; ``make search`` runs ``latency``,
``run``, ``compare`` and ``publish`` in that order. ``run`` (the default, so ``python -m
mnv3.search RUN_DIR`` works) searches; ``latency`` fits and validates the latency model;
``compare`` trains the searched spec and the width multipliers from scratch and compares them;
``publish`` copies the results into ``reports/search/``."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from ..arguments import int_at_least, positive_float
from ..checkpoint import CheckpointError
from ..data import DataUnavailableError
from ..files import os_error_line
from ..spec import SpecError
from .compare import WIDTH_GRID

__all__ = ["main", "parse_target"]

COMMANDS = ("run", "latency", "compare", "publish")


def parse_target(text: str) -> tuple[float | None, float | None]:
    """``"75%"`` -> (None, 0.75), a fraction of the seed's latency; ``"0.62ms"`` -> (0.62, None).
    Raises argparse.ArgumentTypeError for anything else (a bare number is ambiguous)."""
    value = text.strip().lower()
    try:
        if value.endswith("%"):
            fraction = float(value[:-1]) / 100
            if not 0 < fraction < 1:
                raise argparse.ArgumentTypeError(f"--target {text}: a fraction of the seed's latency lies between 0% and 100%")
            return None, fraction
        if value.endswith("ms"):
            ms = float(value[:-2])
            if not ms > 0:
                raise argparse.ArgumentTypeError(f"--target {text}: a latency must be positive")
            return ms, None
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"--target {text!r}: give a percentage of the seed's latency (75%) or milliseconds (0.62ms)")


def _percent(text: str) -> float:
    try:
        value = float(text.rstrip("%")) / 100
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a percentage such as 5%, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a percentage between 0% and 100%, got {text!r}")
    return value


def _fractions(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        values = ()
    if not values or not all(0 < v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected fractions between 0 and 1 such as 0.75,0.5, got {text!r}")
    return values


def _fractions_to_one(text: str) -> tuple[float, ...]:
    try:
        values = tuple(sorted(float(t) for t in text.split(",") if t.strip()))
    except ValueError:
        values = ()
    if len(values) < 2 or not all(0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected at least two widths in (0, 1] such as 0.5,0.75,1, got {text!r}")
    return values


def _data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", default="data", metavar="DIR", help="dataset root (default data)")
    parser.add_argument("--data-mirror", default=None, metavar="DIR", help="offline dataset mirror (default: $MNV3_DATA_MIRROR)")


def _parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="python -m mnv3.search", formatter_class=raw,
        usage="python -m mnv3.search [run] RUN_DIR --out DIR [options]\n"
              "       python -m mnv3.search latency RUN_DIR --out DIR [options]\n"
              "       python -m mnv3.search compare DIR --seed-run RUN_DIR [options]\n"
              "       python -m mnv3.search publish DIR --seed-run RUN_DIR [--to DEST]",
        description=(
            "NetAdapt (Yang et al. 2018) over a trained run's spec, as MobileNetV3's section 4.2 uses it: narrow one\n"
            "layer at a time, by the latency measured on ExecuTorch (fp32, XNNPACK, batch 1, 1 thread, this CPU),\n"
            "until a target latency, and write the spec found. `make search` trains the seed, then runs\n"
            "latency, run, compare and publish in that order."
        ),
        epilog=(
            "examples:\n"
            "  python -m mnv3.search latency runs/search/full/cifar10_small_s1-cpu15 --out runs/search/netadapt\n"
            "  python -m mnv3.search runs/search/full/cifar10_small_s1-cpu15 --out runs/search/netadapt --target 75%\n"
            "  python -m mnv3.train --experiment cifar10_small_s1 --arch runs/search/netadapt/searched.json\n"
            "  python -m mnv3.search compare runs/search/netadapt --seed-run runs/search/full/cifar10_small_s1-cpu15\n"
            "  python -m mnv3.search publish runs/search/netadapt --seed-run runs/search/full/cifar10_small_s1-cpu15 --to reports/search\n\n"
            "Each command explains its options: python -m mnv3.search run --help (latency --help, compare --help, publish --help).\n"
            "exit status: 0 done, 2 a run folder, target or file it cannot use (one line says why), 130 interrupted\n"
            "(run it again: it resumes from DIR/search.jsonl)."
        ),
    )  # fmt: skip
    commands = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    run = commands.add_parser("run", prog="python -m mnv3.search [run]", formatter_class=raw,
                              help="search from a trained run (the default command)",
                              description="Search from RUN_DIR's trained model (its best weights) down to --target.",
                              epilog=(
                                  "Per step: the proposals (each block's expansion, each residual bottleneck group's width, narrowed\n"
                                  "just enough that the latency model predicts a cut of --delta), each with the current weights\n"
                                  "(largest-norm channels kept), BatchNorm re-estimated, --finetune-steps SGD steps and its accuracy\n"
                                  "on the first --val-images validation images (never the test set); the best accuracy change per\n"
                                  "millisecond wins and its latency is measured. Writes DIR/search.jsonl (every proposal),\n"
                                  "DIR/steps/ (each step's weights), DIR/latency/ (timings, programs) and, at the target,\n"
                                  "DIR/searched.json. Steps took 66-110 s each on our 2-core CPU at the defaults (one thread)."))  # fmt: skip
    run.add_argument("run_dir", metavar="RUN_DIR", help="a finished run at width 1.0 (config.json and best.pt or final.safetensors)")
    run.add_argument("--out", required=True, metavar="DIR", help="the search's folder (resumed when it holds a search.jsonl)")
    run.add_argument("--target", type=parse_target, default=(None, 0.75), metavar="T",
                     help="target latency: a percentage of the seed's measured latency (75%%, the default) or milliseconds (0.62ms)")
    run.add_argument("--delta", type=_percent, default=0.05, metavar="P", help="latency cut per step, a percentage of the seed's (default 5%%)")
    run.add_argument("--finetune-steps", type=int, default=20, metavar="N", help="SGD steps per proposal (default 20)")
    run.add_argument("--batch-size", type=int_at_least(1), default=128, metavar="N", help="images per fine-tuning step (default 128)")
    run.add_argument("--lr", type=positive_float, default=0.02, help="fine-tuning learning rate, constant (default 0.02)")
    run.add_argument("--bn-batches", type=int, default=10, metavar="N", help="batches that re-estimate BatchNorm (default 10)")
    run.add_argument("--val-images", type=int_at_least(1), default=2000, metavar="N", help="validation images for the proxy accuracy (default 2000)")
    run.add_argument("--max-steps", type=int_at_least(1), default=40, metavar="N", help="stop after N steps (default 40)")
    run.add_argument("--threads", type=int_at_least(1), default=1, metavar="N", help="CPU threads for fine-tuning (default 1; latency always uses 1)")
    run.add_argument("--seed", type=int, default=0, help="seed of the step batches and the latency model's random specs")
    run.add_argument("--fit-specs", type=int_at_least(1), default=16, metavar="N",
                     help="random specs measured first when DIR/latency/ holds fewer (default 16; `latency` measures more)")
    _data_args(run)
    lat = commands.add_parser("latency", prog="python -m mnv3.search latency", formatter_class=raw,
                              help="fit the latency model and validate it on held-out specs",
                              description=(
                                  "Measure --fit random specs of RUN_DIR's structure (the fit set), --held-out others and the\n"
                                  "single-layer cuts of the seed a step proposes, fit the latency model on the fit set, and write\n"
                                  "DIR/latency-validation.json: the mean absolute percentage error on the held-out specs (goal <= 3%)\n"
                                  "and Spearman's rank correlation of predicted against measured cuts (goal >= 0.9). The timings\n"
                                  "stay in DIR/latency/ for the search. Lowering a program takes 10-25 s here; they are cached."))  # fmt: skip
    lat.add_argument("run_dir", metavar="RUN_DIR")
    lat.add_argument("--out", required=True, metavar="DIR", help="the search's folder")
    lat.add_argument("--fit", type=int_at_least(1), default=24, metavar="N", help="random specs to fit on (default 24)")
    lat.add_argument("--held-out", type=int_at_least(1), default=8, metavar="N", help="random specs to validate on (default 8)")
    lat.add_argument("--budget", type=positive_float, default=30.0, metavar="S", help="seconds of timing per session (default 30)")
    lat.add_argument("--cuts", type=_fractions, default=(0.75, 0.5), metavar="LIST",
                     help="the seed's single-layer cuts, as fractions of each layer's width (default 0.75,0.5)")
    lat.add_argument("--seed", type=int, default=0, help="seed of the random specs (the held-out ones use seed + 1000)")
    cmp = commands.add_parser("compare", prog="python -m mnv3.search compare", formatter_class=raw,
                              help="train the searched spec and the bracketing width multipliers from scratch, and compare",
                              description=(
                                  "Time the searched spec beside the seed's spec at --grid widths (one interleaved run), take the two\n"
                                  "widths that bracket it, train all three from scratch with the seed run's recipe (--epochs, --seeds),\n"
                                  "and write DIR/comparison.json: the accuracy gap to the width frontier at equal latency with a 95%\n"
                                  "interval, and the frontier's latency at equal accuracy. Runs go to DIR/runs/ and are resumed."))  # fmt: skip
    cmp.add_argument("search_dir", metavar="DIR", help="the search's folder (holding searched.json)")
    cmp.add_argument("--seed-run", required=True, metavar="RUN_DIR", help="the seed run (its recipe is reused)")
    cmp.add_argument("--epochs", type=int_at_least(1), default=None, metavar="N", help="epochs per run (default: the seed run's)")
    cmp.add_argument("--seeds", default="0,1", metavar="LIST", help="training seeds per arm (default 0,1)")
    cmp.add_argument("--grid", type=_fractions_to_one, default=WIDTH_GRID, metavar="LIST",
                     help=f"width multipliers timed to find the two that bracket the searched spec (default {','.join(f'{w:g}' for w in WIDTH_GRID)})")
    cmp.add_argument("--threads", type=int_at_least(1), default=1, metavar="N", help="CPU threads per training (default 1)")
    cmp.add_argument("--jobs", type=int_at_least(1), default=1, metavar="N",
                     help="runs trained at once, each in its own process logging to DIR/runs/<profile>/<run>.log (default 1)")
    _data_args(cmp)
    pub = commands.add_parser("publish", prog="python -m mnv3.search publish",
                              help="copy a search, its seed run and its comparison runs into a committable folder",
                              description="Copy DIR's search.jsonl, searched.json, latency-validation.json, latency.json and "
                                          "comparison.json, the seed run (published with its best weights as safetensors) and "
                                          "the comparison runs' records into --to (what notebook 08 and the README show).")  # fmt: skip
    pub.add_argument("search_dir", metavar="DIR", help="the search's folder")
    pub.add_argument("--seed-run", required=True, metavar="RUN_DIR", help="the seed run")
    pub.add_argument("--to", default="reports/search", metavar="DEST", help="default reports/search")
    return parser, {"run": run, "latency": lat, "compare": cmp, "publish": pub}


def _with_command(argv: list[str]) -> list[str]:
    if argv and (argv[0] in COMMANDS or argv[0] in ("-h", "--help")):
        return argv
    return ["run", *argv]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 done, 2 unusable input, 130 interrupted)."""
    from .compare import CompareConfig, compare
    from .netadapt import SearchConfig, SearchError, run_search
    from .proxy import ProxyConfig
    from .validation import validate_latency

    parser, commands = _parsers()
    args = parser.parse_args(_with_command(list(sys.argv[1:] if argv is None else argv)))
    try:
        if args.command == "run":
            target_ms, fraction = args.target
            try:
                proxy = ProxyConfig(args.finetune_steps, args.batch_size, args.lr, args.bn_batches, args.val_images)
            except ValueError as err:
                commands["run"].error(str(err))
            cfg = SearchConfig(target_ms=target_ms, target_fraction=fraction, delta_fraction=args.delta, proxy=proxy,
                               threads=args.threads, seed=args.seed, max_steps=args.max_steps, fit_specs=args.fit_specs)  # fmt: skip
            path = run_search(args.run_dir, args.out, cfg, data_root=args.data_root, data_mirror=args.data_mirror)
            print(f"searched spec -> {path}\n{json.loads(path.read_text())['notes'].rsplit('. ', 1)[-1]}")
        elif args.command == "latency":
            report = validate_latency(args.run_dir, args.out, fit=args.fit, held_out=args.held_out, budget_s=args.budget,
                                      seed=args.seed, fractions=args.cuts)  # fmt: skip
            print(json.dumps({k: report[k] for k in ("mape_percent", "spearman_cuts")}))
        elif args.command == "publish":
            from .publish import publish_search

            print(f"search -> {publish_search(args.search_dir, args.seed_run, args.to)}")
        else:
            try:
                seeds = tuple(int(s) for s in args.seeds.split(",") if s.strip())
            except ValueError:
                commands["compare"].error(f"--seeds {args.seeds!r}: a comma-separated list of integers, e.g. 0,1")
            if len(seeds) < 2:
                commands["compare"].error("--seeds: at least two seeds, so each arm has a spread")
            result = compare(args.search_dir, args.seed_run, CompareConfig(epochs=args.epochs, seeds=seeds, grid=args.grid, threads=args.threads, jobs=args.jobs),
                             data_root=args.data_root, data_mirror=args.data_mirror)  # fmt: skip
            gap = result["gap"]
            print(f"searched vs width frontier at equal latency: {gap['gap_points']:+.2f} points "
                  f"(95% interval {gap['ci95_points'][0]:+.2f} to {gap['ci95_points'][1]:+.2f})")
        return 0
    except (SearchError, CheckpointError, SpecError, DataUnavailableError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a path the user gave: a file where a folder belongs, no permission, ...
        print(f"error: {os_error_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to resume", file=sys.stderr)
        return 130
