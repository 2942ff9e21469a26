"""Datasets as in-memory uint8 tensors, decoded once and cached (augmentation: :mod:`mnv3.augment`).

Why this design: MNIST and CIFAR are small enough (47 MB and 150 MB as uint8) to sit whole in
memory, or on the GPU. Decoding them once into a tensor cache and then augmenting whole batches
with tensor ops is much faster than a DataLoader that opens and transforms one image at a time,
and it needs no worker processes.

The pieces:

* :data:`DATASETS` / :func:`dataset_info` describe each dataset (classes, channels, mean/std).
* :func:`load_split` returns ``(images uint8 [N, C, H, W], labels int64 [N])``. The first call
  decodes the dataset (from an offline mirror, or through torchvision, which may download it) and
  caches the tensors as ``<root>/cache/<name>-<split>.pt``; later calls only read that file, and
  check it: a damaged or invalid cache is rebuilt, with one line on stderr saying why.
* :func:`ensure_splits` decodes and checks every split before training starts, so a broken test
  file is reported before the run, not after it.
* :func:`train_val_split` and :func:`iterate_batches` produce index tensors into those arrays.
* :mod:`mnv3.augment` turns a uint8 batch into normalised float32, augmenting it when training.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import sys
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .files import first_line, os_error_line, save_torch_atomic

__all__ = [
    "DATASETS",
    "DATASET_NAMES",
    "DataUnavailableError",
    "DatasetInfo",
    "canonical_dataset_name",
    "dataset_info",
    "ensure_splits",
    "iterate_batches",
    "load_split",
    "make_synthetic",
    "resolve_mirror",
    "train_val_split",
]


@dataclass(frozen=True)
class DatasetInfo:
    """What the model and the input pipeline need to know about a dataset."""

    name: str  # "mnist", "fashion_mnist", "kmnist", "cifar10", "cifar100", "synthetic"
    num_classes: int
    in_channels: int  # 1 for the MNIST family, 3 for CIFAR
    image_size: int  # native side length: 28 or 32
    mean: tuple[float, ...]  # per channel, of pixel/255 over the training set
    std: tuple[float, ...]
    classes: tuple[str, ...]  # class names in label order (torchvision's order)


_CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip

# torchvision reads these from the dataset's meta file; they are the fine labels, alphabetical.
_CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle",
    "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)  # fmt: skip

DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            "mnist", 10, 1, 28, (0.1307,), (0.3081,),
            ("0 - zero", "1 - one", "2 - two", "3 - three", "4 - four",
             "5 - five", "6 - six", "7 - seven", "8 - eight", "9 - nine"),
        ),
        DatasetInfo(
            "fashion_mnist", 10, 1, 28, (0.2860,), (0.3530,),
            ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
             "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        ),
        DatasetInfo(
            "kmnist", 10, 1, 28, (0.1918,), (0.3483,),
            ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
        ),
        DatasetInfo(
            "cifar10", 10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
            _CIFAR10_CLASSES,
        ),
        DatasetInfo(
            "cifar100", 100, 3, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
            _CIFAR100_CLASSES,
        ),
        # Measured on load_split("synthetic", "train"); a unit test keeps them honest.
        DatasetInfo(
            "synthetic", 10, 1, 28, (0.1250,), (0.1661,),
            tuple(f"pattern {k}" for k in range(10)),
        ),
    )
}  # fmt: skip
# How reports and tables name each dataset.
DATASET_NAMES = {"mnist": "MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "fashion_mnist": "Fashion-MNIST", "kmnist": "KMNIST", "synthetic": "synthetic"}


# torchvision's class names, and the same names in any case, with or without '_' or '-', name the
# same datasets: --dataset FashionMNIST, fashionmnist, Fashion-MNIST and fashion_mnist are one.
def _alias_key(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


_ALIASES = {_alias_key(name): name for name in DATASETS}


def canonical_dataset_name(name: str) -> str:
    """The key of :data:`DATASETS` for ``name`` or one of its aliases (``"FashionMNIST"`` ->
    ``"fashion_mnist"``, ``"CIFAR10"`` -> ``"cifar10"``).

    ``folder:PATH`` (your own images, :mod:`mnv3.imagefolder`) is kept, its path normalised.
    Raises ValueError for an unknown name, listing the canonical names.
    """
    if isinstance(name, str) and name.startswith("folder:"):
        if not name[len("folder:"):].strip():
            raise ValueError("--dataset folder: needs the folder's path, e.g. folder:photos")
        return "folder:" + os.path.normpath(name[len("folder:"):])
    canonical = _ALIASES.get(_alias_key(name)) if isinstance(name, str) else None
    if canonical is None:
        valid = ", ".join(sorted(DATASETS))
        raise ValueError(f"unknown dataset {name!r}; valid names: {valid} "
                         "(torchvision's class names such as FashionMNIST or CIFAR10 also work), or folder:PATH for your own images")
    return canonical


def dataset_info(name: str) -> DatasetInfo:
    """Look up a dataset by name or alias (see :func:`canonical_dataset_name`).

    Raises ValueError for an unknown name, listing the valid ones, and for ``folder:PATH``, whose
    description comes from its images (:func:`mnv3.imagefolder.open_folder_dataset`) or from a run's
    record (:func:`mnv3.imagefolder.run_dataset_info`).
    """
    canonical = canonical_dataset_name(name)
    if canonical.startswith("folder:"):
        raise ValueError(f"{name}: an image folder is described by its images: use mnv3.imagefolder (open_folder_dataset, run_dataset_info)")
    return DATASETS[canonical]


class DataUnavailableError(RuntimeError):
    """The dataset is neither cached nor obtainable from the mirror or torchvision."""


# --------------------------------------------------------------------------------------------
# Loading and caching
# --------------------------------------------------------------------------------------------

# Bump when the cache's contents change meaning, so stale caches are rebuilt, not trusted.
_CACHE_FORMAT = 2  # 2: the CIFAR JPEG mirror is shuffled with a fixed seed

_SPLITS = ("train", "test")
_SYNTHETIC_SPLITS = {"train": (2048, 0), "test": (512, 1)}  # split -> (num_samples, seed)

# torchvision class name and the folder under <root> where it keeps the files.
_TORCHVISION = {
    "mnist": ("MNIST", "MNIST/raw"),
    "fashion_mnist": ("FashionMNIST", "FashionMNIST/raw"),
    "kmnist": ("KMNIST", "KMNIST/raw"),
    "cifar10": ("CIFAR10", "cifar-10-batches-py"),
    "cifar100": ("CIFAR100", "cifar-100-python"),
}

# Folder of gzipped IDX files inside a mirror, for the MNIST family.
_MIRROR_IDX_DIRS = {"mnist": "MNIST/raw", "fashion_mnist": "FashionMNIST/raw", "kmnist": "KMNIST/raw"}
_IDX_PREFIX = {"train": "train", "test": "t10k"}
_MIRROR_CIFAR10 = "cifar10-jpeg.tar.gz"

_MIRROR_LAYOUT = (
    "a mirror folder is laid out like the shared one: "
    "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz (optionally also FashionMNIST/raw/ "
    "and KMNIST/raw/ with the same file names) and cifar10-jpeg.tar.gz holding "
    "cifar10-jpeg/{train,test}/<class>/NNNN.jpg"
)


def resolve_mirror(mirror: str | Path | None) -> Path | None:
    """The offline mirror to use: the explicit argument, else $MNV3_DATA_MIRROR, else None."""
    if mirror is None or str(mirror) == "":
        mirror = os.environ.get("MNV3_DATA_MIRROR") or None
    return None if mirror is None else Path(mirror).expanduser()


def load_split(
    name: str,
    split: str,
    *,
    root: str | Path = "data",
    mirror: str | Path | None = None,
    download: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return one split as ``(images uint8 [N, C, H, W] contiguous, labels int64 [N])``.

    Sources, in order: the cache ``<root>/cache/<name>-<split>.pt``; else the mirror (argument or
    $MNV3_DATA_MIRROR) when one is set; else torchvision under ``<root>`` (downloading if
    ``download``). What was decoded is checked (dtype, shape, label range, count) and cached, so
    image files are read only once. A cache that cannot be read or fails the same checks is
    rebuilt from the source, with one line on stderr saying why. The cache also records its
    ``source``, because the CIFAR-10 mirror holds JPEG re-encodings and results on it should be
    labelled "CIFAR-10 (JPEG mirror)".

    ``name`` may be an alias (see :func:`canonical_dataset_name`). Raises ValueError for an
    unknown name or split, and DataUnavailableError, naming the file and the fix, when the
    source is missing, truncated or corrupt.
    """
    info = dataset_info(name)
    if split not in _SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(_SPLITS)}")
    if info.name == "synthetic":  # cheap to regenerate, so never cached
        num_samples, seed = _SYNTHETIC_SPLITS[split]
        return make_synthetic(num_samples, num_classes=info.num_classes,
                              channels=info.in_channels, size=info.image_size, seed=seed)

    cache = Path(root) / "cache" / f"{info.name}-{split}.pt"
    if cache.exists():
        cached, problem = _read_cache(cache, info)
        if cached is not None:
            return cached
        print(f"mnv3.data: the cache {cache} {problem}; rebuilding it", file=sys.stderr, flush=True)

    mirror_dir = resolve_mirror(mirror)
    if mirror_dir is not None:
        images, labels = _load_from_mirror(info, split, mirror_dir)
        source = f"mirror {mirror_dir}"
    else:
        images, labels = _load_from_torchvision(info, split, Path(root), download, cache)
        source = "torchvision"
    problem = _split_problem(info, images, labels)
    if problem is not None:
        raise DataUnavailableError(f"{info.name} {split} from the {source}: {problem}; "
                                   "the source files are damaged: replace them with fresh copies")
    save_torch_atomic(
        {"format": _CACHE_FORMAT, "images": images, "labels": labels,
         "classes": list(info.classes), "source": source},
        cache,
    )  # fmt: skip
    return images, labels


