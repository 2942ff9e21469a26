"""The command line, two commands: ``python -m mnv3.export [run] RUN_DIR`` (``run`` may be left out,
as the Makefile, README and notebooks do) and ``python -m mnv3.export android-assets``."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ..arguments import int_at_least
from ..checkpoint import CheckpointError
from ..data import DataUnavailableError
from ..experiments import MAX_IMAGE_SIZE
from ..files import os_error_line
from ..records import RecordError
from .android import DEFAULT_ASSETS_DIR, make_android_assets
from .deps import INSTALL_HINT, ExportError
from .formats import FORMATS, parse_formats
from .onnx_export import ONNX_OPSET
from .pte import FP32_KINDS, INT8_KEEP_FP32
from .run import export_run


def _formats_arg(text: str) -> tuple[str, ...]:
    try:
        return parse_formats(text)
    except ExportError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _kinds_arg(text: str) -> tuple[str, ...]:
    # Module names are checked against the model once it is loaded (fp32_module_names).
    return tuple(k.strip() for k in text.split(",") if k.strip() and k.strip() != "none")


_positive_int, _non_negative_int = int_at_least(1), int_at_least(0)
_image_side = int_at_least(1, MAX_IMAGE_SIZE)


COMMANDS = ("run", "android-assets")
DEFAULT_COMMAND = "run"  # `python -m mnv3.export RUN_DIR` (no command) is `run`, as it always was

FORMATS_HELP = (
    "formats:\n"
    "  pte       model.pte       ExecuTorch fp32, whole network in the XNNPACK delegate (the Android app's file)\n"
    "  pte-int8  model_int8.pte  ExecuTorch int8 (PT2E static quantization, XNNPACKQuantizer, per-channel);\n"
    "                            the first bneck block stays fp32 in the delegate (--int8-keep-fp32)\n"
    "  ptl       model.ptl       TorchScript lite interpreter: LEGACY (PyTorch Mobile is deprecated upstream)\n"
    "  onnx      model.onnx      ONNX (opset 18, or --onnx-opset), dynamic batch, checked with onnxruntime\n"
    "plus model.json (what the app reads) and parity.json / parity.md (unless --skip-parity).\n"
)
EXIT_HELP = (
    f"ExecuTorch, ONNX and onnxruntime are optional: {INSTALL_HINT}\n"
    "exit status: 0 ok, 2 unusable run folder / bad argument / missing package / delegation failure, 130 interrupted."
)
RUN_EXAMPLES = (
    "  python -m mnv3.export runs/quick/mnist_small\n"
    "  python -m mnv3.export runs/quick/cifar10_small_s1 --formats pte,pte-int8 --calibration-batches 16\n"
    "  python -m mnv3.export RUN --formats pte --skip-parity --out /tmp/export\n"
)
ASSETS_EXAMPLE = "python -m mnv3.export android-assets --mnist runs/quick/mnist_small --cifar runs/quick/cifar10_small_s1"
CUSTOM_EXAMPLE = "python -m mnv3.export android-assets --custom runs/quick/photos     # your own model: the app's third button"


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (config.json with best.pt, or a published final.safetensors), e.g. runs/quick/mnist_small")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="output folder (default RUN_DIR/export). The export replaces or deletes only files an earlier "
                             "export wrote there (listed in its .mnv3-export.json or model.json); any other file is kept, "
                             "and one it would have to overwrite is refused before any work")
    parser.add_argument("--formats", type=_formats_arg, default=FORMATS, metavar="LIST",
                        help=f"comma-separated, from: {','.join(FORMATS)} (default: all)")  # fmt: skip
    parser.add_argument("--which", choices=("best", "last", "final"), default="best", help="checkpoint to export (default best)")
    parser.add_argument("--input-size", type=_image_side, default=None, metavar="PX",
                        help=f"side of the input the graph takes, 1 to {MAX_IMAGE_SIZE} (default: the dataset's native 28/32); "
                             "the graph resizes it to the size the run trained at, and the int8 calibration and parity "
                             "images are resized to it")  # fmt: skip
    data = parser.add_argument_group("data (int8 calibration uses training images; parity uses the test split)")
    data.add_argument("--data-root", default=None, metavar="DIR", help="dataset root (default: the run's, else data)")
    data.add_argument("--data-mirror", default=None, metavar="DIR", help="offline dataset mirror (default: the run's, else $MNV3_DATA_MIRROR)")
    data.add_argument("--calibration-batches", type=_positive_int, default=8, metavar="N", help="int8 calibration batches (default 8)")
    data.add_argument("--int8-keep-fp32", type=_kinds_arg, default=INT8_KEEP_FP32, metavar="LIST",
                      help=f"layers the int8 program leaves in fp32 (still in the XNNPACK delegate): kinds from "
                           f"{','.join(FP32_KINDS)} and/or module names of the wrapped model (model.features.1), or "
                           f"none (default {','.join(INT8_KEEP_FP32) or 'none'})")  # fmt: skip
    data.add_argument("--calibration-batch-size", type=_positive_int, default=32, metavar="N", help="images per calibration batch (default 32)")
    parser.add_argument("--onnx-opset", type=_positive_int, default=ONNX_OPSET, metavar="N",
                        help=f"ONNX opset (default {ONNX_OPSET}; older ones through the TorchScript-based exporter; "
                             "the file's own opset is checked)")  # fmt: skip
    checks = parser.add_argument_group("checks")
    checks.add_argument("--skip-parity", action="store_true", help="write the files and model.json only")
    checks.add_argument("--parity-samples", type=_positive_int, default=256, metavar="N",
                        help="test images compared logit by logit with eager, at batch 1 (default 256)")  # fmt: skip
    checks.add_argument("--eval-batch-size", type=_non_negative_int, default=0, metavar="B",
                        help="how the .pte test accuracy is measured: 1 = the shipped batch-1 file, B > 1 = a twin "
                             "program lowered at batch B, 0 = automatic (default)")  # fmt: skip
    checks.add_argument("--latency-runs", type=_non_negative_int, default=0, metavar="N",
                        help="time N batch-1 runs per artefact into the parity report (default 0: not timed; on a shared "
                             "machine the numbers mean little: make bench times the same programs properly)")  # fmt: skip
    checks.add_argument("--threads", type=_positive_int, default=None, metavar="N", help="CPU threads for torch and onnxruntime")
    checks.add_argument("--allow-undelegated", action="store_true",
                        help="only warn (do not fail) when ops that touch the input stay outside the XNNPACK delegate")  # fmt: skip


def _add_assets_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mnist", metavar="RUN", default=None, help="run folder of an MNIST-family (gray) model")
    parser.add_argument("--cifar", metavar="RUN", default=None, help="run folder of a CIFAR (RGB) model")
    parser.add_argument("--custom", metavar="RUN", default=None,
                        help="run folder of any model, e.g. trained on your own images (--dataset folder:PATH): assets/custom/, "
                             "the app's third button, labelled and preprocessed from its model.json")  # fmt: skip
    parser.add_argument("--assets-dir", metavar="DIR", default=str(DEFAULT_ASSETS_DIR), help=f"default {DEFAULT_ASSETS_DIR}")
    parser.add_argument("--images", type=_positive_int, default=20, metavar="N", help="test images per dataset (default 20)")
    parser.add_argument("--data-root", default=None, metavar="DIR", help="dataset root (default: the run's, else data)")
    parser.add_argument("--data-mirror", default=None, metavar="DIR", help="offline dataset mirror (default: the run's, else $MNV3_DATA_MIRROR)")


def _parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The command line and its commands' parsers: ``run`` (the default) and ``android-assets``."""
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="python -m mnv3.export",
        usage=(
            "python -m mnv3.export [run] RUN_DIR [options]\n"
            "       python -m mnv3.export android-assets [--mnist RUN] [--cifar RUN] [--custom RUN] [options]"
        ),
        description=(
            "Export trained run folders for phones. All artefacts take raw pixels in [0, 1] (pixel/255), float32 "
            "NCHW at the dataset's native size (batch 1; ONNX and .ptl take any batch); normalisation happens inside the graph.\n\n"
            "python -m mnv3.export RUN_DIR [options] is short for python -m mnv3.export run RUN_DIR [options]."
        ),
        formatter_class=raw,
        epilog=(
            FORMATS_HELP + "\nexamples:\n" + RUN_EXAMPLES + f"  {ASSETS_EXAMPLE}\n  {CUSTOM_EXAMPLE}\n\n"
            "Each command explains its options: python -m mnv3.export run --help, "
            "python -m mnv3.export android-assets --help.\n" + EXIT_HELP
        ),
    )
    commands = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    run = commands.add_parser(
        "run", prog="python -m mnv3.export [run]", formatter_class=raw,
        help="export one run folder (all formats by default) and check every file against eager PyTorch "
             "(the default command: it may be left out)",
        description=(
            "Export a trained run folder for phones and check every exported file against eager PyTorch. "
            "All artefacts take raw pixels in [0, 1] (pixel/255), float32 NCHW at the dataset's native size "
            "(batch 1; ONNX and .ptl take any batch); normalisation happens inside the graph. The command name may be left out."
        ),
        epilog=FORMATS_HELP + "\nexamples:\n" + RUN_EXAMPLES + "\n" + EXIT_HELP,
    )  # fmt: skip
    _add_run_arguments(run)
    assets = commands.add_parser(
        "android-assets", prog="python -m mnv3.export android-assets",
        help="write the Android app's assets (model.pte, model.json, test PNGs, golden.json) for an MNIST, a CIFAR and/or a custom run",
        description=(
            "Write the Android app's assets: for each run, <ASSETS>/<dataset>/model.pte (fp32), model.json, "
            "images/NN.png (test images, lossless) and golden.json (the .pte's logits on those PNGs, from "
            "the ExecuTorch Python runtime)."
        ),
        epilog=f"examples:\n  {ASSETS_EXAMPLE}\n  {CUSTOM_EXAMPLE}", formatter_class=raw,
    )  # fmt: skip
    _add_assets_arguments(assets)
    return parser, {"run": run, "android-assets": assets}


