"""Your own images: ``--dataset folder:PATH``, torchvision's ImageFolder layout decoded once into a
memory-mapped uint8 cache, and the one reader of a run's dataset for everything downstream.

Layouts (PATH is what follows ``folder:``):

* ``PATH/<class>/**/<image>``: split with a fixed seed (:data:`SPLIT_SEED`), class by class:
  ``TEST_FRACTION`` of each class's images go to test and ``val_fraction`` to validation (rounded;
  at least one image of each class stays in train).
* ``PATH/train/<class>/...`` with an optional ``PATH/val/<class>/...`` and ``PATH/test/<class>/...``,
  used as given; an absent split is carved out of train by the rule above.

Classes are the class folder names, sorted (label k is the k-th name), as ImageFolder's
``find_classes``. Images are the files with ImageFolder's extensions (:data:`IMG_EXTENSIONS`, any
case), found recursively and following symlinks; other files and hidden entries are ignored and
counted. The dataset is grayscale (one channel) if every image is, else RGB. Every image goes
through :func:`decode_image`: torchvision's ``Resize(N)`` (shorter side to N pixels, bilinear,
antialiased) and ``CenterCrop(N)``; ``python -m mnv3.predict`` calls the same function.

The cache ``<root>/cache/folder-<fingerprint>/`` holds ``images.npy`` (uint8 [N, C, S, S], written
row by row, so building it never holds the dataset in memory) and ``meta.json`` (files, labels,
classes). The fingerprint covers each file's path, size and modification time, and the asked
size, so adding or editing an image rebuilds it. Training keeps a split on its device when it fits
in half the free memory (or ``$MNV3_RESIDENT_BYTES``), else it streams batches from the
memory-mapped file (:class:`MappedImages`). Mean and standard deviation are measured on the
training split. All of it is recorded in ``config.json``'s ``dataset_info`` block
(:func:`dataset_record`), which :func:`run_dataset_info` and :func:`load_run_split` read back for
evaluation, prediction and export, for built-in datasets too, without the image folder.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .data import DataUnavailableError, DatasetInfo, dataset_info, load_split
from .environment import available_memory
from .files import first_line, write_json_atomic

__all__ = [
    "FOLDER_PREFIX", "IMG_EXTENSIONS", "TEST_FRACTION", "SPLIT_SEED", "RESIZE_RULE", "RESIDENT_ENV", "ImageFolderError",
    "is_folder_dataset", "folder_path", "image_files", "scan_folder", "FolderScan", "fingerprint", "decode_image",
    "split_rows", "channel_stats", "MappedImages", "resident_budget", "FolderDataset", "open_folder_dataset",
    "dataset_record", "run_dataset_info", "load_run_split",
]  # fmt: skip

FOLDER_PREFIX = "folder:"
# torchvision.datasets.folder.IMG_EXTENSIONS, compared in lower case as ImageFolder does.
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})  # PIL modes without colour
SPLIT_NAMES = ("train", "val", "test")
TEST_FRACTION = 0.1
SPLIT_SEED = 0
CACHE_FORMAT = 1
RESIZE_RULE = "torchvision's Resize(N) then CenterCrop(N): the shorter side to N pixels (bilinear, antialiased), then the centre NxN"
RESIDENT_ENV = "MNV3_RESIDENT_BYTES"
SKIP_HINT = "remove it, or pass --skip-bad-images to skip such files (counted, and listed in the log and config.json)"
LAYOUT = "PATH/<class>/<image> (split with a fixed seed), or PATH/train/<class>/<image> with optional PATH/val/ and PATH/test/"


class ImageFolderError(DataUnavailableError):
    """An image folder that cannot be a dataset; the message names the file or folder and the fix."""


def is_folder_dataset(name: Any) -> bool:
    """Whether a dataset name is an image folder (``folder:PATH``)."""
    return isinstance(name, str) and name.startswith(FOLDER_PREFIX)


def folder_path(name: str) -> Path:
    """The PATH of ``folder:PATH``."""
    return Path(name[len(FOLDER_PREFIX):]).expanduser()


# ----------------------------------------------------------------------------- finding the images


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS)


def _dir_key(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino


def _check_link(path: Path) -> None:
    """ImageFolderError for a symlink that points back at itself (ELOOP); a merely broken link passes."""
    try:
        path.stat()
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise ImageFolderError(f"{path}: a symlink loop (the link leads back to itself); remove it") from None


def _walk(folder: Path, top: Path, ignored: list[str], ancestors: Sequence[tuple[Path, tuple[int, int]]] = ()) -> list[Path]:
    """Image files under ``folder``, recursively and through symlinks, sorted by path. Other files
    and hidden entries are appended to ``ignored`` (relative to ``top``). A folder that leads back
    to one of its ancestors (a symlink loop) or a link to itself raises ImageFolderError."""
    found: list[Path] = []
    stack = [(folder, tuple(ancestors))]
    while stack:
        here, chain = stack.pop()
        try:
            key = _dir_key(here)
            entries = sorted(os.scandir(here), key=lambda e: e.name)
        except OSError as err:
            raise ImageFolderError(f"{here}: cannot be read ({err.strerror or err}); fix its permissions or remove it") from None
        for ancestor, ancestor_key in chain:
            if ancestor_key == key:
                raise ImageFolderError(f"{here}: a symlink loop (it leads back to {ancestor}); remove the link")
        chain = (*chain, (here, key))
        for entry in entries:
            path = Path(entry.path)
            if entry.is_symlink():
                _check_link(path)  # a broken link named like an image is kept, and reported when it fails to decode
            if not entry.name.startswith(".") and entry.is_dir():
                stack.append((path, chain))
                continue
            if _is_image(entry.name) and not entry.name.startswith("."):
                found.append(path)
            else:
                ignored.append(path.relative_to(top).as_posix())
    return sorted(found)


def image_files(folder: str | Path) -> list[Path]:
    """Every image file under ``folder`` (by extension, recursively, sorted), as ImageFolder finds them."""
    folder = Path(folder)
    return _walk(folder, folder, [])


@dataclass
class FolderScan:
    """What an image folder holds, before any image is opened."""

    root: Path
    layout: str  # "classes" (PATH/<class>/) or "splits" (PATH/train/<class>/, ...)
    classes: tuple[str, ...]
    files: list[tuple[str, int, str]]  # (path relative to root, label, source: "all", "train", "val" or "test")
    ignored: list[str]  # relative paths of files that are not images, and of hidden entries


def _subfolders(folder: Path, top: Path, ignored: list[str]) -> list[str]:
    """The names of ``folder``'s non-hidden subfolders, sorted; everything else goes to ``ignored``."""
    names = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.is_symlink():
            _check_link(Path(entry.path))
        if not entry.name.startswith(".") and entry.is_dir():
            names.append(entry.name)
        else:
            ignored.append(Path(entry.path).relative_to(top).as_posix())
    return names


