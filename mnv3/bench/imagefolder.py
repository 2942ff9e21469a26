"""Training on an image folder, two ways, side by side, with the same model and ``mnv3.train.train_step``.

    python -m mnv3.bench.imagefolder --from-tar ../shared/datasets/cifar10-jpeg.tar.gz --images 5000 --sizes 64,224
    python -m mnv3.bench.imagefolder --folder photos --sizes 64 --device cuda
    python -m mnv3.bench.imagefolder --from-tar ../shared/datasets/cifar10-jpeg.tar.gz --images 200 --sizes 32 --batch 16   # smoke

- **ours**: ``--dataset folder:PATH``'s path. :func:`mnv3.imagefolder.open_folder_dataset` decodes
  the folder once into a fresh cache (timed within the first epoch), the training split goes to
  the device, and each step gathers a batch there; ``train_step`` augments it on the device.
- **torchvision**: ``ImageFolder`` with the usual training transforms (``RandomResizedCrop(S)``,
  ``RandomHorizontalFlip()``, then ``PILToTensor()``, uint8 so that ``train_step`` takes the batch
  as it takes ours) and a ``DataLoader`` with 2 worker processes (``--workers``), shuffled,
  ``pin_memory`` on CUDA: every epoch decodes and transforms every image again.

Both train on the same images (our training split, 90% of the folder, the same files through
``Subset``) from the same initial weights, with batch ``--batch`` and ``drop_last``, for
``--epochs`` epochs (2 by default). The result per size is each path's seconds per epoch and the
ratios torchvision / ours for the first epoch (ours including the decode) and for the later ones;
the target is at least 1.5 from the second epoch on. Results go to ``OUT/imagefolder.json`` with
the machine's record. On a machine that other work shares the numbers measure the neighbours too.
"""
from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from ..environment import load_average, machine_record
from ..files import write_json_atomic

__all__ = ["TARGET", "extract_cifar10_subset", "time_ours", "time_torchvision", "run", "main"]

TARGET = 1.5  # torchvision's seconds per epoch / ours, from the second epoch on


def extract_cifar10_subset(tar: str | Path, dest: str | Path, images: int) -> Path:
    """The first ``images // 10`` files (by name) of each class of the CIFAR-10 JPEG mirror's training
    split, extracted into ``dest/cifar10/<class>/``: a real image folder of JPEG files. Returns it."""
    per_class = max(1, images // 10)
    with tarfile.open(tar, "r:gz") as archive:
        members = [m for m in archive.getmembers() if m.isfile() and m.name.split("/")[1:2] == ["train"]]
        chosen: dict[str, list[tarfile.TarInfo]] = {}
        for m in sorted(members, key=lambda m: m.name):
            group = chosen.setdefault(m.name.split("/")[2], [])
            if len(group) < per_class:
                group.append(m)
        root = Path(dest) / "cifar10"
        for cls, group in chosen.items():
            (root / cls).mkdir(parents=True, exist_ok=True)
            for m in group:
                (root / cls / Path(m.name).name).write_bytes(archive.extractfile(m).read())
    return root


def _setup(classes: int, size: int, batch: int, device: torch.device):
    """One model (Small, ``classes`` outputs, RGB), its optimizer and the step's context, as training makes them."""
    from ..experiments import get_experiment
    from ..model import build_model
    from ..step import make_optimizer, prepare_for_training

    exp = get_experiment("cifar10_small_s2", "quick", batch_size=batch, image_size=size)
    torch.manual_seed(0)
    model = prepare_for_training(build_model(exp.arch, num_classes=classes, in_channels=3, dropout=exp.dropout), exp, device)
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=False)  # bf16 needs no scaling

    def autocast():
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp)

    return exp, model, make_optimizer(model, exp), scaler, autocast


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ours(folder: Path, size: int, batch: int, epochs: int, device: torch.device, cache_root: Path) -> dict[str, Any]:
    """Seconds per epoch of our path; epoch 1 includes decoding into a fresh cache under ``cache_root``."""
    from ..data import iterate_batches
    from ..imagefolder import open_folder_dataset
    from ..step import train_step

    start = time.perf_counter()
    dataset = open_folder_dataset(f"folder:{folder}", image_size=size, val_fraction=0.0, root=cache_root, log=None)
    (x, y), _ = dataset.training_splits(0, device)
    _sync(device)
    decode = time.perf_counter() - start
    exp, model, optimizer, scaler, autocast = _setup(dataset.info.num_classes, size, batch, device)
    seconds = []
    for epoch in range(epochs):
        start = time.perf_counter()
        order = torch.Generator().manual_seed(epoch)
        batches = torch.stack(list(iterate_batches(len(x), batch, shuffle=True, generator=order, drop_last=True))).to(device)
        for idx in batches:
            train_step(model, optimizer, scaler, x[idx], y[idx], dataset.info, exp, image_size=size, autocast=autocast)
        _sync(device)
        seconds.append(time.perf_counter() - start + (decode if epoch == 0 else 0.0))  # the first epoch decodes too
    files = [dataset.meta["files"][r][0] for r in dataset.rows["train"].tolist()]
    return {"epoch_seconds": seconds, "decode_seconds": decode, "images": len(x), "steps_per_epoch": len(x) // batch,
            "files": files, "info": dataset.info}  # fmt: skip


