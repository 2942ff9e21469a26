"""Classify image files with a trained run: ``python -m mnv3.predict RUN_DIR IMAGE_OR_FOLDER...``.

Each image goes through the run's own preprocessing and nothing else: decoded to the run's
channels and side by :func:`mnv3.imagefolder.decode_image` (the function that filled the training
cache: torchvision's ``Resize(N)`` and ``CenterCrop(N)``), then normalised with the run's recorded
mean and std by :func:`mnv3.augment.prepare_batch`, as evaluation does. The run's ``config.json``
says what those are (:func:`mnv3.imagefolder.run_dataset_info`), so neither the image folder nor
its cache is needed, and there is no second way to preprocess that could disagree with training.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

from .augment import prepare_batch
from .checkpoint import CheckpointError, load_run
from .data import DataUnavailableError
from .files import first_line
from .imagefolder import ImageFolderError, decode_image, image_files, run_dataset_info

__all__ = ["collect_images", "predict_files", "main"]


def collect_images(paths: Sequence[str | Path]) -> list[Path]:
    """The files to classify: each file as given, and every image (by extension, recursively,
    sorted) of each folder. Raises ImageFolderError for a path that does not exist, or a folder
    without images."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            found = image_files(path)
            if not found:
                raise ImageFolderError(f"{path}: a folder without images (.jpg, .png, ...)")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise ImageFolderError(f"{path}: no such file or folder")
    return files


@torch.inference_mode()
def predict_files(run_dir: str | Path, files: Sequence[Path], *, top_k: int = 3, which: str = "best",
                  batch_size: int = 64) -> tuple[list[dict[str, Any]], list[tuple[Path, str]]]:  # fmt: skip
    """Top-``top_k`` classes of each file: ``([{"file", "top": [{"label", "index", "probability"}, ...]}, ...],
    [(file, why it was not read), ...])``. Probabilities are the softmax of the model's logits.

    Raises CheckpointError for an unusable run folder and ValueError for a malformed record.
    """
    model, config = load_run(run_dir, which=which)
    info = run_dataset_info(config)
    image_size = int(config.get("image_size") or info.image_size)
    decoded, failed = [], []
    for path in files:
        try:
            decoded.append((path, torch.from_numpy(decode_image(path, info.in_channels, info.image_size).copy())))
        except Exception as err:  # noqa: BLE001 - a user's file may fail in any way; it is reported, the others still run
            failed.append((path, f"{type(err).__name__}: {first_line(err)}"))
    results = []
    k = min(top_k, info.num_classes)
    for start in range(0, len(decoded), batch_size):
        chunk = decoded[start : start + batch_size]
        x = prepare_batch(torch.stack([image for _, image in chunk]), info, train=False, image_size=image_size)
        probs = model(x).float().softmax(1)
        values, indices = probs.topk(k, dim=1)
        for (path, _), p, i in zip(chunk, values.tolist(), indices.tolist()):
            results.append({"file": str(path), "top": [{"label": info.classes[j], "index": j, "probability": q} for q, j in zip(p, i)]})
    return results, failed


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status: 0, 1 when some files could not be read (the others
    are still classified), 2 for an unusable run folder or path."""
    parser = argparse.ArgumentParser(
        prog="python -m mnv3.predict",
        description="Classify image files with a trained run, in the run's own preprocessing (decode to its channels, "
                    "torchvision's Resize(N) and CenterCrop(N) to its side, its mean and std): prints the top-k classes "
                    "with their probabilities.",
        epilog="examples:\n  python -m mnv3.predict runs/quick/photos holiday.jpg\n"
               "  python -m mnv3.predict runs/quick/photos photos/new/ --top-k 5 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (config.json with best.pt, or a published final.safetensors)")
    parser.add_argument("paths", nargs="+", metavar="IMAGE_OR_FOLDER", help="image files, and folders whose images (recursively) are all classified")
    parser.add_argument("--top-k", type=int, default=3, metavar="K", help="classes shown per image (default 3)")
    parser.add_argument("--which", choices=("best", "last", "final"), default="best", help="checkpoint (default best)")
    parser.add_argument("--json", action="store_true", help="print one JSON list: per image its file and top classes")
    args = parser.parse_args(argv)
    if args.top_k < 1:
        parser.error(f"--top-k must be at least 1, got {args.top_k}")
    try:
        results, failed = predict_files(args.run_dir, collect_images(args.paths), top_k=args.top_k, which=args.which)
    except (CheckpointError, DataUnavailableError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for path, why in failed:
        print(f"error: {path}: does not decode as an image ({why}); skipped", file=sys.stderr)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(f"{r['file']}: " + ", ".join(f"{t['label']} {100 * t['probability']:.1f}%" for t in r["top"]))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