def ensure_splits(
    name: str, *, root: str | Path = "data", mirror: str | Path | None = None, download: bool = True
) -> None:
    """Decode (or read from the cache) and check every split of a dataset; keep none in memory.

    Training calls this before its first step, so a damaged test file is reported before the
    run rather than after it. Raises as :func:`load_split` does.
    """
    for split in _SPLITS:
        load_split(name, split, root=root, mirror=mirror, download=download)


def _read_cache(path: Path, info: DatasetInfo) -> tuple[tuple[torch.Tensor, torch.Tensor] | None, str]:
    """``((images, labels), "")`` for a valid cache file, else ``(None, what is wrong with it)``."""
    try:
        entry = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - whatever a damaged file raises, the cure is a rebuild
        reason = first_line(err, type(err).__name__)
        return None, f"cannot be read ({reason[:200]})"
    if not isinstance(entry, dict):
        return None, f"holds a {type(entry).__name__}, not the dict mnv3.data writes"
    if entry.get("format") != _CACHE_FORMAT:
        return None, f"has format {entry.get('format')!r}, this version writes {_CACHE_FORMAT}"
    if tuple(entry.get("classes") or ()) != info.classes:
        return None, f"lists other classes than {info.name}'s"
    images, labels = entry.get("images"), entry.get("labels")
    if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
        return None, "lacks the 'images' or 'labels' tensor"
    problem = _split_problem(info, images, labels)
    if problem is not None:
        return None, f"is invalid: {problem}"
    return (images.contiguous(), labels), ""


