"""Copy a finished run into the small, committable form that the reports read.

    python -m mnv3.publish runs/full reports/full/runs
    python -m mnv3.publish --replace runs/full/mnist_small reports/full/runs   # over an earlier copy

For each run folder under SRC it writes DEST/<name>/ with metrics.csv, test.json (and train.log
when there is one) as they are, config.json with machine paths made relative, and the best weights
alone, in half precision (bf16 keeps fp32's range; Small is about 3 MB, Large about 8.5 MB), as
``final.safetensors`` with ``final.json`` (model config, epoch, dtype) beside it. safetensors holds
tensors and nothing else, so a committed result cannot run code when loaded. Optimizer state and
last.pt are left behind: they only matter for resuming on the training machine. A run published
before safetensors (with ``final.pt``) can be given as SRC to convert it into another DEST.

Every record is read through :mod:`mnv3.records` first, so a damaged or foreign file is refused,
naming it, before anything is written. Publishing is whole or not at all: the copy is made in a
staging folder beside DEST/<name> and renamed into place. A DEST/<name> that already holds
something (another run, or an earlier copy of this one) is refused unless ``--replace`` is given,
and then it is replaced whole, so no file of the old run (its test.json, weights, train.log or
export/) stays beside the new one.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import torch

from .checkpoint import CheckpointError, check_model_config, evaluation_weights, load_checkpoint, model_with_weights, load_weights, save_weights, weights_file
from .files import make_staging, os_error_line, remove_stale_staging, write_json_atomic
from .paths import relative_to_cwd
from .records import RecordError, read_record
from .runs import load_record

__all__ = ["publish_run", "relative_paths", "PublishError"]

COPIED = ("metrics.csv", "test.json")
OPTIONAL = ("train.log",)
PATH_FIELDS = ("data_root", "data_mirror")
STAGING = "publish"  # DEST/.<name>.publish-<pid>-<random>/ while a copy is made


class PublishError(CheckpointError):
    """A destination that publishing may not write or replace; the message says what to do."""


def _relative(value: str) -> str:
    return relative_to_cwd(value) if os.path.isabs(value) else value


def relative_paths(config: dict) -> dict:
    """``config`` with its machine paths (data_root, data_mirror, those in command, an image
    folder's path) made relative to the working folder, so a committed result does not carry one
    machine's folder layout."""
    config = dict(config)
    for key in PATH_FIELDS:
        if isinstance(config.get(key), str):
            config[key] = _relative(config[key])
    folder = (config.get("dataset_info") or {}).get("folder")
    if isinstance(folder, dict) and isinstance(folder.get("path"), str):  # --dataset folder:PATH
        config["dataset_info"] = {**config["dataset_info"], "folder": {**folder, "path": _relative(folder["path"])}}
    if isinstance(config.get("command"), str):
        config["command"] = " ".join(_relative(word) if word.startswith("/") else word for word in config["command"].split(" "))
    return config


def _check_destination(run_dir: Path, dest: Path, replace: bool) -> None:
    """Refuse, before any work, a destination that is the run itself, a file, or a folder that
    holds something when ``replace`` is off (or, with it, a folder that is not a run)."""
    if dest.resolve() == run_dir.resolve() or run_dir.resolve() in dest.resolve().parents:
        raise PublishError(f"{dest}: that is the run folder itself (or inside it); publish into another DEST.")
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise PublishError(f"{dest}: a file or link stands there, where the published run's folder would go; move it or choose another DEST.")
    if dest.is_dir() and any(dest.iterdir()):
        if not (dest / "config.json").exists():  # --replace deletes only a run folder: do not suggest it
            raise PublishError(f"{dest} holds files but no config.json: it is not a run folder, so publish will not replace it "
                               "(not even with --replace); move it or choose another DEST.")
        if not replace:
            raise PublishError(f"{dest} already holds a run; pass --replace to replace that folder whole "
                               "(nothing of it is kept), or choose another DEST.")


def publish_run(run_dir: str | Path, dest: str | Path, dtype: torch.dtype = torch.bfloat16, *, unfinished: bool = False,
                replace: bool = False) -> Path:
    """Write the committable copy of a finished run into ``dest``; returns ``dest``.

    With ``unfinished``, a run stopped before its end (no test.json) is published too: its
    config.json, metrics.csv and train.log, without weights, so the reports can show how far it got.
    ``dest`` must be new or empty unless ``replace``: then a run folder there is replaced whole.
    The copy is staged beside ``dest`` and renamed into place; on any error ``dest`` is left as it was.
    Raises CheckpointError when the run is unfinished (and ``unfinished`` is off) or its weights
    are unreadable, unsafe or of another model than its config.json describes; RecordError
    (:mod:`mnv3.records`) when a record breaks its rules; PublishError for a destination it may
    not write; OSError when the destination's folder is not writable.
    """
    run_dir, dest = Path(run_dir), Path(dest)
    source = run_dir / "best.pt" if (run_dir / "best.pt").is_file() else weights_file(run_dir, "final")
    missing = [name for name in ("config.json", *COPIED) if not (run_dir / name).is_file()] + (["best.pt"] if source is None else [])
    stopped = unfinished and "test.json" in missing and (run_dir / "config.json").is_file() and (run_dir / "metrics.csv").is_file()
    if missing and not stopped:
        raise CheckpointError(
            f"{run_dir}: not a finished run ({', '.join(missing)} missing); let it finish or resume it "
            "(or pass --unfinished to publish its curves without weights)."
        )
    _check_destination(run_dir, dest, replace)
    config = load_record(run_dir)
    read_record(run_dir / "metrics.csv")
    weights = None
    if not stopped:
        read_record(run_dir / "test.json")
        best = load_weights(source) if source.suffix == ".safetensors" else load_checkpoint(source)
        check_model_config(best["model_config"], config["model"], where=str(source), expected_from=str(run_dir / "config.json"))
        model_with_weights(best["model_config"], evaluation_weights(best), where=str(source))  # refuse what would not load
        weights = {k: v.to(dtype) if v.is_floating_point() else v for k, v in evaluation_weights(best).items()}

    remove_stale_staging(dest.parent, f"{dest.name}.{STAGING}")
    staging = make_staging(dest.parent, f"{dest.name}.{STAGING}")
    try:
        new = staging / "new"
        new.mkdir(mode=0o777)
        names = ("metrics.csv", *OPTIONAL) if stopped else COPIED + OPTIONAL
        for name in names:
            if (run_dir / name).is_file():
                shutil.copyfile(run_dir / name, new / name)
        write_json_atomic(new / "config.json", relative_paths(config))
        if weights is not None:
            save_weights(new / "final.safetensors", weights, best["model_config"], epoch=best.get("epoch"),
                         dtype=str(dtype).replace("torch.", ""))  # fmt: skip
        if dest.exists():
            os.replace(dest, staging / "old")  # the old run goes whole; it is deleted with the staging folder
        try:
            os.replace(new, dest)
        except BaseException:
            if (staging / "old").exists():
                os.replace(staging / "old", dest)
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mnv3.publish",
        description="Copy finished runs (SRC/<name>/) into committable result folders (DEST/<name>/): records as they are, "
                    "config.json with relative paths, the best weights in bf16 as final.safetensors. Each copy is whole or "
                    "not made at all.",
        epilog="examples:\n  python -m mnv3.publish runs/full reports/full/runs\n"
               "  python -m mnv3.publish --replace runs/full/mnist_small reports/full/runs\n\n"
               "exit status: 0 every run published, 2 a run or destination refused (each run is tried; the message names the file).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("src", help="a run folder, or a folder of run folders (e.g. runs/full)")
    parser.add_argument("dest", help="where the <name>/ folders go (e.g. reports/full/runs)")
    parser.add_argument(
        "--unfinished", action="store_true",
        help="also publish runs stopped before their end (config.json, metrics.csv, train.log; no weights), "
        "which the reports label unfinished",
    )
    parser.add_argument("--replace", action="store_true",
                        help="replace a DEST/<name>/ run folder that is already there, whole (default: refuse it)")
    args = parser.parse_args(argv)
    src = Path(args.src)
    try:
        runs = [src] if (src / "config.json").exists() else sorted(p for p in src.iterdir() if (p / "config.json").exists()) if src.is_dir() else []
    except OSError as err:
        print(f"error: {os_error_line(err)}", file=sys.stderr)
        raise SystemExit(2) from None
    if not runs:
        print(f"error: no run folders (with config.json) in {src}", file=sys.stderr)
        raise SystemExit(2)
    failed = 0
    for run in runs:  # every run is tried; one that cannot be published does not stop the others
        try:
            out = publish_run(run, Path(args.dest) / run.name, unfinished=args.unfinished, replace=args.replace)
            print(f"{run} -> {out}" + ("" if (out / "test.json").is_file() else " (unfinished: no weights)"))
        except (CheckpointError, RecordError) as err:
            print(f"error: {err}", file=sys.stderr)
            failed += 1
        except OSError as err:
            print(f"error: {os_error_line(err)}", file=sys.stderr)
            failed += 1
        except KeyboardInterrupt:
            print(f"interrupted: {Path(args.dest) / run.name} is as it was before this run's copy began", file=sys.stderr)
            raise SystemExit(130) from None
    if failed:
        print(f"{failed} of {len(runs)} run(s) not published", file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    main()