def _with_command(argv: list[str]) -> list[str]:
    """``argv`` with the default command put first when it names none (and does not ask for help)."""
    # A run folder literally named "run" or "android-assets" is reached as ./run.
    if argv and (argv[0] in COMMANDS or argv[0] in ("-h", "--help")):
        return argv
    return [DEFAULT_COMMAND, *argv]


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point (``argv`` without the program name; default ``sys.argv[1:]``); returns the exit
    status: 0, or 2 for problems the user can fix. argparse exits (SystemExit 2) on a bad argument."""
    argv = _with_command(list(sys.argv[1:] if argv is None else argv))
    parser, commands = _parsers()
    args = parser.parse_args(argv)
    if args.command == "android-assets" and args.mnist is None and args.cifar is None and args.custom is None:
        commands["android-assets"].error("give --mnist RUN, --cifar RUN and/or --custom RUN")
    try:
        if args.command == "android-assets":
            make_android_assets(args.mnist, args.cifar, args.assets_dir, args.images,
                                data_root=args.data_root, data_mirror=args.data_mirror, custom_run=args.custom)  # fmt: skip
            return 0
        export_run(
            args.run_dir, args.out, formats=args.formats, which=args.which, input_size=args.input_size,
            data_root=args.data_root, data_mirror=args.data_mirror,
            calibration_batches=args.calibration_batches, calibration_batch_size=args.calibration_batch_size,
            int8_keep_fp32=args.int8_keep_fp32,
            skip_parity=args.skip_parity, parity_samples=args.parity_samples, eval_batch_size=args.eval_batch_size,
            latency_runs=args.latency_runs, onnx_opset=args.onnx_opset, threads=args.threads, require_full_delegation=not args.allow_undelegated,
        )  # fmt: skip
        return 0
    except (CheckpointError, ExportError, DataUnavailableError, RecordError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: {os_error_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the folder holds only whole files, and no parity report until an export of it finishes",
              file=sys.stderr)  # fmt: skip
        return 130
