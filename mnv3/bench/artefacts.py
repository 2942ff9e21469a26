"""The export cache: every exported program the benchmark runs, built in parallel worker
processes by :mod:`mnv3.export` and kept by content (weights, architecture, input shape,
calibration, format and the exporting code and libraries)."""
from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import multiprocessing
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..environment import package_version
from ..files import write_json_atomic
from .cases import ModelCase, random_pixels
from .formatting import round_significant


# Bump when the exported files would change for the same inputs (the cache key includes it).
_CACHE_VERSION = 1


@dataclass
class Artefact:
    """One exported file, from this run or from the cache."""

    fmt: str
    batch: int | None
    path: Path | None = None
    export_seconds: float | None = None
    cached: bool = False
    size_bytes: int | None = None
    fully_delegated: bool | None = None
    non_delegated_compute: dict[str, int] = field(default_factory=dict)
    note: str = ""
    error: str | None = None

    def to_json(self, setting: str) -> dict[str, Any]:
        """The ``exports`` entry of the JSON: format, batch (None: any), seconds, size in bytes,
        delegation, note and error, floats to 6 significant digits."""
        return round_significant({
            "setting": setting, "format": self.fmt, "batch": self.batch, "export_seconds": self.export_seconds,
            "cached": self.cached, "size_bytes": self.size_bytes, "fully_delegated": self.fully_delegated,
            "non_delegated_compute": self.non_delegated_compute, "note": self.note, "error": self.error,
        })  # fmt: skip


_SUFFIX = {"pte": ".pte", "pte-int8": ".pte", "onnx": ".onnx", "ptl": ".ptl"}


