"""The committable copy of a search: what notebook 08 and the README show, in ``reports/search/``.

``make search`` ends with :func:`publish_search`, which copies from the search folder:
``search.jsonl`` (every proposal and step), ``searched.json`` (the spec), ``latency-validation.json``,
``latency.json`` (every timing session, with the machine's load) and ``comparison.json``; the seed
run as :mod:`mnv3.publish` publishes any run (``seed/<name>/``: config, metrics, test.json and the
best weights as safetensors); and each comparison run's record (``runs/<name>/``: config.json,
metrics.csv, test.json; no weights: ``make search`` trains them again).

The copy is made in a staging folder beside the destination and swapped in whole, so the
destination never mixes two searches, and an interrupted publish leaves the old copy as it was.
Refused (:class:`PublishError`, before anything is written): a destination that holds anything but
an earlier copy of a search; a seed run other than the one the search started from; and a
published copy as the source (it lacks the search folder's ``latency/`` and ``runs/<profile>/``).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..files import make_staging, remove_stale_staging, write_json_atomic
from ..paths import REPO
from ..publish import publish_run, relative_paths
from ..runs import load_record
from .netadapt import read_log

__all__ = ["publish_search", "PublishError", "SEARCH_FILES", "PUBLISHED_NAMES"]

SEARCH_FILES = ("search.jsonl", "searched.json", "latency-validation.json", "comparison.json")
# What a published copy holds: the search's files, the latency store, the seed run, the runs' records.
PUBLISHED_NAMES = frozenset({*SEARCH_FILES, "latency.json", "seed", "runs"})
STAGING = "search-staging"


class PublishError(ValueError):
    """A search, seed run or destination that :func:`publish_search` will not use; the message is
    one line naming the path and what to do."""


def _check(search_dir: Path, seed_run: Path, dest: Path) -> None:
    if search_dir.resolve() == dest.resolve() or (not (search_dir / "latency").is_dir() and (search_dir / "latency.json").is_file()):
        raise PublishError(f"{search_dir} is a published copy of a search, not the search's own folder (it has no latency/ "
                           "or runs/<profile>/); publish from the folder the search ran in, e.g. runs/search/netadapt-quick")
    start = next((r for r in read_log(search_dir / "search.jsonl") if r.get("type") == "start"), None)
    recorded = Path(str(start["run_dir"])) if start and start.get("run_dir") else None
    if recorded is not None:
        where = recorded if recorded.is_absolute() else REPO / recorded
        # The same run, or a published copy of it: its name, and where the search's own seed is on
        # this machine, the same model (spec and weights' shapes come from it).
        same = recorded.name == seed_run.name and (not (where / "config.json").is_file() or
                                                   load_record(where)["model"] == load_record(seed_run)["model"])
        if not same:
            raise PublishError(f"--seed-run {seed_run} is not the run this search started from ({recorded}, in "
                               f"{search_dir}/search.jsonl); pass that run")
    if dest.exists() and not dest.is_dir():
        raise PublishError(f"{dest} is a file; --to takes a folder (absent, or an earlier copy of a search)")
    if dest.is_dir():
        if Path.cwd().resolve().is_relative_to(dest.resolve()):
            raise PublishError(f"{dest} is the working folder or holds it, so it cannot be swapped whole; run from elsewhere "
                               "or choose another --to")
        others = sorted(p.name for p in dest.iterdir() if p.name not in PUBLISHED_NAMES)
        if others or (any(dest.iterdir()) and not (dest / "search.jsonl").is_file()):
            named = ", ".join(others[:5]) + (" ..." if len(others) > 5 else "")
            raise PublishError(f"{dest} holds files that are not a published search ({named or 'no search.jsonl'}), which "
                               "publishing would delete; choose another --to, or move them first")


def publish_search(search_dir: str | Path, seed_run: str | Path, dest: str | Path) -> Path:
    """Replace ``dest`` with the copy of a search (``search_dir``), its seed run and its finished
    comparison runs (module docstring); files the search has not written yet (no comparison, say)
    are left out. Returns ``dest``. Raises FileNotFoundError when ``search_dir`` holds no
    ``search.jsonl``, :class:`PublishError` for what the module docstring lists, and what
    :func:`mnv3.publish.publish_run` raises for the seed run."""
    search_dir, seed_run, dest = Path(search_dir), Path(seed_run), Path(dest)
    if not (search_dir / "search.jsonl").is_file():
        raise FileNotFoundError(f"{search_dir}/search.jsonl: no search there to publish; run python -m mnv3.search first")
    _check(search_dir, seed_run, dest)
    remove_stale_staging(dest.parent, f"{dest.name}.{STAGING}")
    staging = make_staging(dest.parent, f"{dest.name}.{STAGING}")
    try:
        new = staging / "new"
        new.mkdir()
        for name in SEARCH_FILES:
            if (search_dir / name).is_file():
                shutil.copyfile(search_dir / name, new / name)
        if (search_dir / "latency" / "latency.json").is_file():
            shutil.copyfile(search_dir / "latency" / "latency.json", new / "latency.json")
        publish_run(seed_run, new / "seed" / seed_run.name)
        for config in sorted((search_dir / "runs").glob("*/*/config.json")):
            run = config.parent
            if (run / "test.json").is_file():
                (new / "runs" / run.name).mkdir(parents=True)
                write_json_atomic(new / "runs" / run.name / "config.json", relative_paths(load_record(run)))
                for name in ("metrics.csv", "test.json"):
                    shutil.copyfile(run / name, new / "runs" / run.name / name)
        old = staging / "old" if dest.exists() else None
        if old is not None:
            os.replace(dest, old)  # deleted with the staging folder once the new copy is in place
        try:
            os.replace(new, dest)
        except BaseException:
            if old is not None:
                os.replace(old, dest)
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest
