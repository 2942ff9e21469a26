"""The whole run: every configured suite, exports first (one pool of worker processes), then
the measurements one at a time, one JSON per suite."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import torch

from ..environment import load_average
from .artefacts import ArtefactStore
from .cases import inference_case, training_case
from .config import SCHEMA, SCHEMA_VERSION, SUITES, TARGETS, BenchConfig
from .formatting import target_line
from .frontier import measure_frontier, prepare_frontier
from .inference import measure_inference, prepare_inference
from .machine import environment, set_threads
from .training import run_training


def _document(suite: str, cfg: BenchConfig, env: dict[str, Any], body: dict[str, Any], seconds: float) -> dict[str, Any]:
    env = {**env, "load_average_end": load_average()}
    return {"schema": SCHEMA, "version": SCHEMA_VERSION, "suite": suite, "environment": env, "config": cfg.to_json(),
            "targets_definition": TARGETS, "seconds": round(seconds, 1), **body}  # fmt: skip


def run(cfg: BenchConfig, log: Callable[[str], None] = print) -> dict[str, Path]:
    """Run the configured suites; write one JSON per suite into ``cfg.out``; return their paths."""
    from ..files import write_json_atomic

    unknown = [s for s in cfg.suites if s not in SUITES]
    if unknown:
        raise ValueError(f"unknown suite(s) {', '.join(unknown)}; valid: {', '.join(SUITES)}")
    if cfg.threads < 1:
        raise ValueError("threads must be at least 1")
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {cfg.device}: CUDA is not available on this machine")
    for name in cfg.settings:
        inference_case(name)  # fail on a bad name before any work
    for name in cfg.train_settings:
        training_case(name)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    threads = set_threads(cfg.threads)
    log(f"[bench] threads: {threads}; suites: {', '.join(cfg.suites)}; profile {cfg.profile}; out {out}")
    env = environment(threads, cfg.device)
    store = ArtefactStore(cfg.cache_dir, workers=cfg.export_workers, calibration_images=cfg.calibration_images, log=log)
    written: dict[str, Path] = {}
    total = time.perf_counter()
    try:
        # All exports first, in one pool of worker processes; then the measurements, one at a time.
        prepared = {}
        if "inference" in cfg.suites:
            prepared["inference"] = prepare_inference(cfg, store)
        if "frontier" in cfg.suites:
            prepared["frontier"] = prepare_frontier(cfg, store)
        start = time.perf_counter()
        artefacts = store.build() if prepared else {}
        export_seconds = round(time.perf_counter() - start, 1)
        for suite in cfg.suites:
            start = time.perf_counter()
            if suite == "inference":
                body = measure_inference(cfg, prepared["inference"], artefacts, log)
                name = "inference"
            elif suite == "training":
                body = run_training(cfg, log)
                name = "training_gpu" if cfg.device.startswith("cuda") else "training"
            else:
                body = measure_frontier(cfg, prepared["frontier"], artefacts, log)
                name = "frontier"
            if suite != "training":
                body["export_phase_seconds"] = export_seconds  # shared by the inference and frontier suites
            path = out / f"{name}.json"
            write_json_atomic(path, _document(suite, cfg, env, body, time.perf_counter() - start))
            written[name] = path
            log(f"[bench] {suite}: {path} ({time.perf_counter() - start:.1f} s)")
            for t in body.get("targets", []):
                log(f"[bench]   {target_line(t)}")
    finally:
        store.close()
    log(f"[bench] total {time.perf_counter() - total:.1f} s")
    return written