def _split_problem(info: DatasetInfo, images: torch.Tensor, labels: torch.Tensor) -> str | None:
    """What makes ``(images, labels)`` unfit for ``info``'s dataset, or None when they are fine.

    Checked on every decode and every cache load, so a malformed source or a damaged cache never
    reaches training (an out-of-range label would surface there as an IndexError).
    """
    expected = (info.in_channels, info.image_size, info.image_size)
    if images.dtype != torch.uint8 or images.dim() != 4 or tuple(images.shape[1:]) != expected:
        return (f"images are {images.dtype} {tuple(images.shape)}, "
                f"expected uint8 [N, {', '.join(map(str, expected))}]")
    if images.shape[0] == 0:
        return "it holds no images"
    if labels.dtype != torch.int64 or labels.shape != (images.shape[0],):
        return f"{labels.dtype} labels of shape {tuple(labels.shape)} for {images.shape[0]} images"
    low, high = int(labels.min()), int(labels.max())
    if not 0 <= low <= high < info.num_classes:
        return f"labels run from {low} to {high}, outside 0..{info.num_classes - 1}"
    return None


def _missing_in_mirror(mirror: Path, what: str) -> DataUnavailableError:
    return DataUnavailableError(
        f"the data mirror {mirror} has no {what}; {_MIRROR_LAYOUT}. Fix the mirror, or drop "
        "--data-mirror / unset MNV3_DATA_MIRROR so that torchvision downloads into the data root."
    )