def scan_folder(path: str | Path) -> FolderScan:
    """Find the classes and image files of an image folder (no image is opened).

    Raises ImageFolderError, naming the folder and the fix, for a folder that does not exist or
    holds no images, an empty class folder, a single class, a class of val/ or test/ that train/
    lacks, a symlink loop, and extra folders beside train/.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise ImageFolderError(f"folder:{path}: {root.absolute()} does not exist; the layout is {LAYOUT}")
    if not root.is_dir():
        raise ImageFolderError(f"folder:{path}: {root} is a file, not a folder; the layout is {LAYOUT}")
    ignored: list[str] = []
    top = _subfolders(root, root, ignored)
    root_chain = ((root, _dir_key(root)),)
    if "train" in top:
        layout, extra = "splits", [d for d in top if d not in SPLIT_NAMES]
        if extra:
            raise ImageFolderError(f"{root} holds train/ and also {', '.join(d + '/' for d in extra)}: with train/ only train/, val/ "
                                   "and test/ are read; move the others into them, or remove them")
        sources = {s: root / s for s in SPLIT_NAMES if s in top}
    else:
        layout, sources = "classes", {"all": root}
    class_dirs = {s: top if s == "all" else _subfolders(d, root, ignored) for s, d in sources.items()}
    main = "train" if layout == "splits" else "all"
    classes = tuple(class_dirs[main])
    if not classes:
        loose = [p for p in ignored if "/" not in p and _is_image(p)]
        what = f"{len(loose)} images but no class folders: put each class's images in {root}/<class>/" if loose else "no class folders and no images"
        raise ImageFolderError(f"{sources[main]} holds {what}; the layout is {LAYOUT}")
    if len(classes) == 1:
        raise ImageFolderError(f"{sources[main]} holds a single class folder ({classes[0]}/): a classifier needs at least two classes")
    files: list[tuple[str, int, str]] = []
    for source, names in class_dirs.items():
        for name in names:
            if name not in classes:
                raise ImageFolderError(f"{sources[source] / name}: class {name!r} is in {source}/ but not in train/, so the model cannot "
                                       f"learn it; add {root / 'train' / name}/ or remove {sources[source] / name}/")
            chain = root_chain + (((sources[source], _dir_key(sources[source])),) if source != "all" else ())
            found = _walk(sources[source] / name, root, ignored, chain)
            if not found:
                raise ImageFolderError(f"{sources[source] / name}: an empty class folder (no {'/'.join(IMG_EXTENSIONS)} files); "
                                       "add images or remove the folder")
            files += [(p.relative_to(root).as_posix(), classes.index(name), source) for p in found]
    return FolderScan(root, layout, classes, files, ignored)


def fingerprint(scan: FolderScan, image_size: int) -> str:
    """SHA-256 (hex) of the cache format, the asked size, and every image's relative path, size in bytes
    and modification time (ns): adding, removing or editing an image changes it."""
    digest = hashlib.sha256(f"mnv3-imagefolder {CACHE_FORMAT} size={image_size} layout={scan.layout}\n".encode())
    for rel, _, source in scan.files:
        try:
            st = (scan.root / rel).stat()
            stamp = f"{st.st_size}\0{st.st_mtime_ns}"
        except OSError:  # a broken link: it is reported when decoded
            stamp = "missing"
        digest.update(f"{source}\0{rel}\0{stamp}\n".encode())
    return digest.hexdigest()


# ----------------------------------------------------------------------------- decoding


def decode_image(path: str | Path, channels: int, size: int) -> np.ndarray:
    """One image file as uint8 ``[channels, size, size]``: converted to "L" (channels 1) or "RGB"
    (3) by PIL, then torchvision's ``Resize(size)`` and ``CenterCrop(size)`` (:data:`RESIZE_RULE`).

    The cache and ``python -m mnv3.predict`` both call this, so a prediction sees the pixels that
    training saw. Raises whatever PIL raises for a file that does not decode.
    """
    import torchvision.transforms.functional as TF
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("L" if channels == 1 else "RGB")
    img = TF.center_crop(TF.resize(img, [size], antialias=True), [size, size])
    array = np.asarray(img, dtype=np.uint8)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def _header(path: Path) -> tuple[str, tuple[int, int]] | str:
    """(PIL mode, (width, height)) from the file's header, or why it does not open."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.mode, img.size
    except Exception as err:  # noqa: BLE001 - an image from a user's folder may fail in any way
        return f"{type(err).__name__}: {first_line(err)}"


