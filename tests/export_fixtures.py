"""Shared set-up for tests/test_export.py and tests/test_android_assets.py.

Exporting is slow (each XNNPACK lowering takes tens of seconds on 2 cores), so the session's
tiny trained run (conftest's ``trained_run``) is exported once, by conftest's session-scoped
``exported_run`` fixture, which calls :func:`export_shared`.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

# Held-out images (the synthetic test split) used by the parity tests.
HELD_OUT = 128

# Kept small for test time; the defaults (8 x 32 calibration images, 256 parity samples, 100
# latency runs, torch's thread count) are for real exports.
EXPORT_KWARGS = dict(calibration_batches=4, calibration_batch_size=32, parity_samples=64, latency_runs=10, threads=1)


def needs_export_extras() -> None:
    """Skip the calling test where the optional export packages are absent (e.g. torch 2.11 machines)."""
    import pytest

    for module in ("executorch", "onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(module, reason=f'{module} is not installed: pip install -e ".[export]"')


def export_shared(run: Path) -> SimpleNamespace:
    """A trained run exported in every format to RUN/export, with its parity report.

    Fields: run, out (the export folder), summary (export_run's return value), wrapper (the
    eager RawPixelModel), config, info, held_out (raw float pixels of the first HELD_OUT test
    images) and held_out_uint8.
    """
    from mnv3.data import load_split
    from mnv3.export import export_run, load_wrapped_run

    summary = export_run(run, **EXPORT_KWARGS, log=None)
    wrapper, config, info = load_wrapped_run(run)
    images, _ = load_split(info.name, "test", root=config.get("data_root", "data"))
    return SimpleNamespace(
        run=run,
        out=summary["out_dir"],
        summary=summary,
        wrapper=wrapper,
        config=config,
        info=info,
        held_out=images[:HELD_OUT].float() / 255.0,
        held_out_uint8=images[:HELD_OUT],
    )
