"""ExecuTorch's CPU threadpool, started without its informational log lines.

ExecuTorch 1.5.1 creates its threadpool when the first program is loaded (or its size is first
asked), and then writes five lines to stderr from ``cpuinfo_utils.cpp``: it reads
``/sys/devices/soc0/image_version`` and each core's ARM MIDR register file
(``.../regs/identification/midr_el1``) to tell big cores from little ones, fails to open them on
an x86 machine, which has no such files, says "CPU info and manual query on # of cpus dont match."
and uses every core. ``_unsafe_reset_threadpool`` adds "[threadpool.cpp:66] Resetting threadpool
to N threads.". None of these asks for any action. The library's log level is fixed when it is
compiled (``ET_MIN_LOG_LEVEL``) and its Python bindings have no setting for it, so
:func:`executorch_threads` runs those two calls with file descriptor 2 passed through
:func:`dropping_stderr_lines`, which drops exactly those messages and passes every other byte on.
Export, ``make android-assets``, the benchmarks and the search all reach the runtime through it
(:class:`mnv3.export.PteRunner` calls it before loading a program).
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from typing import Iterator

from .deps import quiet_imports

# The messages dropped, whole lines only; any other line of cpuinfo_utils.cpp or threadpool.cpp passes.
EXECUTORCH_INFO_LINES = (
    r"\[cpuinfo_utils\.cpp:\d+\] (Reading file \S+|Failed to open midr file \S+|"
    r"CPU info and manual query on # of cpus dont match\.)"
    r"|\[threadpool\.cpp:\d+\] Resetting threadpool to \d+ threads\."
)

# The filter runs in a child process that reads the pipe fd 2 points to: when this process dies
# (a crash inside the native code, an abort), the pipe closes and the child still writes out
# everything this process wrote before it died, so a crash report is never lost.
_FILTER = r"""
import re, sys
drop = re.compile(sys.argv[1])
out = sys.stdout.buffer
for line in sys.stdin.buffer:
    if not drop.fullmatch(line.rstrip(b"\r\n").decode("utf-8", "replace")):
        out.write(line)
        out.flush()
"""

_started = False


@contextlib.contextmanager
def dropping_stderr_lines(pattern: str) -> Iterator[None]:
    """Within the block, lines written to file descriptor 2 (Python's and native code's alike) that
    match ``pattern`` whole are dropped; every other line reaches the real stderr at once, in order.

    Where the filter cannot be started (no ``fork``/``exec``, a closed stderr), nothing is dropped.
    """
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        child = subprocess.Popen([sys.executable, "-I", "-S", "-c", _FILTER, pattern],
                                 stdin=subprocess.PIPE, stdout=saved, stderr=saved)  # fmt: skip
    except OSError:
        os.close(saved)
        yield
        return
    try:
        os.dup2(child.stdin.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
    finally:
        child.stdin.close()
        child.wait()
        os.close(saved)


def executorch_threads(threads: int | None = None) -> int | None:
    """Start ExecuTorch's threadpool (once per process) and, when ``threads`` is given and differs,
    resize it to ``threads``; returns its thread count, or None without ExecuTorch.

    Its informational lines (see the module docstring) are dropped; anything else it writes is shown.
    """
    global _started
    try:
        with quiet_imports():
            from executorch.extension.pybindings import portable_lib
    except ImportError:
        return None
    if not _started:
        with dropping_stderr_lines(EXECUTORCH_INFO_LINES):
            count = portable_lib._threadpool_get_thread_count()
        _started = True
    else:
        count = portable_lib._threadpool_get_thread_count()
    if threads is not None and count != threads:
        with dropping_stderr_lines(EXECUTORCH_INFO_LINES):
            portable_lib._unsafe_reset_threadpool(threads)
        count = portable_lib._threadpool_get_thread_count()
    return int(count)
