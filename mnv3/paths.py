"""Paths as the project shows them: notebooks take their path parameters from the repository
root, and committed files (reports, ``model.json``, a published ``config.json``) never carry one
machine's absolute folder layout."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["REPO", "repo_path", "shown_path", "relative_to_cwd"]

REPO = Path(__file__).resolve().parents[1]


def repo_path(path: str | Path) -> Path | str:
    """A notebook's path parameter as a path: relative paths are taken from the repository root,
    whatever the working folder (papermill from the root, JupyterLab in ``notebooks/``); absolute
    paths are kept; ``""`` (no path, e.g. no dataset mirror) stays ``""``."""
    if path in ("", None):
        return ""
    path = Path(path).expanduser()
    return path if path.is_absolute() else REPO / path


def shown_path(path: str | Path) -> str:
    """``path`` as the reports show it: relative to the repository root (``runs/quick``,
    ``../shared/datasets``), never a machine's absolute layout; ``""`` stays ``""``."""
    if path in ("", None):
        return ""
    return Path(os.path.relpath(Path(path).resolve(), REPO)).as_posix()


def relative_to_cwd(path: str | Path) -> str:
    """``path`` relative to the working folder in POSIX form (``..`` where needed); an absolute
    path is kept only where no relative one exists (another drive)."""
    path = Path(path).resolve()
    try:
        return Path(os.path.relpath(path, Path.cwd().resolve())).as_posix()
    except ValueError:
        return str(path)
