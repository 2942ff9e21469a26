"""The Android app's assets: per dataset the fp32 model.pte, model.json, test images as PNGs and
golden.json (the .pte's logits on them), swapped into place atomically. Two slots are the report's
(``mnist/``, ``cifar10/``); a third, ``custom/``, takes any run, an image folder's too."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import torch

from ..imagefolder import load_run_split
from ..files import make_staging, remove_stale_staging, write_bytes_atomic, write_json_atomic
from ..records import RecordError, read_record
from .deps import ExportError, import_executorch
from .formats import FILE_NAMES
from .manifest import model_manifest, recorded_test_accuracy, source_run_record, verify_files
from .pte import export_pte
from .runners import PteRunner
from .wrapper import load_wrapped_run, run_data_location

DEFAULT_ASSETS_DIR = Path("android-demo/app/src/main/assets")
CUSTOM_SLOT = "custom"  # the app's third button reads assets/custom/


def _pick_images(labels: torch.Tensor, n: int, num_classes: int) -> list[int]:
    """``n`` test indices, classes in turn (0, 1, ..., 9, 0, 1, ...), each class's in test order."""
    per_class = [torch.nonzero(labels == k).flatten().tolist() for k in range(num_classes)]
    picked: list[int] = []
    rank = 0
    while len(picked) < n and any(rank < len(p) for p in per_class):
        picked += [p[rank] for p in per_class if rank < len(p)][: n - len(picked)]
        rank += 1
    return picked


def save_png(image: torch.Tensor, path: Path) -> None:
    """uint8 [C, H, W] -> 8-bit PNG: "L" for one channel, "RGB" for three (lossless)."""
    from PIL import Image

    array = image[0].numpy() if image.shape[0] == 1 else image.permute(1, 2, 0).contiguous().numpy()
    Image.fromarray(array).save(path, format="PNG")