def _decode(path: Path, channels: int, size: int) -> np.ndarray | str:
    try:
        return decode_image(path, channels, size)
    except Exception as err:  # noqa: BLE001 - as _header
        return f"{type(err).__name__}: {first_line(err)}"


def _bad_file_error(root: Path, bad: list[tuple[str, str]]) -> ImageFolderError:
    more = f" ({len(bad) - 1} more files do not decode either, e.g. {', '.join(r for r, _ in bad[1:4])})" if len(bad) > 1 else ""
    return ImageFolderError(f"{root / bad[0][0]}: does not decode as an image ({bad[0][1]}){more}; {SKIP_HINT}")


def _build_cache(scan: FolderScan, image_size: int, digest: str, skip_bad: bool, cache_dir: Path, say: Callable[[str], None],
                 workers: int | None) -> None:  # fmt: skip
    """Open every image's header (modes, sizes), then decode each into ``cache_dir/images.npy`` row by
    row; write ``meta.json`` (with ``digest``, the caller's :func:`fingerprint` of ``scan``); move the
    folder into place whole."""
    from tqdm.auto import tqdm

    paths = [scan.root / rel for rel, _, _ in scan.files]
    workers = workers or min(8, os.cpu_count() or 1)
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:  # PIL decodes and resizes without holding the GIL
        heads = list(pool.map(_header, paths, chunksize=64))
        bad = [(rel, h) for (rel, _, _), h in zip(scan.files, heads) if isinstance(h, str)]
        if bad and not skip_bad:
            raise _bad_file_error(scan.root, bad)
        keep = [i for i, h in enumerate(heads) if not isinstance(h, str)]
        channels = 1 if all(heads[i][0] in GRAY_MODES for i in keep) else 3
        size = image_size or _uniform_size(scan, [(scan.files[i][0], heads[i][1]) for i in keep])
        say(f"decoding {len(keep):,} images of {scan.root} once into {cache_dir} ({'gray' if channels == 1 else 'RGB'}, {size}x{size})")
        cache_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_dir.parent / f".{cache_dir.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            array = np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=np.uint8, shape=(len(keep), channels, size, size))
            failed: list[int] = []
            with tqdm(total=len(keep), desc=f"decoding {scan.root.name}", unit="img", disable=None, leave=False) as bar:
                for first in range(0, len(keep), 1024):  # in chunks: a million pending futures would not fit
                    chunk = keep[first : first + 1024]
                    for row, image in zip(range(first, first + len(chunk)), pool.map(lambda i: _decode(paths[i], channels, size), chunk)):
                        if isinstance(image, str):
                            failed.append(row)
                            bad.append((scan.files[keep[row]][0], image))
                        else:
                            array[row] = image
                    bar.update(len(chunk))
            if failed and not skip_bad:
                raise _bad_file_error(scan.root, bad)
            if failed:
                array = _drop_rows(array, failed, tmp)
                dropped = set(failed)
                keep = [k for row, k in enumerate(keep) if row not in dropped]
            array.flush()
            del array
            files = [list(scan.files[i]) for i in keep]
            _check_classes_left(scan, files, bad)
            write_json_atomic(tmp / "meta.json", {
                "format": CACHE_FORMAT, "fingerprint": digest, "layout": scan.layout, "classes": list(scan.classes),
                "channels": channels, "image_size": size, "requested_size": image_size, "files": files, "skipped": [list(b) for b in bad],
            })  # fmt: skip
            try:
                os.replace(tmp, cache_dir)
            except OSError:  # another process (a DDP rank) finished the same cache first
                if not (cache_dir / "meta.json").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    say(f"decoded {len(keep):,} images in {time.perf_counter() - start:.1f} s")


