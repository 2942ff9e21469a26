"""The lock on a run folder: one training at a time per folder, and a second one names the first.

``fcntl.flock`` on ``<run>/.lock``, released by the operating system when the process ends, so a
killed training never leaves a stale lock; the file names its holder (pid, host, start time).
"""
from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path

__all__ = ["LOCK_FILE", "RunLockedError", "RunLock"]

LOCK_FILE = ".lock"


class RunLockedError(RuntimeError):
    """Another process is training into the same run folder."""


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
