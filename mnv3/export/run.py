"""The whole export of one run folder: the asked formats, model.json, then the parity report.

The folder is prepared first (:mod:`mnv3.export.folder`): the old parity report and model.json are
removed before any file is written, so a report always describes exactly the files beside it.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn

from ..experiments import MAX_IMAGE_SIZE
from ..imagefolder import load_run_split
from ..files import write_json_atomic
from .deps import ExportError, import_executorch, import_onnx, import_pt2e
from .folder import MANIFEST, REPORTS, finish_export_folder, prepare_export_folder
from .formats import FILE_NAMES, FORMATS, parse_formats
from .manifest import model_manifest, recorded_test_accuracy, source_run_record
from .onnx_export import ONNX_OPSET, export_onnx
from .parity import parity_report, write_parity
from .ptl import export_ptl
from .pte import INT8_FINDING, INT8_KEEP_FP32, calibration_images, export_pte, export_pte_int8, fp32_module_names, quantize_int8
from .wrapper import load_wrapped_run, run_data_location


def export_run(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    formats: str | Iterable[str] = FORMATS,
    which: str = "best",
    input_size: int | None = None,
    data_root: str | Path | None = None,
    data_mirror: str | Path | None = None,
    calibration_batches: int = 8,
    calibration_batch_size: int = 32,
    int8_keep_fp32: Sequence[str] = INT8_KEEP_FP32,
    skip_parity: bool = False,
    parity_samples: int = 256,
    eval_batch_size: int = 0,
    latency_runs: int = 0,
    onnx_opset: int = ONNX_OPSET,
    threads: int | None = None,
    require_full_delegation: bool = True,
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Export a run folder to ``out_dir`` (default ``RUN_DIR/export``) and check it.

    Writes the requested formats (see ``FILE_NAMES``), ``model.json`` and, unless
    ``skip_parity``, ``parity.json`` / ``parity.md``, in that order, after removing the folder's old
    parity report and model.json. It replaces or deletes only files an export wrote
    (:mod:`mnv3.export.folder`): ExportError, before any work, when a file it would write is
    someone else's. ``input_size`` (pixels, 1 to MAX_IMAGE_SIZE) is the side the graph takes;
    calibration and parity images are resized to it. ``eval_batch_size`` picks how the .pte files'
    full test-set accuracy is measured: 1 = through the shipped batch-1 file, B > 1 = through a
    twin program lowered at batch B from the same graph (same weights, same int8 parameters),
    0 = automatic (the shipped file when a full pass takes under a minute, else a batch-100 twin).
    ``threads`` sets torch's CPU threads (and onnxruntime's) for the call; the previous count is
    restored afterwards. Returns a summary: out_dir, files, timings (seconds per step), delegation
    reports, manifest, parity (None when skipped).
    """
    with _torch_threads(threads):
        return _export_run(
            run_dir, out_dir, formats=formats, which=which, input_size=input_size, data_root=data_root,
            data_mirror=data_mirror, calibration_batches=calibration_batches,
            calibration_batch_size=calibration_batch_size, int8_keep_fp32=int8_keep_fp32, skip_parity=skip_parity, parity_samples=parity_samples,
            eval_batch_size=eval_batch_size, latency_runs=latency_runs, onnx_opset=onnx_opset,
            require_full_delegation=require_full_delegation, log=log,
        )  # fmt: skip


