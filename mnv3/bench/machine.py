"""The measurement environment: the threads every runtime is pinned to, how busy the
machine was during a block (:class:`CpuMeter`), and the ``environment`` record of each JSON."""
from __future__ import annotations

import contextlib
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch

from ..environment import cpu_model, git, git_commit, load_average, memory_gb, versions


class CpuMeter:
    """How busy the machine was during a block, from /proc: cores used by other processes (all
    CPU time but this process's) and cores stolen by the hypervisor, averaged over the block.

    ``with CpuMeter() as m: ...`` then ``m.result`` = {"other_cores": ..., "steal_cores": ...}
    (None values where /proc is unavailable). Export workers are not running while timing.
    """

    def __enter__(self) -> "CpuMeter":
        self.start = self._read()
        return self

    def __exit__(self, *exc) -> None:
        end = self._read()
        self.result: dict[str, float | None] = {"other_cores": None, "steal_cores": None}
        if self.start is None or end is None:
            return
        hz = os.sysconf("SC_CLK_TCK")
        wall = end[0] - self.start[0]
        if wall <= 0:
            return
        busy, own, steal = ((end[i] - self.start[i]) / hz / wall for i in (1, 2, 3))
        self.result = {"other_cores": round(max(0.0, busy - own), 2), "steal_cores": round(steal, 2)}

    @staticmethod
    def _read() -> tuple[float, int, int, int] | None:
        try:
            fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
            user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
            own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
            return time.monotonic(), user + nice + system + irq + softirq, int(own[11]) + int(own[12]), steal
        except (OSError, ValueError, IndexError):
            return None


def busy_note(meter: CpuMeter, log: Callable[[str], None]) -> str:
    """"other processes used X cores" for a finished block timed under ``meter`` ("" when the
    meter could not read the other processes' CPU time). Above 0.25 cores it also logs a warning
    through ``log`` that the block's numbers are disturbed."""
    other = meter.result.get("other_cores")
    if other is None:
        return ""
    text = f"other processes used {other:.2f} cores"
    if other > 0.25:
        log(f"[bench]   WARNING: {text} during this block: its numbers are disturbed (best compared within the block)")
    return text


def set_threads(threads: int) -> dict[str, int | None]:
    """Pin torch's intra-op threads and ExecuTorch's threadpool to ``threads``; return the counts
    read back (onnxruntime is given the same count per session)."""
    torch.set_num_threads(threads)
    counts: dict[str, int | None] = {"requested": threads, "torch": torch.get_num_threads(),
                                     "torch_interop": torch.get_num_interop_threads(), "executorch": None,
                                     "onnxruntime": threads}  # fmt: skip
    with contextlib.suppress(Exception):
        from ..export import executorch_threads

        counts["executorch"] = executorch_threads(threads)  # its log lines that need no action dropped
    return counts


def environment(threads: dict[str, Any], device: str = "cpu") -> dict[str, Any]:
    """Where and with what the numbers were measured: the ``environment`` block of every JSON.

    Keys: cpu_model, cpu_count, usable_cores, memory_gb (GiB), threads (``set_threads``'s counts),
    device, gpu (its name on CUDA, else None), versions (python and the libraries), platform,
    date (UTC, ISO 8601), git_commit, git_dirty (tracked files changed; None without git),
    load_average_start, thread_environment (the OpenMP/MKL variables) and command (the
    ``python -m mnv3.bench`` command line, None when called from Python). The runner adds
    load_average_end per suite.
    """
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    env = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable,
        "memory_gb": memory_gb(),
        "threads": threads,
        "device": device,
        "gpu": torch.cuda.get_device_name() if device.startswith("cuda") and torch.cuda.is_available() else None,
        # torch's own version string, as imported (a local build's may differ from its metadata).
        "versions": {**versions("torch", "torchvision", "executorch", "onnxruntime", "onnx", "numpy", "mnv3"),
                     "torch": torch.__version__},
        "platform": platform.platform(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "git_dirty": None,
        "load_average_start": load_average(),
        "thread_environment": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_NUM_THREADS")},
        "command": "python -m mnv3.bench " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith(("bench", os.path.join("bench", "__main__.py"))) else None,
    }
    status = git("status", "--porcelain", "--untracked-files=no")
    if status is not None:
        env["git_dirty"] = bool(status)
    return env
