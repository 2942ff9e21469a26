"""Copy a finished run into the small, committable form that the reports read.

    python -m mnv3.publish runs/full reports/full/runs

For each run folder under SRC it writes DEST/<experiment>/ with config.json, metrics.csv and
test.json as they are, and ``final.pt``: the best checkpoint's weights alone, in half precision
(bf16 keeps fp32's range; Small is about 3 MB, Large about 8.5 MB), which ``load_run`` reads.
Optimizer state and last.pt are left behind: they only matter for resuming on the training machine.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint

__all__ = ["publish_run"]

COPIED = ("config.json", "metrics.csv", "test.json")


def publish_run(run_dir: str | Path, dest: str | Path, dtype: torch.dtype = torch.bfloat16) -> Path:
    run_dir, dest = Path(run_dir), Path(dest)
    missing = [name for name in (*COPIED, "best.pt") if not (run_dir / name).is_file()]
    if missing:
        raise CheckpointError(f"{run_dir}: not a finished run ({', '.join(missing)} missing); let it finish or resume it.")
    best = load_checkpoint(run_dir / "best.pt")
    dest.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        shutil.copy2(run_dir / name, dest / name)
    weights = {k: v.to(dtype) if v.is_floating_point() else v for k, v in best["model"].items()}
    save_checkpoint(dest / "final.pt", {"model_config": best["model_config"], "model": weights, "epoch": best["epoch"], "dtype": str(dtype)})
    return dest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mnv3.publish",
        description="Copy finished runs (SRC/<experiment>/) into committable result folders (DEST/<experiment>/).",
        epilog="example: python -m mnv3.publish runs/full reports/full/runs",
    )
    parser.add_argument("src", help="a run folder, or a folder of run folders (e.g. runs/full)")
    parser.add_argument("dest", help="where the <experiment>/ folders go (e.g. reports/full/runs)")
    args = parser.parse_args(argv)
    src = Path(args.src)
    runs = [src] if (src / "config.json").is_file() else sorted(p for p in src.iterdir() if (p / "config.json").is_file()) if src.is_dir() else []
    if not runs:
        print(f"error: no run folders (with config.json) in {src}", file=sys.stderr)
        raise SystemExit(2)
    try:
        for run in runs:
            out = publish_run(run, Path(args.dest) / run.name)
            print(f"{run} -> {out}")
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
