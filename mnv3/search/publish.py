"""The committable copy of a search: what notebook 08 and the README show, in ``reports/search/``.

``make search`` ends with :func:`publish_search`, which copies from the search folder:
``search.jsonl`` (every proposal and step), ``searched.json`` (the spec), ``latency-validation.json``,
``latency.json`` (every timing session, with the machine's load) and ``comparison.json``; the seed
run as :mod:`mnv3.publish` publishes any run (``seed/<name>/``: config, metrics, test.json and the
best weights as safetensors); and each comparison run's record (``runs/<name>/``: config.json,
metrics.csv, test.json; no weights: they are trained again by ``make search``).
"""
from __future__ import annotations

import shutil
from pathlib import Path

from ..files import write_json_atomic
from ..publish import publish_run, relative_paths
from ..runs import load_record

__all__ = ["publish_search", "SEARCH_FILES"]

SEARCH_FILES = ("search.jsonl", "searched.json", "latency-validation.json", "comparison.json")


def publish_search(search_dir: str | Path, seed_run: str | Path, dest: str | Path) -> Path:
    """Copy a finished search (``search_dir``), its seed run and its comparison runs into ``dest``.

    Files the search has not written yet (no comparison, say) are skipped, and a stale copy of
    them in ``dest`` is removed, so ``dest`` never mixes two searches. Returns ``dest``.
    """
    search_dir, seed_run, dest = Path(search_dir), Path(seed_run), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name in (*SEARCH_FILES, "latency.json"):
        source = search_dir / ("latency" if name == "latency.json" else "") / name
        if source.is_file():
            shutil.copyfile(source, dest / name)
        else:
            (dest / name).unlink(missing_ok=True)
    publish_run(seed_run, dest / "seed" / seed_run.name)
    runs_dest = dest / "runs"
    shutil.rmtree(runs_dest, ignore_errors=True)
    for config in sorted((search_dir / "runs").glob("*/*/config.json")):
        run = config.parent
        if not (run / "test.json").is_file():
            continue
        (runs_dest / run.name).mkdir(parents=True)
        write_json_atomic(runs_dest / run.name / "config.json", relative_paths(load_record(run)))
        for name in ("metrics.csv", "test.json"):
            shutil.copyfile(run / name, runs_dest / run.name / name)
    return dest
