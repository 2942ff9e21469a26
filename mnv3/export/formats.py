"""The export formats: their names, their file names, and the --formats list parsed."""
from __future__ import annotations

from typing import Iterable

from .deps import ExportError

FORMATS = ("pte", "pte-int8", "ptl", "onnx")
FILE_NAMES = {"pte": "model.pte", "pte-int8": "model_int8.pte", "ptl": "model.ptl", "onnx": "model.onnx"}


def parse_formats(formats: str | Iterable[str]) -> tuple[str, ...]:
    """The export formats asked for, as a tuple of names from ``FORMATS`` in the order given,
    duplicates dropped.

    ``formats`` is a comma-separated string (``"pte,onnx"``, what ``--formats`` takes) or an
    iterable of names; blanks are ignored. Raises ExportError naming the unknown names and the
    valid ones, or when no name is given.
    """
    names = [f.strip() for f in formats.split(",")] if isinstance(formats, str) else [str(f).strip() for f in formats]
    names = [n for n in names if n]
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise ExportError(
            f"unknown export format {', '.join(map(repr, unknown)) or '(none given)'}; valid formats: {', '.join(FORMATS)}"
        )
    return tuple(dict.fromkeys(names))
