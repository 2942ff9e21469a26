"""What a number was measured with: package versions, the git commit, the CPU and the machine's
load. The run record (``config.json``), ``model.json`` and the benchmarks all ask here."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["package_version", "versions", "git", "git_commit", "cpu_model", "memory_gb", "load_average", "machine_record"]

REPO = Path(__file__).resolve().parents[1]


def package_version(name: str) -> str | None:
    """The installed distribution's version (``importlib.metadata``), None when not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions(*names: str) -> dict[str, str | None]:
    """Python's version and each named distribution's (None for one not installed)."""
    return {"python": platform.python_version(), **{name: package_version(name) for name in names}}


def git(*args: str) -> str | None:
    """``git ARGS`` in the checkout mnv3 was imported from: its stripped output, or None (no git,
    not a checkout, or an error). Read-only: it never refreshes git's index."""
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO, timeout=10,
                             env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"})  # fmt: skip
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def git_commit() -> str | None:
    """The checkout's HEAD commit (40 hex digits), or None outside a git checkout."""
    return git("rev-parse", "HEAD") or None


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gb() -> float | None:
    """Total memory in GiB (/proc/meminfo), None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except (OSError, ValueError):
        pass
    return None


def available_memory() -> int | None:
    """Bytes this process can still take: /proc/meminfo's MemAvailable, capped by what its memory
    cgroup (v2 ``memory.max`` or v1 ``memory.limit_in_bytes``, less current usage) allows, as in a
    container whose /proc/meminfo shows the host's memory. None where neither is known."""
    found = []
    try:
        found += [int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemAvailable:")]
        cgroups = Path("/proc/self/cgroup").read_text().splitlines()
    except (OSError, ValueError):
        cgroups = []
    for line in cgroups:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            base, files = Path("/sys/fs/cgroup") / path.lstrip("/"), ("memory.max", "memory.current")
        elif "memory" in controllers.split(","):
            base, files = Path("/sys/fs/cgroup/memory") / path.lstrip("/"), ("memory.limit_in_bytes", "memory.usage_in_bytes")
        else:
            continue
        try:
            limit, usage = ((base / name).read_text().strip() for name in files)
            if limit.isdigit() and int(limit) < 2**60:  # "max", or v1's near-2^63 "unlimited"
                found.append(max(0, int(limit) - int(usage)))
        except (OSError, ValueError):
            pass
    return min(found) if found else None


def load_average() -> list[float] | None:
    """The 1-, 5- and 15-minute load averages, None where the OS has none. A load near or above
    the core count means other work shared the machine."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def machine_record(threads: int) -> dict[str, Any]:
    """What a throughput number and CPU rounding depend on: CPU model and count, torch threads,
    load average when the run started, the instruction set torch's kernels use and any setting
    that caps it."""
    import torch

    # The kernels oneDNN and ATen pick depend on the instruction set, and round differently.
    isa = {k: os.environ[k] for k in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_CBWR") if k in os.environ}
    return {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "torch_threads": threads, "load_average": load_average(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "isa_settings": isa}  # fmt: skip