def _load_from_mirror(info: DatasetInfo, split: str, mirror: Path) -> tuple[torch.Tensor, torch.Tensor]:
    if not mirror.is_dir():
        raise DataUnavailableError(f"the data mirror {mirror} (from --data-mirror or "
                                   f"MNV3_DATA_MIRROR) is not a folder; {_MIRROR_LAYOUT}")
    if info.name in _MIRROR_IDX_DIRS:
        folder = mirror / _MIRROR_IDX_DIRS[info.name]
        prefix = _IDX_PREFIX[split]
        paths = [folder / f"{prefix}-images-idx3-ubyte.gz", folder / f"{prefix}-labels-idx1-ubyte.gz"]
        for path in paths:
            if not path.is_file():
                raise _missing_in_mirror(mirror, f"{path.relative_to(mirror)} (looked for {path})")
        images = torch.from_numpy(_read_idx_gz(paths[0], ndim=3)).unsqueeze(1)
        labels = torch.from_numpy(_read_idx_gz(paths[1], ndim=1)).long()
        return images.contiguous(), labels
    if info.name == "cifar10":
        path = mirror / _MIRROR_CIFAR10
        if not path.is_file():
            raise _missing_in_mirror(mirror, f"{_MIRROR_CIFAR10} (looked for {path})")
        return _read_jpeg_tar(path, split, info.classes)
    raise DataUnavailableError(
        f"the data mirror format has no {info.name}; {_MIRROR_LAYOUT}. Drop --data-mirror / unset "
        "MNV3_DATA_MIRROR so that torchvision downloads it into the data root."
    )


# The largest MNIST-family file, train-images, is 47,040,016 bytes after gunzip; a file that
# inflates to far more is no IDX file of these datasets (or a decompression bomb).
_MAX_IDX_BYTES = 64 * 2**20

# A 32x32 JPEG of the mirror is about 1 KB; a member far larger than that is no such image, and
# reading it whole would cost its full size in memory.
_MAX_JPEG_BYTES = 64 * 2**10
_JPEG_TOP = "cifar10-jpeg"


def _replace_hint(path: Path) -> str:
    return f"replace {path.name} in the mirror with an intact copy"


