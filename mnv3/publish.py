"""Copy a finished run into the small, committable form that the reports read.

    python -m mnv3.publish runs/full reports/full/runs

For each run folder under SRC it writes DEST/<experiment>/ with metrics.csv, test.json (and
train.log when there is one) as they are, config.json with machine paths made relative, and the
best weights alone, in half precision (bf16 keeps fp32's range; Small is about 3 MB, Large about
8.5 MB), as ``final.safetensors`` with ``final.json`` (model config, epoch, dtype) beside it.
safetensors holds tensors and nothing else, so a committed result cannot run code when loaded.
Optimizer state and last.pt are left behind: they only matter for resuming on the training machine.
A run published before safetensors (with ``final.pt``) can be given as SRC to convert it.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import torch

from .checkpoint import CheckpointError, check_model_config, evaluation_weights, load_checkpoint, model_with_weights, load_weights, save_weights, weights_file
from .files import write_json_atomic
from .paths import relative_to_cwd
from .runs import load_record

__all__ = ["publish_run", "relative_paths"]

COPIED = ("metrics.csv", "test.json")
OPTIONAL = ("train.log",)
PATH_FIELDS = ("data_root", "data_mirror")


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


def publish_run(run_dir: str | Path, dest: str | Path, dtype: torch.dtype = torch.bfloat16, *, unfinished: bool = False) -> Path:
    """Write the committable copy of a finished run into ``dest``; returns ``dest``.

    With ``unfinished``, a run stopped before its end (no test.json) is published too: its
    config.json, metrics.csv and train.log, without weights, so the reports can show how far it got.
    Raises CheckpointError when the run is unfinished (and ``unfinished`` is off) or its weights
    are unreadable, unsafe or of another model than its config.json describes.
    """
    run_dir, dest = Path(run_dir), Path(dest)
    source = run_dir / "best.pt" if (run_dir / "best.pt").is_file() else weights_file(run_dir, "final")
    missing = [name for name in ("config.json", *COPIED) if not (run_dir / name).is_file()] + (["best.pt"] if source is None else [])
    if unfinished and "test.json" in missing and (run_dir / "config.json").is_file() and (run_dir / "metrics.csv").is_file():
        return _publish_unfinished(run_dir, dest)
    if missing:
        raise CheckpointError(
            f"{run_dir}: not a finished run ({', '.join(missing)} missing); let it finish or resume it "
            "(or pass --unfinished to publish its curves without weights)."
        )
    config = load_record(run_dir)
    best = load_weights(source) if source.suffix == ".safetensors" else load_checkpoint(source)
    check_model_config(best["model_config"], config["model"], where=str(source), expected_from=str(run_dir / "config.json"))
    model_with_weights(best["model_config"], evaluation_weights(best), where=str(source))  # refuse what would not load
    dest.mkdir(parents=True, exist_ok=True)
    for name in COPIED + tuple(n for n in OPTIONAL if (run_dir / n).is_file()):
        if (run_dir / name).resolve() != (dest / name).resolve():
            shutil.copyfile(run_dir / name, dest / name)
    write_json_atomic(dest / "config.json", relative_paths(config))
    weights = {k: v.to(dtype) if v.is_floating_point() else v for k, v in evaluation_weights(best).items()}
    save_weights(dest / "final.safetensors", weights, best["model_config"], epoch=best.get("epoch"), dtype=str(dtype).replace("torch.", ""))
    return dest


def _publish_unfinished(run_dir: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("metrics.csv", *OPTIONAL):
        if (run_dir / name).is_file() and (run_dir / name).resolve() != (dest / name).resolve():
            shutil.copyfile(run_dir / name, dest / name)
    write_json_atomic(dest / "config.json", relative_paths(load_record(run_dir)))
    return dest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mnv3.publish",
        description="Copy finished runs (SRC/<name>/) into committable result folders (DEST/<name>/).",
        epilog="example: python -m mnv3.publish runs/full reports/full/runs",
    )
    parser.add_argument("src", help="a run folder, or a folder of run folders (e.g. runs/full)")
    parser.add_argument("dest", help="where the <experiment>/ folders go (e.g. reports/full/runs)")
    parser.add_argument(
        "--unfinished", action="store_true",
        help="also publish runs stopped before their end (config.json, metrics.csv, train.log; no weights), "
        "which the reports label unfinished",
    )
    args = parser.parse_args(argv)
    src = Path(args.src)
    runs = [src] if (src / "config.json").is_file() else sorted(p for p in src.iterdir() if (p / "config.json").is_file()) if src.is_dir() else []
    if not runs:
        print(f"error: no run folders (with config.json) in {src}", file=sys.stderr)
        raise SystemExit(2)
    failed = 0
    for run in runs:  # every run is tried; one that cannot be published does not stop the others
        try:
            out = publish_run(run, Path(args.dest) / run.name, unfinished=args.unfinished)
            print(f"{run} -> {out}" + ("" if (out / "test.json").is_file() else " (unfinished: no weights)"))
        except CheckpointError as err:
            print(f"error: {err}", file=sys.stderr)
            failed += 1
    if failed:
        print(f"{failed} of {len(runs)} run(s) not published", file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    main()
