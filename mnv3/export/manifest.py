"""model.json, the file the Android app reads: input contract, labels, files and their SHA-256."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..checkpoint import weights_file
from ..data import DatasetInfo
from ..environment import package_version
from ..paths import relative_to_cwd
from ..runs import load_test
from .deps import ExportError

# Keys of model.json's "files" block (the app reads "pte_fp32").
MANIFEST_KEYS = {"pte": "pte_fp32", "pte-int8": "pte_int8", "ptl": "ptl", "onnx": "onnx"}
MANIFEST_FORMAT = "mnv3-mobile"
MANIFEST_VERSION = 1
NORMALIZATION_NOTE = "inside the model graph; feed raw pixels/255"
LEGACY_NOTE = (
    "model.ptl is TorchScript for the PyTorch Mobile lite interpreter: the original project's path, "
    "deprecated upstream; use model.pte (ExecuTorch) for new apps."
)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def source_run_record(run_dir: Path, config: dict[str, Any], which: str = "best") -> dict[str, Any]:
    """model.json's ``source_run`` block: which run and checkpoint an export came from.

    Keys: run_dir (relative to the working folder, so a committed model.json carries no machine's
    path), experiment and profile (from ``config``, the run's config.json; None when absent),
    checkpoint (the file name of the run's ``which`` weights, :func:`mnv3.checkpoint.weights_file`)
    and checkpoint_sha256 (hex SHA-256 of its bytes); both None when the run has no such file.
    The app-asset writer compares checkpoint_sha256 to decide whether a .pte can be reused.
    Raises ValueError for a ``which`` other than "best", "last" or "final".
    """
    checkpoint = weights_file(run_dir, which)
    return {
        # model.json of the full profile is committed: no absolute path of the exporting machine in it.
        "run_dir": relative_to_cwd(run_dir),
        "experiment": config.get("experiment"),
        "profile": config.get("profile"),
        "checkpoint": checkpoint.name if checkpoint else None,
        "checkpoint_sha256": _sha256(checkpoint) if checkpoint else None,
    }


def recorded_test_accuracy(run_dir: Path) -> float | None:
    """The run's test accuracy from its ``test.json`` (a fraction in [0, 1]), or None when the run
    has no test.json or no ``test_accuracy`` in it. Raises RecordError when test.json is damaged."""
    value = (load_test(run_dir) or {}).get("test_accuracy")
    return None if value is None else float(value)


def model_manifest(
    info: DatasetInfo,
    input_shape: Sequence[int],
    files: dict[str, str],
    *,
    test_accuracy: float | None = None,
    source_run: Any = None,
    folder: str | Path | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """model.json, the file the Android app reads (format "mnv3-mobile", version 1).

    ``files`` maps format names (``FORMATS``) to file names in ``folder``; when ``folder`` is
    given, ``sha256`` maps each file name to the SHA-256 of its bytes (hex), so a copied or
    reused file can be checked (:func:`verify_files`).
    """
    channels = int(input_shape[1])
    if channels not in (1, 3):
        raise ExportError(f"the app handles gray (1) or RGB (3) input, not {channels} channels")
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "dataset": info.name,
        "labels": list(info.classes),
        "input": {
            "shape": [int(s) for s in input_shape],
            "dtype": "float32",
            "layout": "NCHW",
            "channel_order": "gray" if channels == 1 else "RGB",
            "value_range": [0.0, 1.0],
            "normalization": NORMALIZATION_NOTE,
        },
        "files": {MANIFEST_KEYS[fmt]: name for fmt, name in files.items()},
        "sha256": {name: _sha256(Path(folder) / name) for name in files.values()} if folder is not None else {},
        "test_accuracy": test_accuracy,
        "executorch_version": package_version("executorch"),
        "source_run": source_run,
    }
    if "ptl" in files:
        manifest["legacy"] = {"ptl": LEGACY_NOTE}
    if extra:
        manifest.update(extra)
    return manifest


def verify_files(folder: str | Path, manifest: dict[str, Any], names: Iterable[str]) -> list[str]:
    """The problems with ``names`` in ``folder`` against ``manifest``'s sha256 block (empty: all good).

    A file is a problem when it is missing, has no recorded hash (an export older than the
    block) or its bytes hash differently (a truncated copy, an edit).
    """
    folder, recorded = Path(folder), manifest.get("sha256") or {}
    problems = []
    for name in names:
        path = folder / name
        if not path.is_file():
            problems.append(f"{path} is missing")
        elif name not in recorded:
            problems.append(f"{folder / 'model.json'} records no sha256 for {name}")
        elif _sha256(path) != recorded[name]:
            problems.append(f"{path} does not match the sha256 in model.json (truncated or changed)")
    return problems