def _read_idx_gz(path: Path, ndim: int) -> np.ndarray:
    """Parse a gzipped IDX file of unsigned bytes (the MNIST format) into an owned uint8 array.

    Header: two zero bytes, type code 0x08 (ubyte), the number of dimensions, then one
    big-endian uint32 per dimension. Raises DataUnavailableError, naming the file, when it is
    truncated, not gzip, larger than ``_MAX_IDX_BYTES`` once inflated, or not such an IDX file.
    """
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read(_MAX_IDX_BYTES + 1)
    except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError; truncation EOFError
        raise DataUnavailableError(f"{path}: truncated or corrupt gzip ({err}); {_replace_hint(path)}") from None
    if len(raw) > _MAX_IDX_BYTES:
        raise DataUnavailableError(f"{path}: inflates to over {_MAX_IDX_BYTES:,} bytes, more than any "
                                   f"MNIST-family file; {_replace_hint(path)}")
    if len(raw) < 4 + 4 * ndim or raw[:3] != b"\x00\x00\x08" or raw[3] != ndim:
        raise DataUnavailableError(f"{path}: not an IDX file of {ndim}-d unsigned bytes; {_replace_hint(path)}")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    offset = 4 + 4 * ndim
    if len(raw) - offset != math.prod(shape):
        raise DataUnavailableError(f"{path}: the header says {shape} ({math.prod(shape)} bytes), but "
                                   f"{len(raw) - offset} bytes follow it; {_replace_hint(path)}")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(shape).copy()