def _weights_digest(module: nn.Module) -> str:
    """sha256 of the state dict (names, dtypes, shapes, bytes) and the model's config."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    inner = getattr(module, "model", module)
    digest.update(json.dumps(getattr(inner, "config", {}), sort_keys=True, default=str).encode())
    digest.update(json.dumps([getattr(module, "image_size_in", None), getattr(module, "image_size", None)]).encode())
    return digest.hexdigest()


def _export_sources(package: Path) -> list[Path]:
    """The mnv3 sources that shape an exported graph: every ``*.py`` of the ``export/`` package,
    then ``layers.py`` and ``model.py``."""
    return [*sorted((package / "export").rglob("*.py")), package / "layers.py", package / "model.py"]


def _export_versions(package: Path | None = None) -> dict[str, str | None]:
    """The exporting libraries' versions and ``mnv3_code``, 16 hex digits of a sha256 of the mnv3
    code that shapes the graph (:func:`_export_sources` under ``package``, mnv3's folder by
    default): an edit there makes every cached export stale. A missing file counts as empty."""
    package = Path(__file__).resolve().parents[1] if package is None else Path(package)
    versions = {p: package_version(p) for p in ("torch", "executorch", "torchao", "onnx", "onnxscript")}
    code = hashlib.sha256()
    for path in _export_sources(package):
        if path.parent != package:
            # The file names too, so that the same code split differently between files hashes apart.
            code.update(path.relative_to(package).as_posix().encode())
        with contextlib.suppress(OSError):
            code.update(path.read_bytes())
    versions["mnv3_code"] = code.hexdigest()[:16]
    return versions


class ArtefactStore:
    """Exports the files the benchmark needs, in parallel worker processes, with a content cache.

    ``request`` registers a (format, model, batch); ``build`` exports what the cache lacks and
    returns every requested :class:`Artefact`. The cache key covers the weights, the model config,
    the input shape, the calibration, the format and the exporting libraries' versions.
    """

    def __init__(self, cache_dir: Path | None, *, workers: int = 2, calibration_images: int = 16, log: Callable[[str], None] = print):
        self._tmp = None
        if cache_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="mnv3-bench-")
            cache_dir = Path(self._tmp.name)
        self.cache_dir = Path(cache_dir)
        self.workers = max(1, workers)
        self.calibration_images = calibration_images
        self.log = log
        self._requests: dict[str, dict[str, Any]] = {}
        self._digests: dict[int, str] = {}
        self.artefacts: dict[str, Artefact] = {}

    def close(self) -> None:
        """Delete the temporary folder used when there is no cache (a cache folder is kept)."""
        if self._tmp is not None:
            self._tmp.cleanup()

    def _key(self, fmt: str, wrapper: nn.Module, case: ModelCase, batch: int | None) -> str:
        digest = self._digests.get(id(wrapper))
        if digest is None:
            digest = self._digests[id(wrapper)] = _weights_digest(wrapper)
        payload = {
            "cache_version": _CACHE_VERSION, "fmt": fmt, "batch": batch, "weights": digest,
            "shape": [case.in_channels, case.resolution, case.resolution], "versions": _export_versions(),
            "calibration": [self.calibration_images, case.seed] if fmt == "pte-int8" else None,
        }  # fmt: skip
        key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]
        return f"{fmt}-{case.arch}-w{case.width:g}-{case.resolution}px-b{batch if batch else 'any'}-{key}"

    def request(self, fmt: str, wrapper: nn.Module, case: ModelCase, batch: int | None) -> str:
        """Register an export; returns its key (the same key for the same content)."""
        batch = None if fmt in ("onnx", "ptl") else batch
        key = self._key(fmt, wrapper, case, batch)
        self._requests.setdefault(key, {"fmt": fmt, "wrapper": wrapper, "case": case, "batch": batch})
        return key

    def _folder(self, key: str) -> Path:
        return self.cache_dir / key

    def _from_cache(self, key: str, req: dict[str, Any]) -> Artefact | None:
        folder = self._folder(key)
        meta_path = folder / "meta.json"
        model = folder / f"model{_SUFFIX[req['fmt']]}"
        if not (meta_path.is_file() and model.is_file()):
            return None
        try:
            meta = json.loads(meta_path.read_text())
        except ValueError:
            return None
        return Artefact(
            req["fmt"], req["batch"], model, meta.get("export_seconds"), True, model.stat().st_size,
            meta.get("fully_delegated"), meta.get("non_delegated_compute", {}), meta.get("note", ""),
        )  # fmt: skip

    def build(self) -> dict[str, Artefact]:
        """Export every requested file the cache lacks (in ``workers`` spawned processes) and return
        {key: Artefact} for all requests. A failed export is an Artefact with ``error`` set (logged),
        never an exception: the other contenders still run."""
        missing: dict[str, dict[str, Any]] = {}
        for key, req in self._requests.items():
            if key in self.artefacts:
                continue
            hit = self._from_cache(key, req)
            if hit is not None:
                self.artefacts[key] = hit
            else:
                missing[key] = req
        if not missing:
            return self.artefacts
        # Jobs: one per file, except int8, which quantizes once per model for all its batches.
        jobs: list[tuple[str, list[str]]] = []
        int8: dict[str, list[str]] = {}
        for key, req in missing.items():
            if req["fmt"] == "pte-int8":
                int8.setdefault(self._digests[id(req["wrapper"])], []).append(key)
            else:
                jobs.append((req["fmt"], [key]))
        jobs += [("pte-int8", keys) for keys in int8.values()]
        cost = {"pte-int8": 3, "pte": 2, "onnx": 1, "ptl": 1}
        jobs.sort(key=lambda job: -cost[job[0]] * len(job[1]))  # longest first: better packing
        self.log(f"[bench] exporting {len(missing)} file(s) in {len(jobs)} job(s), {min(self.workers, len(jobs))} process(es); "
                 f"cache: {self.cache_dir}")  # fmt: skip
        start = time.perf_counter()
        payloads = []
        for fmt, keys in jobs:
            first = missing[keys[0]]
            calibration = random_pixels(first["case"], self.calibration_images, seed=first["case"].seed + 100) if fmt == "pte-int8" else None
            targets = [(missing[k]["batch"], str(self._folder(k) / f"model{_SUFFIX[fmt]}")) for k in keys]
            payloads.append((keys, (fmt, first["wrapper"], targets, calibration)))
        if self.workers == 1 or len(payloads) == 1:
            results = [(keys, _export_job(*args)) for keys, args in payloads]
        else:
            ctx = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(max_workers=min(self.workers, len(payloads)), mp_context=ctx) as pool:
                futures = [(keys, pool.submit(_export_job, *args)) for keys, args in payloads]
                results = []
                for keys, fut in futures:
                    try:
                        results.append((keys, fut.result()))
                    except Exception as err:  # noqa: BLE001 - a broken worker is reported per file
                        results.append((keys, [{"error": f"{type(err).__name__}: {err}"} for _ in keys]))
        for keys, metas in results:
            for key, meta in zip(keys, metas):
                req = missing[key]
                path = self._folder(key) / f"model{_SUFFIX[req['fmt']]}"
                if meta.get("error"):
                    self.artefacts[key] = Artefact(req["fmt"], req["batch"], error=meta["error"])
                    self.log(f"[bench]   FAILED {key}: {meta['error'].splitlines()[0]}")
                    continue
                write_json_atomic(self._folder(key) / "meta.json", meta)
                self.artefacts[key] = Artefact(
                    req["fmt"], req["batch"], path, meta["export_seconds"], False, path.stat().st_size,
                    meta.get("fully_delegated"), meta.get("non_delegated_compute", {}), meta.get("note", ""),
                )  # fmt: skip
        self.log(f"[bench] exports done in {time.perf_counter() - start:.1f} s")
        return self.artefacts


def _export_job(fmt: str, wrapper: nn.Module, targets: list[tuple[int | None, str]], calibration: torch.Tensor | None) -> list[dict[str, Any]]:
    """Export ``wrapper`` in ``fmt`` at each (batch, path) of ``targets``; runs in a worker process.

    Returns one metadata dict per target: export_seconds, delegation (ExecuTorch), note, or error.
    """
    from .. import export as ex

    if multiprocessing.parent_process() is not None:
        torch.set_num_threads(1)  # two workers share the cores; lowering is single-threaded anyway
    metas: list[dict[str, Any]] = []
    quantized = None
    for batch, path in targets:
        start = time.perf_counter()
        meta: dict[str, Any] = {"format": fmt, "batch": batch, "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            report = None
            if fmt == "pte":
                report = ex.export_pte(wrapper, path, batch_size=batch, require_full_delegation=False)
            elif fmt == "pte-int8":
                if quantized is None:
                    quantized = ex.quantize_int8(wrapper, calibration, batch_size=min(16, len(calibration)))
                    meta["quantize_seconds"] = round(time.perf_counter() - start, 2)
                report = ex.export_pte_int8(quantized, path, wrapper.input_shape(batch), require_full_delegation=False)
                meta["note"] = f"PT2E static int8 (XNNPACKQuantizer, per-channel), calibrated on {len(calibration)} random images"
            elif fmt == "onnx":
                meta["note"] = ex.export_onnx(wrapper, path, wrapper.input_shape(1))
            elif fmt == "ptl":
                meta["note"] = "TorchScript lite (" + ex.export_ptl(wrapper, path, wrapper.input_shape(1)) + ")"
            else:
                raise ValueError(f"unknown format {fmt!r}")
            meta["export_seconds"] = round(time.perf_counter() - start, 2)  # the first int8 file includes quantization
            if report is not None:
                meta["fully_delegated"] = bool(report["fully_delegated"])
                meta["non_delegated_compute"] = report["non_delegated_compute"]
        except Exception as err:  # noqa: BLE001 - reported per file, the other contenders still run
            meta = {"error": f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=4)}"}
        metas.append(meta)
    return metas