def _drop_rows(array: np.ndarray, rows: list[int], tmp: Path) -> np.ndarray:
    """``array`` without ``rows`` (images that failed to decode), as a new file, copied in chunks."""
    drop = set(rows)
    kept = [r for r in range(len(array)) if r not in drop]
    out = np.lib.format.open_memmap(tmp / "images.compact.npy", mode="w+", dtype=np.uint8, shape=(len(kept), *array.shape[1:]))
    for first in range(0, len(kept), 1024):
        out[first : first + 1024] = array[kept[first : first + 1024]]
    out.flush()
    del array
    os.replace(tmp / "images.compact.npy", tmp / "images.npy")
    return out


def _uniform_size(scan: FolderScan, sizes: list[tuple[str, tuple[int, int]]]) -> int:
    """The images' common square side, for ``--image-size 0``; ImageFolderError when they differ."""
    distinct = {}
    for rel, wh in sizes:
        distinct.setdefault(wh, rel)
    if len(distinct) == 1 and next(iter(distinct))[0] == next(iter(distinct))[1]:
        return next(iter(distinct))[0]
    examples = ", ".join(f"{rel} is {w}x{h}" for (w, h), rel in list(distinct.items())[:2])
    raise ImageFolderError(f"{scan.root}: the images are not all one square size ({examples}); pass --image-size N: "
                           f"each image is then resized to NxN by {RESIZE_RULE}")