def png_to_input(path: str | Path, channel_order: str) -> torch.Tensor:
    """Decode a PNG as the app does: [1, C, H, W] float32 raw pixels / 255 ("gray" or "RGB")."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as img:
        array = np.asarray(img.convert("L" if channel_order == "gray" else "RGB"), dtype=np.uint8)
    x = torch.from_numpy(array.copy()).float() / 255.0
    return x[None, None] if channel_order == "gray" else x.permute(2, 0, 1)[None].contiguous()


def _reusable_export(run_dir: Path, source: dict[str, Any], shape: list[int], say) -> Path | None:
    """RUN/export/model.pte if model.json there says it came from this very checkpoint and shape,
    and the file's bytes still have the sha256 recorded there. A model.json that breaks the rules
    of :mod:`mnv3.records` is not trusted: the .pte is exported afresh."""
    export_dir = run_dir / "export"
    if not (export_dir / "model.json").exists():
        return None
    try:
        manifest = read_record(export_dir / "model.json", kind="manifest")
    except RecordError as err:
        say(f"  not reusing {export_dir / FILE_NAMES['pte']}: {err} Exporting afresh.")
        return None
    same = (
        (manifest.get("source_run") or {}).get("checkpoint_sha256") == source["checkpoint_sha256"]
        and manifest["input"]["shape"] == shape
    )
    if not same:
        return None
    problems = verify_files(export_dir, manifest, [FILE_NAMES["pte"]])
    if problems:
        say(f"  not reusing {export_dir / FILE_NAMES['pte']}: {problems[0]}; exporting afresh")
        return None
    return export_dir / FILE_NAMES["pte"]


def _android_dataset(
    run_dir: Path, staging: Path, n_images: int, *, expect_channels: int | None, slot: str, data_root, data_mirror, say
) -> Path:
    """Write one dataset's assets into ``staging/<dataset>/`` (``staging/custom/`` for the custom
    slot, which takes any channels), a fresh folder; returns it."""
    wrapper, config, info = load_wrapped_run(run_dir)
    if expect_channels is not None and info.in_channels != expect_channels:
        raise ExportError(
            f"{run_dir}: the {slot} slot needs a {'gray' if expect_channels == 1 else 'RGB'} dataset, "
            f"but this run was trained on {info.name} ({info.in_channels} channel(s))"
        )
    shape = list(wrapper.input_shape(1))
    source = source_run_record(run_dir, config)
    dest = staging / (CUSTOM_SLOT if slot == CUSTOM_SLOT else info.name)
    (dest / "images").mkdir(parents=True)

    reuse = _reusable_export(run_dir, source, shape, say)
    if reuse is not None:
        write_bytes_atomic(dest / FILE_NAMES["pte"], reuse.read_bytes())
        say(f"  {info.name}: copied {reuse}")
    else:
        start = time.perf_counter()
        export_pte(wrapper, dest / FILE_NAMES["pte"])
        say(f"  {info.name}: exported model.pte from {run_dir} ({time.perf_counter() - start:.1f} s)")
    manifest = model_manifest(
        info, shape, {"pte": FILE_NAMES["pte"]}, test_accuracy=recorded_test_accuracy(run_dir), source_run=source, folder=dest
    )
    write_json_atomic(dest / "model.json", manifest)

    root, mirror = run_data_location(config, data_root, data_mirror)
    images, labels = load_run_split(config, "test", root=root, mirror=mirror)
    runner = PteRunner(dest / FILE_NAMES["pte"])
    order = manifest["input"]["channel_order"]
    entries = []
    width = max(2, len(str(n_images - 1)))
    for i, index in enumerate(_pick_images(labels, n_images, info.num_classes)):
        name = f"images/{i:0{width}d}.png"
        save_png(images[index], dest / name)
        logits = runner(png_to_input(dest / name, order))[0]  # the pixels as decoded from the PNG
        if not bool(torch.isfinite(logits).all()):
            raise ExportError(f"{run_dir}: the model.pte outputs NaN or inf for test image {index}; not writing the app's assets")
        entries.append({
            "file": name,
            "label": int(labels[index]),
            "test_index": int(index),
            "expected_index": int(logits.argmax()),
            "expected_logits": [float(v) for v in logits],
        })  # fmt: skip
    write_json_atomic(dest / "golden.json", {"dataset": info.name, "model": FILE_NAMES["pte"], "images": entries})
    correct = sum(e["expected_index"] == e["label"] for e in entries)
    say(f"  {info.name}: {len(entries)} images, golden.json ({correct}/{len(entries)} predicted right)")
    return dest


def _swap_in(staged: list[Path], assets_dir: Path, backup_dir: Path) -> None:
    """Move each staged folder to ``assets_dir/<name>``, the folder it replaces to ``backup_dir``.

    Renames within one file system, so the app never sees half a dataset; if one fails, the
    ones already moved are put back.
    """
    assets_dir.mkdir(parents=True, exist_ok=True)
    for folder in staged:
        if (assets_dir / folder.name).is_symlink() or ((assets_dir / folder.name).exists() and not (assets_dir / folder.name).is_dir()):
            raise ExportError(f"{assets_dir / folder.name}: a file or link stands where the {folder.name} assets folder goes; "
                              "move it away (nothing was changed).")
    done: list[tuple[Path, Path | None]] = []
    try:
        for folder in staged:
            dest = assets_dir / folder.name
            backup = None
            if dest.exists():
                backup = backup_dir / folder.name
                os.replace(dest, backup)
            done.append((dest, backup))
            os.replace(folder, dest)
    except BaseException:
        for dest, backup in reversed(done):
            if backup is not None and backup.exists():
                shutil.rmtree(dest, ignore_errors=True)
                os.replace(backup, dest)
        raise


def make_android_assets(
    mnist_run: str | Path | None = None,
    cifar_run: str | Path | None = None,
    assets_dir: str | Path = DEFAULT_ASSETS_DIR,
    n_images: int = 20,
    *,
    data_root: str | Path | None = None,
    data_mirror: str | Path | None = None,
    log: Callable[[str], None] | None = print,
    custom_run: str | Path | None = None,
) -> dict[str, Path]:
    """Fill ``<assets_dir>/<dataset>/`` for the Android app, for each run given: ``mnist_run`` (gray)
    and ``cifar_run`` (RGB) in their dataset's folder, ``custom_run`` (any run, e.g. of your own
    images) in ``<assets_dir>/custom/``, which the app's third button shows.

    Writes the fp32 ``model.pte`` (copied from ``RUN/export/`` when that export is of the same
    checkpoint and its bytes match the sha256 in its model.json, else exported afresh),
    ``model.json`` (with the .pte's sha256), ``n_images`` test images as lossless PNGs
    (``images/00.png``...; 8-bit "L" for gray datasets, "RGB" for colour ones, classes in turn) and
    ``golden.json``: per image its true label, and the logits and predicted index of the .pte run
    through the ExecuTorch Python runtime on the pixels decoded back from the PNG. The app's
    instrumented test compares its own outputs with these.

    Everything is written into a staging folder beside ``assets_dir`` first
    (``.<assets_dir name>.staging-<pid>-*``, removed by the next run if this one is killed) and
    moved in at the end: when anything fails (ExportError, CheckpointError, RecordError,
    DataUnavailableError...), the assets folder is left exactly as it was. An ``assets_dir`` that
    is a file, or a parent folder that is not writable, is refused before any export work
    (ExportError, OSError). Returns {dataset: folder}.
    """
    say = log or (lambda _msg: None)
    if mnist_run is None and cifar_run is None and custom_run is None:
        raise ExportError("give at least one run folder (the MNIST-family run, the CIFAR run and/or a custom run)")
    if n_images < 1:
        raise ExportError(f"n_images must be at least 1, got {n_images}")
    assets_dir = Path(assets_dir)
    if assets_dir.exists() and not assets_dir.is_dir():
        raise ExportError(f"{assets_dir}: a file stands where the app's assets folder goes; give --assets-dir a folder.")
    import_executorch()
    remove_stale_staging(assets_dir.parent, f"{assets_dir.name}.staging")
    staging = make_staging(assets_dir.parent, f"{assets_dir.name}.staging")
    try:
        staged = []
        for slot, run, channels in (("mnist", mnist_run, 1), ("cifar", cifar_run, 3), (CUSTOM_SLOT, custom_run, None)):
            if run is None:
                continue
            staged.append(_android_dataset(
                Path(run), staging / "new", n_images, expect_channels=channels, slot=slot,
                data_root=data_root, data_mirror=data_mirror, say=say,
            ))  # fmt: skip
        (staging / "old").mkdir()
        _swap_in(staged, assets_dir, staging / "old")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    done = {folder.name: assets_dir / folder.name for folder in staged}
    say(f"  app assets -> {assets_dir}: {', '.join(done)}")
    return done
