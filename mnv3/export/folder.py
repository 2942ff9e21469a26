"""The export folder: which of its files an export wrote, and clearing those when an export starts.

An export folder can be the user's own (``--out DIR``), so an export owns only what it wrote:

- the names listed in ``.mnv3-export.json`` (:data:`OWNED_LIST`), which an export writes before it
  writes any file and rewrites when it is done, so even a killed export's files are known;
- in a folder exported before that list existed, the files that an mnv3 ``model.json`` there lists
  (read through :mod:`mnv3.records`), and model.json, parity.json and parity.md themselves.

The list also names the run exported there (``run``: its path relative to the export folder), so
that one run's export never silently replaces another's (:func:`exported_run`).

Only names an export can write (:data:`EXPORT_NAMES`) are ever owned, whatever a list says. A file
the export is about to write that it does not own is refused up front (ExportError); any other file
of the folder is left alone. When an export starts, the reports that describe the folder go first:
parity.json and parity.md, then model.json. So a report never sits beside files it does not
describe, even when the export is killed halfway; :func:`mnv3.export.run.export_run` writes
model.json after the files and the parity report last.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Iterable

from ..files import remove_stale_temporaries, write_json_atomic
from ..paths import relative_to_cwd
from ..records import RecordError, read_record
from .deps import ExportError
from .formats import FILE_NAMES

OWNED_LIST = ".mnv3-export.json"
OWNED_FORMAT = "mnv3-export-files"
REPORTS = ("parity.json", "parity.md")  # removed first when an export starts, written last
MANIFEST = "model.json"
EXPORT_NAMES = (*FILE_NAMES.values(), MANIFEST, *REPORTS)


def _read_list(out_dir: Path) -> dict:
    """``.mnv3-export.json`` of ``out_dir``; {} when there is none (an older export, or none yet) or
    it is damaged or of another format: such a list vouches for nothing."""
    try:
        listed = json.loads((out_dir / OWNED_LIST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return listed if isinstance(listed, dict) and listed.get("format") == OWNED_FORMAT else {}


def owned_files(out_dir: str | Path) -> set[str]:
    """The names in ``out_dir`` that an export wrote (see the module docstring); files need not exist."""
    out_dir = Path(out_dir)
    listed = _read_list(out_dir).get("files")
    owned = {name for name in listed if isinstance(name, str)} if isinstance(listed, list) else set()
    if (out_dir / MANIFEST).is_file():
        try:
            manifest = read_record(out_dir / MANIFEST, kind="manifest")
            owned |= {MANIFEST, *REPORTS, *manifest["files"].values()}
        except RecordError:
            pass
    return owned & set(EXPORT_NAMES)


def _listed_run(out_dir: Path) -> str | None:
    """The ``run`` that ``.mnv3-export.json`` names (relative to ``out_dir``), None without one."""
    run = _read_list(out_dir).get("run")
    return run if isinstance(run, str) and run else None


def exported_run(out_dir: str | Path) -> Path | None:
    """The run folder (resolved) whose export ``out_dir`` holds, or None when it holds none.

    Read from the ``run`` of ``.mnv3-export.json`` (relative to ``out_dir``), else, for a folder
    exported before the list named its run, from model.json's ``source_run.run_dir`` (relative to
    the working folder). A damaged list or model.json names no run.
    """
    out_dir = Path(out_dir)
    listed = _listed_run(out_dir)
    if listed is not None:
        return (out_dir / listed).resolve()
    try:
        run = read_record(out_dir / MANIFEST, kind="manifest").get("source_run", {}).get("run_dir")
    except (RecordError, OSError, AttributeError):
        return None
    return Path(run).resolve() if isinstance(run, str) and run else None


def _write_owned(out_dir: Path, names: Iterable[str], run: str | None = None) -> None:
    run = run if run is not None else _listed_run(out_dir)  # keep the run the list names
    record = {"format": OWNED_FORMAT, "files": sorted(set(names) & set(EXPORT_NAMES))}
    write_json_atomic(out_dir / OWNED_LIST, record if run is None else {**record, "run": run})


def prepare_export_folder(out_dir: str | Path, writes: Iterable[str], *, say: Callable[[str], None],
                          run_dir: str | Path | None = None) -> list[str]:  # fmt: skip
    """Make ``out_dir`` ready for an export of ``run_dir`` that will write ``writes`` (file names);
    returns the names removed.

    Raises ExportError, before anything is changed, when ``out_dir`` is a file, when one of
    ``writes`` is there and the export does not own it, or when ``out_dir`` holds the export of
    another run (:func:`exported_run`) and is not ``run_dir``'s own ``export`` folder. Then records
    ``writes`` (and ``run_dir``) as owned and
    removes, in this order, the owned parity.json and parity.md, model.json, the owned files of
    formats this export does not write (they would sit beside a model.json that does not list
    them), and the hidden temporaries a killed export left. OSError when the folder is not writable.
    """
    out_dir, writes = Path(out_dir), list(writes)
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir}: a file stands where the export folder would go; give --out a folder.")
    if run_dir is not None:
        owner = exported_run(out_dir)
        mine, own_default = Path(run_dir).resolve(), (Path(run_dir) / "export").resolve()
        if owner is not None and owner != mine and out_dir.resolve() != own_default:
            raise ExportError(
                f"{out_dir} holds the export of run {relative_to_cwd(owner)}; exporting run {run_dir} there would replace it. "
                f"Leave out --out (the default is {Path(run_dir) / 'export'}) or give another folder."
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    run = None if run_dir is None else Path(os.path.relpath(Path(run_dir).resolve(), out_dir.resolve())).as_posix()
    owned = owned_files(out_dir)
    foreign = [name for name in writes if (out_dir / name).exists() and (name not in owned or (out_dir / name).is_dir())]
    if foreign:
        raise ExportError(
            f"{out_dir}: {', '.join(foreign)} {'is' if len(foreign) == 1 else 'are'} not from an mnv3 export (no {OWNED_LIST} "
            f"or model.json there lists {'it' if len(foreign) == 1 else 'them'}); the export writes only files it owns. Move "
            f"{'it' if len(foreign) == 1 else 'them'} away or export to another --out."
        )
    # The list first: a kill from here on leaves every file this export or an earlier one wrote
    # known as the export's, even once the model.json that vouched for an older export is gone.
    _write_owned(out_dir, owned | set(writes), run)
    stale = [name for name in EXPORT_NAMES if name not in writes and name not in (*REPORTS, MANIFEST)]
    removed = []
    for name in (*REPORTS, MANIFEST, *stale):  # the report first, then what it and model.json describe
        if name in owned and (out_dir / name).is_file():
            (out_dir / name).unlink()
            removed.append(name)
    remove_stale_temporaries(out_dir, (*EXPORT_NAMES, OWNED_LIST))
    dropped = [name for name in removed if name in stale]
    if dropped:
        say(f"removed from {out_dir}: {', '.join(dropped)} (written by an earlier export; not part of this one)")
    _write_owned(out_dir, (owned - set(removed)) | set(writes))
    return removed


def finish_export_folder(out_dir: str | Path) -> None:
    """After a whole export: the owned list names exactly the export's files that are there."""
    out_dir = Path(out_dir)
    _write_owned(out_dir, {name for name in owned_files(out_dir) if (out_dir / name).is_file()})
