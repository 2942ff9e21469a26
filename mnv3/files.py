"""The one atomic writer: every file mnv3 writes (checkpoints, caches, JSON, CSV, exported
programs) is filled beside its target and renamed into place, so an interrupted process never
leaves a half-written file, and the previous one survives a full disk.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

__all__ = ["write_atomic", "write_bytes_atomic", "write_text_atomic", "write_json_atomic", "save_torch_atomic",
           "remove_stale_temporaries", "finite_or_none"]  # fmt: skip


def _umask() -> int:
    # The only portable way to read the umask is to set it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> None:
    """Have ``write(tmp)`` fill a temporary file beside ``path``, then rename it into place.

    The temporary is ``.<name>.<random>.tmp<suffix>`` (writers that choose a format by suffix see
    the right one); it is flushed to disk before the rename and gets the mode any tool would give
    it (0666 less the umask; mkstemp makes it 0600). Raises whatever ``write`` or the file system
    raises (OSError for a full disk), with the temporary removed and ``path`` untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the ``.<name>.*.tmp*`` files that a killed :func:`write_atomic` leaves in ``folder``."""
    removed = []
    for tmp in Path(folder).glob(".*.tmp*"):
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    write_atomic(path, lambda tmp: tmp.write_bytes(data))


def write_text_atomic(path: str | Path, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def finite_or_none(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None (JSON null), recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write ``data`` as strict JSON, atomically. RFC 8259 has no NaN or Infinity: such values are
    written as null, which every JSON reader accepts (Python's json would write a bare NaN)."""
    write_text_atomic(path, json.dumps(finite_or_none(data), indent=2, allow_nan=False) + "\n")


def save_torch_atomic(obj: Any, path: str | Path) -> None:
    """``torch.save(obj)`` to ``path``, atomically (checkpoints and decoded dataset caches)."""
    import torch

    write_atomic(path, lambda tmp: torch.save(obj, tmp))
