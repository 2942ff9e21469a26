"""The run folder: where a run lives, what it is called, who holds it, and what machine it ran on.

A run of experiment E under profile P lands in ``OUT/P/NAME``. NAME is E for the profile's own
settings, and shows the overrides otherwise (``mnist_small-epochs5-lr0.05``), so that a run with
other settings never replaces the profile's result. ``--name`` chooses it explicitly.
"""
from __future__ import annotations

import dataclasses
import errno
import json
import os
import re
import socket
import time
from pathlib import Path
from typing import Any

from .experiments import Experiment, get_experiment

__all__ = ["RunLockedError", "run_name", "overrides", "RunLock", "read_metrics", "ablation_rows", "ablation_table"]

LOCK_FILE = ".lock"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=-]*$")


class RunLockedError(RuntimeError):
    """Another process is training into the same run folder."""


def overrides(experiment: str, profile: str, exp: Experiment) -> dict[str, Any]:
    """The fields of ``exp`` that differ from the profile's own settings, in declaration order."""
    default = get_experiment(experiment, profile)
    return {f.name: getattr(exp, f.name) for f in dataclasses.fields(Experiment) if getattr(exp, f.name) != getattr(default, f.name)}


def run_name(experiment: str, profile: str, exp: Experiment, seed: int = 0, name: str | None = None) -> str:
    """The run folder's name: ``name`` when given, else the experiment plus its overrides and seed.

    Raises ValueError for a name that is not a plain folder name.
    """
    if name is not None:
        if not _SAFE_NAME.match(name):
            raise ValueError(f"--name {name!r}: use letters, digits and . _ + = - only (it becomes a folder name).")
        return name
    parts = [f"{key.replace('_', '-')}{value}" for key, value in overrides(experiment, profile, exp).items()]
    if seed:
        parts.append(f"seed{seed}")
    return "-".join([experiment, *(re.sub(r"[^A-Za-z0-9_.+=-]", "_", p) for p in parts)])


class RunLock:
    """An exclusive lock on a run folder (``fcntl.flock`` on ``.lock``), released when the process ends.

    The lock file names its holder (pid, host, start time), so a second run can say who holds it.
    Raises RunLockedError when another process holds the folder.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise RunLockedError(
                f"{self.path.parent}: another training holds this run folder ({self.holder()}). "
                "Wait for it to finish, stop it, or choose another --out or --name."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        self._fd = fd
        return self

    def holder(self) -> str:
        try:
            info = json.loads(self.path.read_text() or "{}")
            return f"process {info['pid']} on {info['host']}, started {info['started']}"
        except (OSError, ValueError, KeyError):
            return "a process that did not say who it is"

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None
            # A run refused before it wrote anything leaves no empty folder behind.
            if [p.name for p in self.path.parent.iterdir()] == [LOCK_FILE]:
                self.path.unlink(missing_ok=True)
                self.path.parent.rmdir()

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def read_metrics(run_dir: str | Path) -> list[dict[str, float]]:
    """A run's metrics.csv as rows of floats (empty when there is none yet)."""
    import csv

    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def ablation_rows(folder: str | Path) -> list[dict[str, Any]]:
    """One row per run folder under ``folder``: its overrides, best validation accuracy (and epoch),
    epochs done and training seconds. The validation split chooses; the test set is not read."""
    rows = []
    for config_path in sorted(Path(folder).glob("*/config.json")):
        config = json.loads(config_path.read_text())
        metrics = read_metrics(config_path.parent)
        best = max(metrics, key=lambda r: r["val_acc"], default=None)
        rows.append({
            "name": config_path.parent.name,
            "overrides": config.get("overrides", {}),
            "seed": config.get("seed"),
            "best_val_acc": best["val_acc"] if best else None,
            "best_epoch": int(best["epoch"]) if best else None,
            "epochs_done": len(metrics),
            "epochs": config["fields"]["epochs"],
            "train_seconds": sum(r["epoch_seconds"] for r in metrics),
        })  # fmt: skip
    return rows


def ablation_table(rows: list[dict[str, Any]]) -> str:
    """``ablation_rows`` as a Markdown table, best validation accuracy first."""
    lines = ["| run | change | validation accuracy (epoch) | epochs | train seconds |", "| --- | --- | --- | --- | --- |"]
    for r in sorted(rows, key=lambda r: -(r["best_val_acc"] or 0)):
        change = ", ".join(f"{k}={v}" for k, v in r["overrides"].items()) or "the profile's own"
        val = f"{100 * r['best_val_acc']:.2f}% ({r['best_epoch']})" if r["best_val_acc"] is not None else "none yet"
        lines.append(f"| {r['name']} | {change} | {val} | {r['epochs_done']} of {r['epochs']} | {r['train_seconds']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m mnv3.runs", description="Summarise a folder of run folders.")
    parser.add_argument("folder", help="e.g. runs/full: every <name>/config.json below it is one row")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a Markdown table")
    args = parser.parse_args(argv)
    rows = ablation_rows(args.folder)
    if not rows:
        raise SystemExit(f"error: no run folders (NAME/config.json) in {args.folder}")
    print(json.dumps(rows, indent=2) if args.json else ablation_table(rows))


if __name__ == "__main__":
    main()
