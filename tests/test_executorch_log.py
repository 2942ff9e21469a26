"""ExecuTorch's informational log lines (cpuinfo_utils.cpp, threadpool.cpp) are dropped where
export, android-assets, the benchmarks and the search start its runtime; nothing else written to
stderr is lost, not even when the process dies inside the filtered block."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# What ExecuTorch 1.5.1 printed on our x86 machine when a program was loaded, and at a resize.
INFO_LINES = [
    "[cpuinfo_utils.cpp:71] Reading file /sys/devices/soc0/image_version",
    "[cpuinfo_utils.cpp:87] Failed to open midr file /sys/devices/soc0/image_version",
    "[cpuinfo_utils.cpp:100] Reading file /sys/devices/system/cpu/cpu0/regs/identification/midr_el1",
    "[cpuinfo_utils.cpp:109] Failed to open midr file /sys/devices/system/cpu/cpu0/regs/identification/midr_el1",
    "[cpuinfo_utils.cpp:125] CPU info and manual query on # of cpus dont match.",
    "[threadpool.cpp:66] Resetting threadpool to 1 threads.",
]


def python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)


def test_the_filter_drops_only_the_known_lines_and_keeps_order():
    lines = [INFO_LINES[0], "[cpuinfo_utils.cpp:140] a message we have never seen", *INFO_LINES[1:],
             "E 00:00:00.1 executorch:method.cpp:1] a real error", "[threadpool.cpp:66] Resetting threadpool to 1 threads. (and more)"]  # fmt: skip
    code = (
        "import os, sys\n"
        "from mnv3.export import EXECUTORCH_INFO_LINES, dropping_stderr_lines\n"
        "with dropping_stderr_lines(EXECUTORCH_INFO_LINES):\n"
        f"    for line in {lines!r}:\n"
        "        os.write(2, (line + '\\n').encode())\n"
        "    print('from Python', file=sys.stderr)\n"
        "print('after the block', file=sys.stderr)\n"
    )
    done = python(code)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[-5:] == [
        "[cpuinfo_utils.cpp:140] a message we have never seen",
        "E 00:00:00.1 executorch:method.cpp:1] a real error",
        "[threadpool.cpp:66] Resetting threadpool to 1 threads. (and more)",
        "from Python",
        "after the block",
    ]


def test_a_crash_inside_the_block_keeps_its_message():
    code = (
        "import os\n"
        "from mnv3.export import EXECUTORCH_INFO_LINES, dropping_stderr_lines\n"
        "with dropping_stderr_lines(EXECUTORCH_INFO_LINES):\n"
        f"    os.write(2, {INFO_LINES[0]!r}.encode() + b'\\n')\n"
        "    os.write(2, b'fatal: the native code gave up\\n')\n"
        "    os.abort()\n"
    )
    done = python(code)
    assert done.returncode != 0
    assert "fatal: the native code gave up" in done.stderr and "cpuinfo_utils" not in done.stderr


def test_starting_and_resizing_the_threadpool_prints_none_of_them():
    pytest.importorskip("executorch", reason='executorch is not installed: pip install -e ".[export]"')
    raw = python(
        "from executorch.extension.pybindings import portable_lib\n"
        "n = portable_lib._threadpool_get_thread_count()\n"
        "portable_lib._unsafe_reset_threadpool(n + 1)\n"
    )
    ours = python(
        "from mnv3.export import executorch_threads\n"
        "n = executorch_threads()\n"
        "print(n, executorch_threads(n + 1), executorch_threads(1), executorch_threads())\n"
    )
    assert ours.returncode == 0, ours.stderr
    n = int(ours.stdout.split()[0])
    assert ours.stdout.split() == [str(n), str(n + 1), "1", "1"]  # the counts read back
    assert "Resetting threadpool" in raw.stderr  # what the library prints when it is called directly
    assert "cpuinfo_utils" not in ours.stderr and "Resetting threadpool" not in ours.stderr, ours.stderr
