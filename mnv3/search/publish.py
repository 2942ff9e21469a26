"""The committable copy of a search: what notebook 08 and the README show, in ``reports/search/``.

``make search`` ends with :func:`publish_search`, which copies from the search folder:
``search.jsonl`` (every proposal and step), ``searched.json`` (the spec), ``latency-validation.json``,
``latency.json`` (every timing session, with the machine's load) and ``comparison.json``; the seed
run as :mod:`mnv3.publish` publishes any run (``seed/<name>/``: config, metrics, test.json and the
best weights as safetensors); and each comparison run's record (``runs/<name>/``: config.json,
metrics.csv, test.json; no weights: ``make search`` trains them again).

The copy is made in a staging folder beside the destination and swapped in whole, so the
destination never mixes two searches, and an interrupted publish leaves the old copy as it was.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..files import make_staging, remove_stale_staging, write_json_atomic
from ..publish import publish_run, relative_paths
from ..runs import load_record

__all__ = ["publish_search", "SEARCH_FILES"]

SEARCH_FILES = ("search.jsonl", "searched.json", "latency-validation.json", "comparison.json")
STAGING = "search-staging"


def publish_search(search_dir: str | Path, seed_run: str | Path, dest: str | Path) -> Path:
    """Replace ``dest`` with the copy of a search (``search_dir``), its seed run and its finished
    comparison runs (module docstring); files the search has not written yet (no comparison, say)
    are left out. Returns ``dest``. Raises FileNotFoundError when ``search_dir`` holds no
    ``search.jsonl``, and what :func:`mnv3.publish.publish_run` raises for the seed run."""
    search_dir, seed_run, dest = Path(search_dir), Path(seed_run), Path(dest)
    if not (search_dir / "search.jsonl").is_file():
        raise FileNotFoundError(f"{search_dir}/search.jsonl: no search there to publish; run python -m mnv3.search first")
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
