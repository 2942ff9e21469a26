"""The one atomic writer: every file mnv3 writes (checkpoints, caches, JSON, CSV, exported
programs) is filled beside its target and renamed into place, so an interrupted process never
leaves a half-written file, and the previous one survives a full disk. Folders that are replaced
whole (a published run, the app's assets) are filled in a staging folder beside them
(:func:`make_staging`) that a later run removes when its process is gone. :func:`os_error_line`
says in one line which path an OSError is about, for every command line.
"""
from __future__ import annotations

import errno
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

__all__ = ["write_atomic", "write_bytes_atomic", "write_text_atomic", "write_json_atomic", "save_torch_atomic",
           "remove_stale_temporaries", "finite_or_none", "make_staging", "remove_stale_staging", "os_error_line"]  # fmt: skip


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


def remove_stale_temporaries(folder: str | Path, names: Iterable[str] | None = None) -> list[Path]:
    """Delete the ``.<name>.*.tmp*`` files that a killed :func:`write_atomic` leaves in ``folder``.

    ``names``: only the temporaries of these file names (a folder shared with the user's own
    files, such as ``export --out DIR``, keeps every other hidden file); None: all of them.
    """
    patterns = [".*.tmp*"] if names is None else [f".{name}.*.tmp*" for name in names]
    removed = []
    for pattern in patterns:
        for tmp in Path(folder).glob(pattern):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def make_staging(parent: str | Path, prefix: str) -> Path:
    """A fresh folder ``parent/.<prefix>-<pid>-<random>`` (mode 0777 less the umask), where a
    folder that is to be replaced whole is filled before it is renamed into place.

    The process id in the name lets :func:`remove_stale_staging` tell a killed run's leftovers
    from the staging folder of a run still going. Raises OSError when ``parent`` is not writable.
    """
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=parent, prefix=f".{prefix}-{os.getpid()}-"))
    os.chmod(staging, 0o777 & ~_umask())
    return staging


def remove_stale_staging(parent: str | Path, prefix: str) -> list[Path]:
    """Delete the staging folders (:func:`make_staging`) in ``parent`` whose process has ended."""
    removed = []
    for folder in Path(parent).glob(f".{prefix}-*-*"):
        pid = folder.name[len(prefix) + 2 :].split("-", 1)[0]
        if folder.is_dir() and pid.isdigit() and int(pid) != os.getpid() and not _process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


_OS_ERROR_HINTS = {
    errno.EACCES: "no permission to write or read there; choose another folder or fix its permissions",
    errno.EPERM: "no permission to write or read there; choose another folder or fix its permissions",
    errno.EROFS: "the file system is read-only; choose a folder on a writable one",
    errno.ENOTDIR: "a file stands where a folder is needed",
    errno.EISDIR: "a folder stands where a file is needed",
    errno.EEXIST: "something is already there",
    errno.ENOSPC: "the disk is full; free space and run it again",
    errno.ENOENT: "no such file or folder",
    errno.ENAMETOOLONG: "the name is too long",
    errno.ELOOP: "too many levels of symbolic links (a link loop)",
}


def first_line(err: BaseException, default: str = "no detail", limit: int = 200) -> str:
    """The first line of ``err``'s message, at most ``limit`` characters, for a one-line error that
    quotes a library's exception; ``default`` when the message is empty."""
    text = str(err)
    return text.splitlines()[0][:limit] if text.strip() else default


def os_error_line(err: OSError) -> str:
    """One line for an OSError: the path it is about, what went wrong and what to do.

    For "not a directory", the file that stands in the way is named (the first component of the
    path that exists and is not a folder), since that is the path the user gave.
    """
    path = err.filename if err.filename is not None else ""
    what = err.strerror or str(err) or type(err).__name__
    hint = _OS_ERROR_HINTS.get(err.errno, "")
    if err.errno in (errno.ENOTDIR, errno.EEXIST) and path:
        blocker = next((p for p in (Path(path), *Path(path).parents) if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            hint = f"{blocker} is a file, not a folder; give a folder there"
    where = f"{path}: " if path else ""
    return f"{where}{what}" + (f" ({hint})" if hint and hint != what.lower() else "")


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