def time_torchvision(folder: Path, files: list[str], info, size: int, batch: int, epochs: int, device: torch.device,
                     workers: int) -> dict[str, Any]:  # fmt: skip
    """Seconds per epoch of ImageFolder + DataLoader over the same ``files`` (relative paths)."""
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    from ..step import train_step

    transform = transforms.Compose([transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip(), transforms.PILToTensor()])
    full = datasets.ImageFolder(str(folder), transform=transform)
    index = {Path(path).relative_to(folder).as_posix(): i for i, (path, _) in enumerate(full.samples)}
    loader = DataLoader(Subset(full, [index[f] for f in files]), batch_size=batch, shuffle=True, drop_last=True,
                        num_workers=workers, pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(0))  # fmt: skip
    exp, model, optimizer, scaler, autocast = _setup(len(full.classes), size, batch, device)
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        for images, labels in loader:
            train_step(model, optimizer, scaler, images.to(device, non_blocking=True), labels.to(device, non_blocking=True), info, exp,
                       image_size=size, autocast=autocast)  # fmt: skip
        _sync(device)
        seconds.append(time.perf_counter() - start)
    return {"epoch_seconds": seconds, "images": len(files), "workers": workers}


def run(folder: Path, sizes: list[int], *, batch: int, epochs: int, device: torch.device, workers: int, out: Path,
        log: Callable[[str], None] = print) -> Path:  # fmt: skip
    """Time both paths at every size (ours first, then torchvision's), writing ``out/imagefolder.json``
    after each size; returns its path."""
    import torchvision.transforms.functional  # noqa: F401 - imported before any clock starts, for both paths

    path = Path(out) / "imagefolder.json"
    environment = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.machine()})",
        "torch": torch.__version__, "machine": machine_record(torch.get_num_threads()), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join(["python -m mnv3.bench.imagefolder", *sys.argv[1:]]),
    }  # fmt: skip
    rows = []
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="mnv3-bench-cache-") as cache_root:
            ours = time_ours(folder, size, batch, epochs, device, Path(cache_root))
        theirs = time_torchvision(folder, ours.pop("files"), ours.pop("info"), size, batch, epochs, device, workers)
        row = {"size": size, "batch": batch, "images": ours["images"], "ours": ours, "torchvision": theirs,
               "ratio_first_epoch": theirs["epoch_seconds"][0] / ours["epoch_seconds"][0],
               "load_average_after": load_average()}  # fmt: skip
        if epochs > 1:
            later = sum(theirs["epoch_seconds"][1:]) / sum(ours["epoch_seconds"][1:])
            row.update(ratio_later_epochs=later, target=TARGET, target_met=later >= TARGET)
        rows.append(row)
        write_json_atomic(path, {"environment": environment, "folder": folder.name, "epochs": epochs, "results": rows})
        later_text = f", later epochs {row['ratio_later_epochs']:.2f}x (target {TARGET}x)" if epochs > 1 else ""
        log(f"{size}x{size}, {ours['images']} images, batch {batch}: ours {', '.join(f'{s:.1f}' for s in ours['epoch_seconds'])} s "
            f"(decode {ours['decode_seconds']:.1f} s), torchvision {', '.join(f'{s:.1f}' for s in theirs['epoch_seconds'])} s; "
            f"torchvision / ours: first epoch {row['ratio_first_epoch']:.2f}x{later_text}")  # fmt: skip
    return path


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m mnv3.bench.imagefolder", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])  # fmt: skip
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--folder", type=Path, help="an image folder (PATH/<class>/<image>)")
    source.add_argument("--from-tar", type=Path, metavar="TAR", help="the CIFAR-10 JPEG mirror (cifar10-jpeg.tar.gz): --images of its "
                        "training JPEGs are extracted into a temporary folder")
    parser.add_argument("--images", type=int, default=5000, help="with --from-tar: how many images, a tenth per class (default 5000)")
    parser.add_argument("--sizes", default="64,224", help="image sides in pixels, comma-separated (default 64,224)")
    parser.add_argument("--batch", type=int, default=128, help="batch size (default 128)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per path; the ratio from the second on is the target's (default 2)")
    parser.add_argument("--workers", type=int, default=2, help="torchvision's DataLoader worker processes (default 2)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu, cuda or cuda:N (default cuda when available)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads of the training process (default torch's)")
    parser.add_argument("--out", type=Path, default=Path("reports/bench"), help="folder of imagefolder.json (default reports/bench)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if not sizes or min(sizes) < 8 or args.batch < 1 or args.epochs < 1 or args.workers < 0 or args.images < 10:
        parser.error("--sizes need at least 8 px each; --batch, --epochs positive; --workers >= 0; --images >= 10")
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="mnv3-bench-images-"))
    try:
        folder = args.folder or extract_cifar10_subset(args.from_tar, work, args.images)
        return run(folder, sizes, batch=args.batch, epochs=args.epochs, device=torch.device(args.device), workers=args.workers, out=args.out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