def _check_classes_left(scan: FolderScan, files: list[list[Any]], bad: list[tuple[str, str]]) -> None:
    left = {(label, source) for _, label, source in files}
    for rel, label, source in scan.files:
        if (label, source) not in left:
            folder = scan.root / (f"{source}/" if source != "all" else "") / scan.classes[label]
            raise ImageFolderError(f"{folder}: no image of this class folder decodes ({len(bad)} files skipped in all); "
                                   "replace them, or remove the folder")


def _read_cache(cache_dir: Path, digest: str) -> tuple[tuple[torch.Tensor, dict[str, Any]] | None, str]:
    """``((images uint8 [N, C, S, S] memory-mapped, meta), "")``, or ``(None, what is wrong)``."""
    try:
        meta = json.loads((cache_dir / "meta.json").read_text())
        array = np.load(cache_dir / "images.npy", mmap_mode="c")  # copy-on-write: a writable view, the file never changes
    except (OSError, ValueError) as err:
        return None, f"cannot be read ({first_line(err, type(err).__name__)})"
    if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT or meta.get("fingerprint") != digest:
        return None, "belongs to another version of the folder or of mnv3"
    expected = (len(meta["files"]), meta["channels"], meta["image_size"], meta["image_size"])
    if array.dtype != np.uint8 or array.shape != expected:
        return None, f"holds {array.dtype} {array.shape}, expected uint8 {expected}"
    return (torch.from_numpy(array), meta), ""


# ----------------------------------------------------------------------------- splits and statistics


def split_rows(labels: torch.Tensor, sources: Sequence[str], num_classes: int, val_fraction: float, seed: int = SPLIT_SEED) -> dict[str, torch.Tensor]:
    """Rows of each split ("train", "val", "test") as int64 tensors.

    Rows from ``val``/``test`` folders stay there. Where such a folder is absent, the split is
    carved out of the pool (``train`` or ``all`` rows) class by class with a fixed-seed permutation:
    ``round(n * TEST_FRACTION)`` to test, ``round(n * val_fraction)`` to validation, keeping at
    least one image of each class in train. Each split is then put in a fixed shuffled order, so
    that its first images hold every class (a parity sample, the app's images).
    """
    source = np.asarray(sources)
    carve = {s: not (source == s).any() for s in ("val", "test")}
    pool = np.flatnonzero((source == "all") | (source == "train"))
    out: dict[str, list[int]] = {"train": [], "val": np.flatnonzero(source == "val").tolist(), "test": np.flatnonzero(source == "test").tolist()}
    g = torch.Generator().manual_seed(seed)
    pool_labels = labels[torch.from_numpy(pool)] if len(pool) else torch.zeros(0, dtype=torch.long)
    for k in range(num_classes):
        members = pool[(pool_labels == k).numpy()]
        members = members[torch.randperm(len(members), generator=g).numpy()]
        n = len(members)
        n_test = min(round(n * TEST_FRACTION), max(0, n - 1)) if carve["test"] else 0
        n_val = min(round(n * val_fraction), max(0, n - 1 - n_test)) if carve["val"] else 0
        out["test"] += members[:n_test].tolist()
        out["val"] += members[n_test : n_test + n_val].tolist()
        out["train"] += members[n_test + n_val :].tolist()
    result = {}
    for i, name in enumerate(SPLIT_NAMES):
        rows = torch.tensor(sorted(out[name]), dtype=torch.long)
        result[name] = rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed + 1 + i))]
    return result