@contextlib.contextmanager
def _torch_threads(threads: int | None):
    """Use ``threads`` torch CPU threads inside the block (None: leave them), then restore."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _export_run(
    run_dir, out_dir, *, formats, which, input_size, data_root, data_mirror, calibration_batches,
    calibration_batch_size, int8_keep_fp32, skip_parity, parity_samples, eval_batch_size, latency_runs, onnx_opset,
    require_full_delegation, log,
) -> dict[str, Any]:  # fmt: skip
    say = log or (lambda _msg: None)
    formats = parse_formats(formats)
    if eval_batch_size < 0 or latency_runs < 0 or parity_samples < 1 or calibration_batches < 1 or calibration_batch_size < 1:
        raise ExportError("eval_batch_size and latency_runs must be >= 0; parity_samples and the calibration sizes >= 1")
    if input_size is not None and not (isinstance(input_size, int) and 1 <= input_size <= MAX_IMAGE_SIZE):
        raise ExportError(f"input_size {input_size!r}: allowed a side from 1 to {MAX_IMAGE_SIZE} pixels (mnv3.experiments.MAX_IMAGE_SIZE)")
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "export"
    wrapper, config, info = load_wrapped_run(run_dir, which=which, input_size=input_size)
    if any(f.startswith("pte") for f in formats):
        import_executorch()  # fail before any work when executorch is missing
    if "pte-int8" in formats:
        import_pt2e()
    if "onnx" in formats:
        import_onnx()
    root, mirror = run_data_location(config, data_root, data_mirror)
    shape = wrapper.input_shape(1)
    kept = fp32_module_names(wrapper, int8_keep_fp32) if "pte-int8" in formats else []  # a bad name fails before any file
    if "pte-int8" in formats or not skip_parity:  # images it will need (an image folder's cache, say) fail before any file
        for split in ("train",) * ("pte-int8" in formats) + ("test",) * (not skip_parity):
            load_run_split(config, split, root=root, mirror=mirror)
    prepare_export_folder(out_dir, [FILE_NAMES[f] for f in formats] + [MANIFEST] + ([] if skip_parity else list(REPORTS)), say=say, run_dir=run_dir)
    say(f"exporting {run_dir} ({info.name}, input {list(shape)} raw pixels"
        f"{f', resized to {wrapper.image_size} in the graph' if wrapper.resize else ''}) -> {out_dir}")  # fmt: skip

    timings: dict[str, float] = {}
    delegation: dict[str, Any] = {}
    sources: dict[str, nn.Module] = {}
    notes: dict[str, str] = {}
    for fmt in formats:
        start = time.perf_counter()
        path = out_dir / FILE_NAMES[fmt]
        if fmt == "pte":
            delegation[fmt] = export_pte(wrapper, path, require_full_delegation=require_full_delegation)
            sources[fmt] = wrapper
        elif fmt == "pte-int8":
            calibration = calibration_images(info, calibration_batches * calibration_batch_size, root=root, mirror=mirror,
                                             config=config, size=shape[-1])
            quantized = quantize_int8(wrapper, calibration, batch_size=calibration_batch_size, keep_fp32=kept)
            timings["pte-int8 calibration"] = round(time.perf_counter() - start, 2)
            delegation[fmt] = export_pte_int8(quantized, path, shape, require_full_delegation=require_full_delegation)
            sources[fmt] = quantized
            notes[fmt] = (f"PT2E static int8 (XNNPACKQuantizer, symmetric, per-channel), {len(calibration)} calibration images"
                          + (f"; kept in fp32 (inside the XNNPACK delegate): {', '.join(int8_keep_fp32)} ({len(kept)} modules)"
                             if kept else ""))  # fmt: skip
        elif fmt == "ptl":
            notes[fmt] = "LEGACY TorchScript lite, " + export_ptl(wrapper, path, shape)
        elif fmt == "onnx":
            notes[fmt] = export_onnx(wrapper, path, shape, opset=onnx_opset)
        timings[fmt] = round(time.perf_counter() - start, 2)
        if fmt in delegation and not delegation[fmt]["fully_delegated"]:
            say(f"  WARNING: {FILE_NAMES[fmt]} is not fully delegated to XNNPACK: {delegation[fmt]['non_delegated_compute']}")
        say(f"  {FILE_NAMES[fmt]:15s} {path.stat().st_size:>10,d} bytes  {timings[fmt]:7.1f} s"
            + (f"  ({notes[fmt]})" if fmt in notes else ""))  # fmt: skip

    manifest = model_manifest(
        info, shape, {fmt: FILE_NAMES[fmt] for fmt in formats},
        test_accuracy=recorded_test_accuracy(run_dir), source_run=source_run_record(run_dir, config, which), folder=out_dir,
        extra={"model": {"arch": config.get("model", {}).get("spec", {}).get("name"), "trained_image_size": wrapper.image_size},
               "notes": notes},
    )  # fmt: skip
    write_json_atomic(out_dir / "model.json", manifest)

    parity = None
    if not skip_parity:
        start = time.perf_counter()
        parity = parity_report(
            wrapper, out_dir, formats, sources, info, config,
            root=root, mirror=mirror, samples=parity_samples, eval_batch_size=eval_batch_size,
            latency_runs=latency_runs, require_full_delegation=require_full_delegation, say=say,
        )  # fmt: skip
        parity["export_seconds"] = dict(timings)
        if "int8" in parity:
            parity["int8"]["keep_fp32"] = list(int8_keep_fp32)  # layer kinds the int8 program runs in fp32
            parity["int8"]["finding"] = INT8_FINDING
        parity["delegation"] = delegation  # per .pte format: delegation_report (notebooks/06_export shows it)
        timings["parity"] = round(time.perf_counter() - start, 2)
        write_parity(parity, out_dir)
        say(f"  parity report: {out_dir / 'parity.md'} ({timings['parity']:.1f} s)")
        if parity["failures"]:
            raise ExportError(f"{out_dir}: the export is broken, do not ship it: {'; '.join(parity['failures'])} (see parity.md)")
    finish_export_folder(out_dir)
    return {
        "out_dir": out_dir,
        "files": {fmt: out_dir / FILE_NAMES[fmt] for fmt in formats},
        "timings": timings,
        "delegation": delegation,
        "manifest": manifest,
        "parity": parity,
    }