def _read_jpeg_tar(path: Path, split: str, expected_classes: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode ``cifar10-jpeg/<split>/<class>/<file>.jpg`` from a .tar.gz into uint8 NCHW and labels.

    The tar is streamed (never extracted to disk). Labels are indices into the sorted class
    folder names, which must equal torchvision's class list; within a class, files are taken in
    name order so the result does not depend on the order of the tar's members. The mirror lost
    the official order, so the class-sorted list is then shuffled with a fixed seed: "the first N
    images" (a training subset, a parity sample, a figure) should hold every class, as in the
    official files.

    Raises DataUnavailableError naming the tar (and the member, where one is at fault) for a
    truncated or corrupt archive, a member outside the documented layout or larger than
    ``_MAX_JPEG_BYTES``, and an image that does not decode to 32x32.
    """
    encoded = _read_tar_members(path, split)
    classes = tuple(sorted({cls for cls, _ in encoded}))
    if classes != expected_classes:
        raise DataUnavailableError(f"{path}: the class folders of {split}/ are {list(classes)}, "
                                   f"expected torchvision's {list(expected_classes)}")
    keys = sorted(encoded)
    keys = [keys[i] for i in torch.randperm(len(keys), generator=torch.Generator().manual_seed(0)).tolist()]
    images = np.empty((len(keys), 32, 32, 3), dtype=np.uint8)
    for i, key in enumerate(keys):
        images[i] = _decode_jpeg(encoded[key], path, f"{_JPEG_TOP}/{split}/{'/'.join(key)}")
    class_index = {cls: i for i, cls in enumerate(classes)}
    labels = torch.tensor([class_index[cls] for cls, _ in keys], dtype=torch.int64)
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels


def _read_tar_members(path: Path, split: str) -> dict[tuple[str, str], bytes]:
    """``{(class, file name): JPEG bytes}`` of one split; every member is checked against the layout."""
    encoded: dict[tuple[str, str], bytes] = {}
    try:
        with tarfile.open(path, "r|gz") as tar:
            for member in tar:
                parts = _checked_member(path, member)
                if len(parts) == 4 and parts[1] == split:
                    encoded[(parts[2], parts[3])] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise DataUnavailableError(f"{path}: truncated or corrupt tar.gz ({err}); {_replace_hint(path)}") from None
    return encoded


def _checked_member(path: Path, member: tarfile.TarInfo) -> list[str]:
    """The member's path parts, when it fits ``cifar10-jpeg/{train,test}/<class>/<name>.jpg``
    (or is one of its folders); else DataUnavailableError naming it."""
    parts = member.name.removeprefix("./").rstrip("/").split("/")
    fits = parts[0] == _JPEG_TOP and "" not in parts and ".." not in parts and (len(parts) < 2 or parts[1] in _SPLITS)
    if member.isdir() and fits and len(parts) <= 3:
        return parts
    if not (member.isfile() and fits and len(parts) == 4 and parts[3].lower().endswith((".jpg", ".jpeg"))):
        raise DataUnavailableError(f"{path}: member {member.name!r} does not fit the layout "
                                   f"{_JPEG_TOP}/{{train,test}}/<class>/<name>.jpg; rebuild the archive with only those files")
    if member.size > _MAX_JPEG_BYTES:
        raise DataUnavailableError(f"{path}: member {member.name!r} is {member.size:,} bytes, over the "
                                   f"{_MAX_JPEG_BYTES // 2**10} KiB limit for a 32x32 JPEG; rebuild the archive")
    return parts


def _decode_jpeg(data: bytes, path: Path, member: str) -> np.ndarray:
    """One 32x32 JPEG as uint8 ``[32, 32, 3]`` RGB; DataUnavailableError naming the member otherwise."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.size != (32, 32):  # checked before the pixels are decoded
                raise DataUnavailableError(f"{path}: member {member!r} is {img.size[0]}x{img.size[1]}, not 32x32; "
                                           "replace it or rebuild the archive")
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as err:
        raise DataUnavailableError(f"{path}: member {member!r} is not a readable JPEG ({err}); "
                                   "replace it or rebuild the archive") from None


def _load_from_torchvision(
    info: DatasetInfo, split: str, root: Path, download: bool, cache: Path
) -> tuple[torch.Tensor, torch.Tensor]:
    import torchvision.datasets

    class_name, folder = _TORCHVISION[info.name]
    try:
        dataset = getattr(torchvision.datasets, class_name)(str(root), train=split == "train",
                                                            download=download)
    except (RuntimeError, OSError) as exc:  # offline: URLError is an OSError
        attempt = "could not download them" if download else "download=False"
        raise DataUnavailableError(
            f"{info.name} {split} split is not available. Looked for the cache {cache} and for "
            f"torchvision's files in {root / folder} ({attempt}: {exc}). Fix it either way: "
            f"(1) get online and rerun, so torchvision downloads {info.name} into {root}/; or "
            "(2) pass --data-mirror DIR or set MNV3_DATA_MIRROR=DIR, where DIR is an offline "
            f"mirror; {_MIRROR_LAYOUT}."
        ) from exc
    if tuple(dataset.classes) != info.classes:
        raise RuntimeError(f"torchvision's {class_name} classes {dataset.classes} differ from "
                           f"DATASETS[{info.name!r}].classes")
    data = torch.as_tensor(dataset.data)
    # MNIST family: [N, 28, 28] tensor; CIFAR: [N, 32, 32, 3] numpy array (NHWC).
    images = data.unsqueeze(1) if data.dim() == 3 else data.permute(0, 3, 1, 2)
    return images.contiguous(), torch.as_tensor(dataset.targets, dtype=torch.int64)


# --------------------------------------------------------------------------------------------
# Synthetic data for tests
# --------------------------------------------------------------------------------------------


def make_synthetic(
    num_samples: int, *, num_classes: int = 10, channels: int = 1, size: int = 28, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """A deterministic, learnable stand-in dataset: ``(images uint8 [N, C, size, size], labels)``.

    Class k is a Gaussian blob at angle 2*pi*k/num_classes on a circle around the centre, with a
    per-sample jitter of up to 2 pixels, a random brightness and pixel noise, so a small network
    learns it in a few steps but not from a single pixel. Labels are balanced, in random order.
    """
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_samples) % num_classes
    labels = labels[torch.randperm(num_samples, generator=g)]

    angle = 2 * math.pi * labels.double() / num_classes
    radius, sigma = size / 4, size / 8
    jitter = torch.rand(num_samples, 2, generator=g, dtype=torch.float64) * 4 - 2
    cy = (size - 1) / 2 + radius * torch.sin(angle) + jitter[:, 0]
    cx = (size - 1) / 2 + radius * torch.cos(angle) + jitter[:, 1]
    grid = torch.arange(size, dtype=torch.float64)
    dist2 = (grid.view(1, -1, 1) - cy.view(-1, 1, 1)) ** 2 + (grid.view(1, 1, -1) - cx.view(-1, 1, 1)) ** 2
    brightness = 150 + 100 * torch.rand(num_samples, 1, 1, generator=g, dtype=torch.float64)
    blob = brightness * torch.exp(-dist2 / (2 * sigma**2))  # [N, size, size]

    noise = 20 * torch.randn(num_samples, channels, size, size, generator=g, dtype=torch.float64)
    images = (blob.unsqueeze(1) + 10 + noise).round().clamp(0, 255).to(torch.uint8)
    return images.contiguous(), labels.long()


# --------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------


def train_val_split(num_samples: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``range(num_samples)`` into sorted ``(train_indices, val_indices)`` LongTensors.

    A fixed-seed permutation on a CPU generator, so the same seed gives the same split on every
    machine and device; ``round(num_samples * val_fraction)`` indices go to validation.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    perm = torch.randperm(num_samples, generator=torch.Generator().manual_seed(seed))
    num_val = round(num_samples * val_fraction)
    return perm[num_val:].sort().values, perm[:num_val].sort().values


def iterate_batches(
    num_samples: int,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[torch.Tensor]:
    """One epoch of index batches (CPU LongTensors) into a dataset of ``num_samples``.

    The order is a permutation drawn from ``generator`` (a CPU generator; seed it with the
    epoch for a new order each epoch) when ``shuffle``, else ``0..num_samples-1``. Under DDP
    each rank takes ``order[rank::world_size]``; every rank must pass an identically seeded
    generator so they slice the same permutation. The order is first truncated
    (``drop_last``) or wrapped around to a multiple of ``world_size``, so all ranks get the same
    number of batches: a rank with one batch more would wait forever in its gradient all-reduce.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
    order = torch.randperm(num_samples, generator=generator) if shuffle else torch.arange(num_samples)
    if drop_last:
        order = order[: num_samples // world_size * world_size]
    elif num_samples % world_size:
        total = math.ceil(num_samples / world_size) * world_size
        order = order.repeat(math.ceil(total / num_samples))[:total]
    shard = order[rank::world_size]
    batches = list(shard.split(batch_size))
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    return iter(batches)


# --------------------------------------------------------------------------------------------
# Command line: decode and cache datasets ahead of training (`make data`)
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``python -m mnv3.data mnist cifar10``: fill ``<root>/cache/`` so training only reads it.

    A NAME caches both splits; NAME-SPLIT (e.g. ``mnist-test``) caches one.
    """
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m mnv3.data",
        description="Decode datasets once into <root>/cache/<name>-<split>.pt (from the mirror or torchvision).",
    )
    parser.add_argument("datasets", nargs="+", metavar="NAME[-SPLIT]",
                        help=f"datasets ({', '.join(sorted(DATASETS))}, or torchvision's names such as "
                             "FashionMNIST), optionally with -train or -test, e.g. mnist-test")
    parser.add_argument("--root", default="data", help="data root (default data)")
    parser.add_argument("--data-mirror", default=None, metavar="DIR", help="offline mirror (default: $MNV3_DATA_MIRROR)")
    args = parser.parse_args(argv)
    try:
        for item in args.datasets:
            name, _, split = item.partition("-") if item.rsplit("-", 1)[-1] in _SPLITS else (item, "", "")
            name = canonical_dataset_name(name)
            for s in [split] if split else list(_SPLITS):
                images, labels = load_split(name, s, root=args.root, mirror=args.data_mirror)
                print(f"{name} {s}: {tuple(images.shape)} uint8, {len(labels)} labels"
                      + ("" if name == "synthetic" else f" -> {Path(args.root) / 'cache' / f'{name}-{s}.pt'}"))
    except (DataUnavailableError, ValueError) as err:
        print(f"python -m mnv3.data: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"python -m mnv3.data: error: {os_error_line(err)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