def channel_stats(images: torch.Tensor, rows: torch.Tensor, chunk: int = 512) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of pixel/255 over ``images[rows]`` (uint8 [N, C, H, W]).

    Exact: per channel, a histogram of the 256 byte values is counted chunk by chunk (a
    memory-mapped cache is read once, in order), and the moments come from it in float64. A
    standard deviation under 1/255 (constant images) is raised to 1/255, so normalising never
    divides by zero.
    """
    channels = images.shape[1]
    counts = torch.zeros(channels, 256, dtype=torch.float64)
    ordered = rows.sort().values
    for first in range(0, len(ordered), chunk):
        batch = images[ordered[first : first + chunk]]
        for c in range(channels):
            counts[c] += torch.bincount(batch[:, c].reshape(-1), minlength=256).double()
    values = torch.arange(256, dtype=torch.float64) / 255
    n = counts.sum(1).clamp_min(1)
    mean = (counts * values).sum(1) / n
    std = ((counts * values**2).sum(1) / n - mean**2).clamp_min(0).sqrt().clamp_min(1 / 255)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


class MappedImages:
    """Rows ``rows`` of a memory-mapped uint8 image cache ``[N, C, H, W]``, indexed like a tensor on
    ``device``: ``x[idx]`` (an index tensor on any device, a slice or an int) reads just those images
    from the file and returns them on ``device``. ``len()``, ``shape`` and ``to(device)`` as a tensor's.
    Training streams a split bigger than memory through it; the operating system caches what fits.
    """

    dtype = torch.uint8

    def __init__(self, images: torch.Tensor, rows: torch.Tensor, device: str | torch.device = "cpu") -> None:
        self.images, self.rows, self.device = images, rows.cpu(), torch.device(device)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.rows), *self.images.shape[1:]))

    def __getitem__(self, key) -> torch.Tensor:
        rows = self.rows[key.cpu() if isinstance(key, torch.Tensor) else key]
        return self.images[rows].to(self.device)

    def to(self, device: str | torch.device) -> "MappedImages":
        return MappedImages(self.images, self.rows, device)


def resident_budget(device: str | torch.device) -> int:
    """Bytes of images a split may take on ``device`` before it streams from the cache instead:
    ``$MNV3_RESIDENT_BYTES`` when set, else half the device's free memory (CUDA) or half the
    available memory (the CPU: :func:`mnv3.environment.available_memory`, a memory cgroup's limit
    included, or sysconf)."""
    device = torch.device(device)
    if os.environ.get(RESIDENT_ENV):
        try:
            return int(os.environ[RESIDENT_ENV])
        except ValueError:
            raise ImageFolderError(f"{RESIDENT_ENV}={os.environ[RESIDENT_ENV]!r} is not a whole number of bytes") from None
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] // 2
    available = available_memory()
    return (available if available is not None else os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")) // 2


# ----------------------------------------------------------------------------- the dataset


class FolderDataset:
    """An image folder in its cache: ``info`` (:class:`mnv3.data.DatasetInfo`: name ``folder:<folder's
    name>``, sorted classes, channels, side, the training split's mean and std), ``details`` (the
    ``folder`` part of config.json's dataset_info block) and its splits (:meth:`split`)."""

    def __init__(self, images: torch.Tensor, meta: dict[str, Any], *, path: Path, cache_dir: Path, val_fraction: float,
                 info: DatasetInfo | None = None, ignored: int = 0, log: Callable[[str], None] | None = None) -> None:  # fmt: skip
        self.images, self.meta, self.say = images, meta, log or (lambda _m: None)
        self.labels = torch.tensor([f[1] for f in meta["files"]], dtype=torch.long)
        classes = tuple(meta["classes"])
        self.rows = split_rows(self.labels, [f[2] for f in meta["files"]], len(classes), val_fraction)
        if info is None:
            mean, std = channel_stats(images, self.rows["train"])
            info = DatasetInfo(f"folder:{path.resolve().name}", len(classes), meta["channels"], meta["image_size"], mean, std, classes)
        self.info = info
        size = meta["image_size"]
        self.details = {
            "path": str(path.resolve()), "layout": meta["layout"], "fingerprint": meta["fingerprint"], "cache": cache_dir.name,
            "images": len(meta["files"]), "splits": {s: len(r) for s, r in self.rows.items()}, "val_fraction": val_fraction,
            "test_fraction": TEST_FRACTION, "split_seed": SPLIT_SEED, "requested_image_size": meta["requested_size"],
            "resize": RESIZE_RULE.replace("N", str(size)),
            "channels": "gray: every image is grayscale" if meta["channels"] == 1 else "RGB: not every image is grayscale",
            "skipped": [rel for rel, _ in meta["skipped"]], "ignored_files": ignored,
        }  # fmt: skip

    def _place(self, parts: Sequence[torch.Tensor], device: torch.device) -> list[Any]:
        """Each row set's images on ``device`` when together they fit :func:`resident_budget`, else
        :class:`MappedImages` streaming from the cache."""
        per_image = int(np.prod(self.images.shape[1:]))
        need, budget = sum(len(p) for p in parts) * per_image, resident_budget(device)
        if need <= budget:
            return [self.images[p.sort().values][p.argsort().argsort()].to(device) for p in parts]
        self.say(f"{need / 2**30:.2f} GiB of images > {budget / 2**30:.2f} GiB ({RESIDENT_ENV} or half the free memory): "
            "batches stream from the memory-mapped cache")  # fmt: skip
        return [MappedImages(self.images, p, device) for p in parts]

    def split(self, name: str, device: str | torch.device = "cpu"):
        """``(images, labels)`` of split ``name`` ("train", "val" or "test") on ``device``: images uint8
        [N, C, S, S] (a tensor, or :class:`MappedImages` when too big), labels int64 [N]."""
        if name not in self.rows:
            raise ValueError(f"unknown split {name!r}; an image folder has {', '.join(SPLIT_NAMES)}")
        rows = self.rows[name]
        return self._place([rows], torch.device(device))[0], self.labels[rows].to(device)

    def training_splits(self, max_train_samples: int, device: str | torch.device):
        """``((train_x, train_y), (val_x, val_y))`` for training: the first ``max_train_samples``
        training images (0 = all) and the validation split, on ``device`` or streamed."""
        train = self.rows["train"][:max_train_samples] if max_train_samples else self.rows["train"]
        device = torch.device(device)
        train_x, val_x = self._place([train, self.rows["val"]], device)
        return (train_x, self.labels[train].to(device)), (val_x, self.labels[self.rows["val"]].to(device))


def open_folder_dataset(name: str, *, image_size: int = 0, val_fraction: float = 0.1, skip_bad: bool = False, root: str | Path = "data",
                        log: Callable[[str], None] | None = print, workers: int | None = None) -> FolderDataset:  # fmt: skip
    """Scan ``folder:PATH``, decode it into its cache unless a cache of the same fingerprint exists,
    and return it split, with the training split's statistics.

    ``image_size`` 0 takes the images' own size when they all share one square size. ``skip_bad``
    skips files that do not decode (listed in the log and in ``details["skipped"]``) instead of
    stopping at the first. Raises ImageFolderError naming the file or folder (see
    :func:`scan_folder`), for a file that does not decode without ``skip_bad``, and for images of
    several sizes with ``image_size`` 0.
    """
    say = log or (lambda _m: None)
    path = folder_path(name)
    scan = scan_folder(path)
    digest = fingerprint(scan, image_size)
    cache_dir = Path(root) / "cache" / f"folder-{digest[:20]}"
    cached, problem = _read_cache(cache_dir, digest)
    if cached is None:
        if cache_dir.exists():
            say(f"the cache {cache_dir} {problem}; rebuilding it")
        _build_cache(scan, image_size, digest, skip_bad, cache_dir, say, workers)
        cached, problem = _read_cache(cache_dir, digest)
        if cached is None:
            raise ImageFolderError(f"the cache {cache_dir} just written {problem}; delete it and retry")
    images, meta = cached
    if meta["skipped"] and not skip_bad:
        raise _bad_file_error(scan.root, [tuple(b) for b in meta["skipped"]])
    if scan.ignored:
        say(f"ignored {len(scan.ignored)} files that are not images by extension, or hidden (as ImageFolder does): "
            f"{', '.join(scan.ignored[:5])}{', ...' if len(scan.ignored) > 5 else ''}")  # fmt: skip
    if meta["skipped"]:
        say(f"skipped {len(meta['skipped'])} files that do not decode (--skip-bad-images): "
            + "; ".join(f"{rel} ({why})" for rel, why in meta["skipped"]))
    dataset = FolderDataset(images, meta, path=path, cache_dir=cache_dir, val_fraction=val_fraction, ignored=len(scan.ignored), log=log)
    info, splits = dataset.info, dataset.details["splits"]
    say(f"{name}: {len(meta['files']):,} images, {info.num_classes} classes, {'gray' if info.in_channels == 1 else 'RGB'} "
        f"{info.image_size}x{info.image_size}; train {splits['train']:,}, val {splits['val']:,}, test {splits['test']:,} ({cache_dir})")
    return dataset


# ----------------------------------------------------------------------------- a run's dataset, read back


def dataset_record(info: DatasetInfo, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """config.json's ``dataset_info`` block: name, classes, num_classes, in_channels (1 or 3),
    image_size (the side of the images the dataset provides), mean and std (per channel, of
    pixel/255), and for an image folder its ``folder`` details (path, fingerprint, cache, splits,
    resize rule, skipped files)."""
    block = {"name": info.name, "classes": list(info.classes), "num_classes": info.num_classes, "in_channels": info.in_channels,
             "image_size": info.image_size, "mean": list(info.mean), "std": list(info.std)}  # fmt: skip
    return {**block, "folder": details} if details is not None else block


def run_dataset_info(config: dict[str, Any]) -> DatasetInfo:
    """The DatasetInfo of a run, from its config.json: the ``dataset_info`` block, or for runs
    recorded before it, :data:`mnv3.data.DATASETS`. Export, evaluation, prediction and the notebooks
    all read it here. Raises ValueError for a malformed block or a folder run without one."""
    block = config.get("dataset_info")
    if block is None:
        if is_folder_dataset(config.get("dataset")):
            raise ValueError(f"config.json of the image-folder run {config.get('name')!r} has no dataset_info block; retrain it")
        return dataset_info(config["dataset"])
    try:
        classes = tuple(str(c) for c in block["classes"])
        return DatasetInfo(str(block["name"]), len(classes), int(block["in_channels"]), int(block["image_size"]),
                           tuple(float(m) for m in block["mean"]), tuple(float(s) for s in block["std"]), classes)  # fmt: skip
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"config.json's dataset_info block is malformed ({type(err).__name__}: {err})") from None


def load_run_split(config: dict[str, Any], split: str, *, root: str | Path | None = None, mirror: str | Path | None = None,
                   log: Callable[[str], None] | None = None):  # fmt: skip
    """``(images uint8 [N, C, H, W], labels int64 [N])`` of a run's ``split``, as training saw it.

    Built-in datasets come from :func:`mnv3.data.load_split`. An image folder comes from its cache
    under ``root`` (default: the run's data_root), found by the recorded fingerprint, so the folder
    itself is not needed; without the cache it is rebuilt from the folder when the folder still
    has the same files. Raises ImageFolderError when neither is there, or the folder changed.
    """
    root = Path(root or config.get("data_root") or "data")
    if not is_folder_dataset(config.get("dataset")):
        return load_split(config["dataset"], split, root=root, mirror=mirror)
    details = config["dataset_info"]["folder"]
    cache_dir = root / "cache" / details["cache"]
    cached, problem = _read_cache(cache_dir, details["fingerprint"])
    path = Path(details["path"])
    if cached is None:
        if not path.is_dir():
            raise ImageFolderError(f"{cache_dir}: the run's image cache {problem}, and its folder {path} is gone; restore either "
                                   "(or pass the data root that holds the cache)")
        scan = scan_folder(path)
        if fingerprint(scan, details["requested_image_size"]) != details["fingerprint"]:
            raise ImageFolderError(f"{path} changed since the run was trained (images added, removed or edited), and the run's cache "
                                   f"{cache_dir} {problem}; restore the folder as it was to evaluate this run")
        _build_cache(scan, details["requested_image_size"], details["fingerprint"], bool(details["skipped"]), cache_dir,
                     log or (lambda _m: None), None)  # fmt: skip
        cached, problem = _read_cache(cache_dir, details["fingerprint"])
    images, meta = cached
    dataset = FolderDataset(images, meta, path=path, cache_dir=cache_dir, val_fraction=details["val_fraction"], info=run_dataset_info(config))
    return dataset.split(split)
