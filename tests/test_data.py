"""Tests for mnv3.data.

The unit tests need no dataset: they use the synthetic data and tiny mirrors written into
tmp_path. Tests marked ``mirror`` read the real offline mirror (env MNV3_DATA_MIRROR or
<repo>/../shared/datasets) and are skipped where it is absent.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mnv3 import augment, data
from mnv3.augment import prepare_batch
from mnv3.data import (
    DATASETS,
    DataUnavailableError,
    canonical_dataset_name,
    dataset_info,
    ensure_splits,
    iterate_batches,
    load_split,
    make_synthetic,
    resolve_mirror,
    train_val_split,
)

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")  # fmt: skip


@pytest.fixture(autouse=True)
def _no_env_mirror(monkeypatch):
    """A mirror set in the developer's environment must not leak into the unit tests."""
    monkeypatch.delenv("MNV3_DATA_MIRROR", raising=False)


# ---------------------------------------------------------------------------------- registry


def test_dataset_info_known_names():
    assert dataset_info("mnist").mean == (0.1307,) and dataset_info("mnist").std == (0.3081,)
    cifar = dataset_info("cifar10")
    assert (cifar.in_channels, cifar.image_size, cifar.num_classes) == (3, 32, 10)
    assert cifar.mean == (0.4914, 0.4822, 0.4465) and cifar.std == (0.2470, 0.2435, 0.2616)
    assert cifar.classes == CIFAR10_CLASSES
    for name, info in DATASETS.items():
        assert info.name == name
        assert len(info.classes) == info.num_classes
        assert len(info.mean) == len(info.std) == info.in_channels
    assert list(DATASETS["cifar100"].classes) == sorted(DATASETS["cifar100"].classes)


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError) as err:
        dataset_info("imagenet")
    for name in ("mnist", "fashion_mnist", "kmnist", "cifar10", "cifar100", "synthetic"):
        assert name in str(err.value)
    with pytest.raises(ValueError, match="cifar10"):
        load_split("svhn", "train")


@pytest.mark.parametrize(
    "alias,name",
    [("MNIST", "mnist"), ("FashionMNIST", "fashion_mnist"), ("fashionmnist", "fashion_mnist"),
     ("Fashion-MNIST", "fashion_mnist"), ("KMNIST", "kmnist"), ("CIFAR10", "cifar10"),
     ("Cifar-10", "cifar10"), ("CIFAR100", "cifar100"), ("Synthetic", "synthetic"), ("mnist", "mnist")],
)  # fmt: skip
def test_torchvision_names_and_any_case_are_aliases(alias, name):
    from mnv3.experiments import get_experiment

    assert canonical_dataset_name(alias) == name
    assert dataset_info(alias) is DATASETS[name]
    # Stored under the canonical name, so run folders and config.json never carry the alias.
    assert get_experiment("mnist_small", dataset=alias).dataset == name


@pytest.mark.parametrize("bad", ["imagenet", "mnist10", "cifar", "", 10])
def test_unknown_dataset_or_alias_lists_the_canonical_names(bad):
    from mnv3.experiments import get_experiment

    for call in (lambda: canonical_dataset_name(bad), lambda: get_experiment("mnist_small", dataset=bad)):
        with pytest.raises(ValueError) as err:
            call()
        assert "valid names: cifar10, cifar100, fashion_mnist, kmnist, mnist, synthetic" in str(err.value)


def test_alias_loads_and_caches_under_the_canonical_name(tmp_path):
    mirror = tmp_path / "mirror"
    _write_idx_mirror(mirror / "FashionMNIST" / "raw", "t10k", np.zeros((3, 28, 28), np.uint8), [1, 2, 3])
    images, labels = load_split("FashionMNIST", "test", root=tmp_path / "root", mirror=mirror)
    assert labels.tolist() == [1, 2, 3]
    assert [p.name for p in (tmp_path / "root" / "cache").iterdir()] == ["fashion_mnist-test.pt"]
    x, y = load_split("SYNTHETIC", "test")
    assert torch.equal(y, load_split("synthetic", "test")[1])


def test_unknown_split():
    with pytest.raises(ValueError, match="train, test"):
        load_split("synthetic", "val")


# --------------------------------------------------------------------------------- synthetic


def test_synthetic_shapes_and_determinism():
    x, y = make_synthetic(100, num_classes=5, channels=3, size=32, seed=7)
    assert x.shape == (100, 3, 32, 32) and x.dtype == torch.uint8 and x.is_contiguous()
    assert y.shape == (100,) and y.dtype == torch.int64
    assert y.bincount().tolist() == [20] * 5
    x2, y2 = make_synthetic(100, num_classes=5, channels=3, size=32, seed=7)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    x3, _ = make_synthetic(100, num_classes=5, channels=3, size=32, seed=8)
    assert not torch.equal(x, x3)


def test_synthetic_splits_stats_and_learnable():
    info = dataset_info("synthetic")
    x_train, y_train = load_split("synthetic", "train")
    x_test, y_test = load_split("synthetic", "test")
    assert x_train.shape == (2048, 1, 28, 28) and x_test.shape == (512, 1, 28, 28)
    assert not torch.equal(x_train[:512], x_test)
    pixels = x_train.double() / 255
    assert pixels.mean().item() == pytest.approx(info.mean[0], abs=0.005)
    assert pixels.std().item() == pytest.approx(info.std[0], abs=0.005)
    # Learnable: even a nearest-class-mean classifier gets most of the test split right.
    centroids = torch.stack([x_train[y_train == k].float().mean(0) for k in range(10)]).flatten(1)
    pred = torch.cdist(x_test.float().flatten(1), centroids).argmin(1)
    assert (pred == y_test).float().mean().item() > 0.9


# ------------------------------------------------------------------------- train/val split


def test_train_val_split():
    train, val = train_val_split(1000, 0.1, seed=0)
    assert train.dtype == val.dtype == torch.int64
    assert len(val) == 100 and len(train) == 900
    assert torch.equal(torch.cat([train, val]).sort().values, torch.arange(1000))
    train2, val2 = train_val_split(1000, 0.1, seed=0)
    assert torch.equal(train, train2) and torch.equal(val, val2)
    _, val3 = train_val_split(1000, 0.1, seed=1)
    assert not torch.equal(val, val3)
    assert len(train_val_split(1001, 0.25, seed=0)[1]) == round(1001 * 0.25)
    train0, val0 = train_val_split(50, 0.0, seed=0)
    assert len(val0) == 0 and torch.equal(train0.sort().values, torch.arange(50))
    with pytest.raises(ValueError):
        train_val_split(10, 1.0, seed=0)


# ----------------------------------------------------------------------------- prepare_batch


def test_prepare_batch_normalises_constant_image():
    info = dataset_info("cifar10")
    values = torch.tensor([0, 37, 255], dtype=torch.uint8)
    images = values.view(1, 3, 1, 1).expand(2, 3, 32, 32).contiguous()
    out = prepare_batch(images, info, train=False)
    assert out.shape == (2, 3, 32, 32) and out.dtype == torch.float32 and out.is_contiguous()
    for c, v in enumerate(values.tolist()):
        expected = (v / 255 - info.mean[c]) / info.std[c]
        assert torch.allclose(out[:, c], torch.full_like(out[:, c], expected), atol=1e-5)


def test_prepare_batch_cifar_crop_matches_per_sample_reference():
    info = dataset_info("cifar10")
    images = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    out = prepare_batch(images, info, train=True, generator=torch.Generator().manual_seed(123))
    assert out.shape == images.shape and out.dtype == torch.float32 and out.is_contiguous()

    # The same draws, then each sample cropped from its padded source with plain slicing.
    oy, ox, flips = augment._draw_crops(32, 4, True, images.device, torch.Generator().manual_seed(123))
    assert 0 <= oy.min() and oy.max() <= 8 and 0 <= ox.min() and ox.max() <= 8
    assert len(set(zip(oy.tolist(), ox.tolist()))) > 10 and 0 < flips.sum() < 32
    padded = F.pad(images, (4, 4, 4, 4))
    mean = torch.tensor(info.mean).view(3, 1, 1)
    std = torch.tensor(info.std).view(3, 1, 1)
    for i in range(32):
        crop = padded[i, :, oy[i] : oy[i] + 32, ox[i] : ox[i] + 32]
        if flips[i]:
            crop = crop.flip(-1)
        assert torch.allclose(out[i], (crop.float() / 255 - mean) / std, atol=1e-6), i

    again = prepare_batch(images, info, train=True, generator=torch.Generator().manual_seed(123))
    other = prepare_batch(images, info, train=True, generator=torch.Generator().manual_seed(124))
    assert torch.equal(out, again) and not torch.equal(out, other)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "kmnist", "synthetic"])
def test_prepare_batch_mnist_family_shifts_but_never_flips(name):
    info = dataset_info(name)
    # Asymmetric content inside a 2-pixel zero border, so a 2-pixel shift loses nothing.
    image = torch.zeros(1, 1, 28, 28, dtype=torch.uint8)
    image[..., 2:26, 2:26] = torch.randint(1, 256, (24, 24), generator=torch.Generator().manual_seed(0))
    batch = image.expand(200, 1, 28, 28).contiguous()
    out = prepare_batch(batch, info, train=True, generator=torch.Generator().manual_seed(0))
    restored = (out * info.std[0] + info.mean[0]) * 255
    restored = restored.round().to(torch.uint8)

    def shifts(img):  # all 25 shifts of up to 2 pixels each way, zero fill
        padded = F.pad(img[0], (2, 2, 2, 2))
        return torch.stack([padded[:, dy : dy + 28, dx : dx + 28] for dy in range(5) for dx in range(5)])

    plain, mirrored = shifts(image), shifts(image.flip(-1))
    seen = set()
    for sample in restored:
        match = (plain == sample).flatten(1).all(1)
        assert match.sum() == 1, "not a plain shift of the input"
        assert not (mirrored == sample).flatten(1).all(1).any(), "mirrored"
        seen.add(int(match.nonzero()))
    assert len(seen) > 15  # the shifts are random, and cover most of the 25


def test_prepare_batch_upsamples():
    info = dataset_info("mnist")
    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    out = prepare_batch(images, info, train=False, image_size=64)
    assert out.shape == (4, 1, 64, 64) and out.dtype == torch.float32 and out.is_contiguous()
    native = prepare_batch(images, info, train=False)
    expected = F.interpolate(native, size=(64, 64), mode="bilinear", align_corners=False)
    assert torch.allclose(out, expected, atol=1e-6)
    assert torch.equal(prepare_batch(images, info, train=False, image_size=28), native)
    assert prepare_batch(images, info, train=True, image_size=224).shape == (4, 1, 224, 224)


def test_prepare_batch_rejects_wrong_input():
    with pytest.raises(ValueError, match="uint8"):
        prepare_batch(torch.zeros(2, 1, 28, 28), dataset_info("mnist"), train=False)
    with pytest.raises(ValueError, match="3"):
        prepare_batch(torch.zeros(2, 1, 32, 32, dtype=torch.uint8), dataset_info("cifar10"), train=False)


# --------------------------------------------------------------------------- iterate_batches


def test_iterate_batches_covers_each_index_once():
    batches = list(iterate_batches(103, 10, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert [len(b) for b in batches] == [10] * 10 + [3]
    assert all(b.dtype == torch.int64 for b in batches)
    everything = torch.cat(batches)
    assert torch.equal(everything.sort().values, torch.arange(103))
    assert not torch.equal(everything, torch.arange(103))
    again = torch.cat(list(iterate_batches(103, 10, shuffle=True, generator=torch.Generator().manual_seed(0))))
    assert torch.equal(everything, again)
    assert torch.equal(torch.cat(list(iterate_batches(103, 10, shuffle=False))), torch.arange(103))
    dropped = list(iterate_batches(103, 10, shuffle=True, drop_last=True))
    assert [len(b) for b in dropped] == [10] * 10


@pytest.mark.parametrize("num_samples", [100, 103])
def test_iterate_batches_ddp_shards(num_samples):
    world = 4

    def shards(drop_last):
        return [
            torch.cat(list(iterate_batches(num_samples, 8, shuffle=True, drop_last=drop_last, rank=r,
                                           world_size=world, generator=torch.Generator().manual_seed(5))))
            for r in range(world)
        ]

    counts = lambda drop_last: [  # noqa: E731
        len(list(iterate_batches(num_samples, 8, shuffle=True, drop_last=drop_last, rank=r, world_size=world)))
        for r in range(world)
    ]
    padded = shards(drop_last=False)
    assert len({len(s) for s in padded}) == 1 and len(set(counts(False))) == 1
    assert set(torch.cat(padded).tolist()) == set(range(num_samples))
    if num_samples % world == 0:
        assert len(torch.cat(padded).unique()) == num_samples  # disjoint
    dropped = shards(drop_last=True)
    assert len({len(s) for s in dropped}) == 1 and len(set(counts(True))) == 1
    flat = torch.cat(dropped)  # each rank's shard of 25, less its partial batch: 3 full batches
    assert len(flat.unique()) == len(flat) == world * (num_samples // world // 8 * 8)
    with pytest.raises(ValueError):
        iterate_batches(10, 2, shuffle=False, rank=4, world_size=4)


# ------------------------------------------------------------------ sources and their errors


def test_resolve_mirror(monkeypatch, tmp_path):
    assert resolve_mirror(None) is None
    monkeypatch.setenv("MNV3_DATA_MIRROR", str(tmp_path))
    assert resolve_mirror(None) == tmp_path
    assert resolve_mirror("/elsewhere") == Path("/elsewhere")


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_offline_without_mirror_explains_the_fixes(tmp_path, name):
    with pytest.raises(DataUnavailableError) as err:
        load_split(name, "train", root=tmp_path, download=False)
    message = str(err.value)
    assert "MNV3_DATA_MIRROR" in message and "--data-mirror" in message
    assert str(tmp_path) in message and "online" in message


def test_failed_download_is_a_data_unavailable_error(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(DataUnavailableError) as err:
        load_split("mnist", "test", root=tmp_path, download=True)
    assert "network is unreachable" in str(err.value) and "MNV3_DATA_MIRROR" in str(err.value)


def test_mirror_missing_file_is_named(tmp_path):
    raw = tmp_path / "mirror" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    _write_idx_gz(raw / "train-images-idx3-ubyte.gz", np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DataUnavailableError, match="train-labels-idx1-ubyte.gz"):
        load_split("mnist", "train", root=tmp_path, mirror=tmp_path / "mirror")
    with pytest.raises(DataUnavailableError, match="cifar10-jpeg.tar.gz"):
        load_split("cifar10", "train", root=tmp_path, mirror=tmp_path / "mirror")
    with pytest.raises(DataUnavailableError, match="cifar100"):
        load_split("cifar100", "train", root=tmp_path, mirror=tmp_path / "mirror")
    with pytest.raises(DataUnavailableError, match="not a folder"):
        load_split("mnist", "train", root=tmp_path, mirror=tmp_path / "absent")


def test_idx_mirror_roundtrip_and_cache(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    raw = mirror / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    _write_idx_gz(raw / "t10k-images-idx3-ubyte.gz", pixels)
    _write_idx_gz(raw / "t10k-labels-idx1-ubyte.gz", np.array([3, 1, 4, 1, 5], np.uint8))
    monkeypatch.setenv("MNV3_DATA_MIRROR", str(mirror))  # the environment variable is honoured

    images, labels = load_split("fashion_mnist", "test", root=tmp_path / "root")
    assert images.shape == (5, 1, 28, 28) and images.dtype == torch.uint8
    assert torch.equal(images[:, 0], torch.from_numpy(pixels))
    assert labels.dtype == torch.int64 and labels.tolist() == [3, 1, 4, 1, 5]

    cache = tmp_path / "root" / "cache" / "fashion_mnist-test.pt"
    assert cache.is_file() and not list(cache.parent.glob("*.tmp"))
    assert torch.load(cache, weights_only=True)["classes"] == list(DATASETS["fashion_mnist"].classes)
    # Once cached, the source is never read again: a mirror that no longer exists is fine.
    again = load_split("fashion_mnist", "test", root=tmp_path / "root", mirror=tmp_path / "gone")
    assert torch.equal(again[0], images) and torch.equal(again[1], labels)


def test_jpeg_tar_mirror_order_and_labels(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    colours = {}
    with tarfile.open(mirror / "cifar10-jpeg.tar.gz", "w:gz") as tar:
        # Members are added in reverse order; the loader must sort classes and file names.
        for k, cls in reversed(list(enumerate(CIFAR10_CLASSES))):
            for j in (1, 0):
                colour = (20 * k + 5, 100 + 40 * j, 250 - 20 * k)
                colours[(k, j)] = colour
                _add_jpeg(tar, f"cifar10-jpeg/test/{cls}/{j:04d}.jpg", colour)
        _add_jpeg(tar, "cifar10-jpeg/train/cat/0000.jpg", (0, 0, 0))

    images, labels = load_split("cifar10", "test", root=tmp_path / "root", mirror=mirror)
    assert images.shape == (20, 3, 32, 32) and images.dtype == torch.uint8 and images.is_contiguous()
    # The class-sorted order is shuffled with a fixed seed, so any prefix mixes the classes.
    order = torch.randperm(20, generator=torch.Generator().manual_seed(0)).tolist()
    assert labels.tolist() == [order_i // 2 for order_i in order]
    assert sorted(labels.tolist()) == [k for k in range(10) for _ in range(2)]
    for i, sorted_i in enumerate(order):
        expected = torch.tensor(colours[(sorted_i // 2, sorted_i % 2)], dtype=torch.float32)
        assert torch.allclose(images[i].float().mean((1, 2)), expected, atol=4), i
    again = load_split("cifar10", "test", root=tmp_path / "root2", mirror=mirror)
    assert torch.equal(again[0], images) and torch.equal(again[1], labels)


def test_jpeg_tar_with_wrong_classes_is_rejected(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with tarfile.open(mirror / "cifar10-jpeg.tar.gz", "w:gz") as tar:
        for cls in CIFAR10_CLASSES[:-1] + ("lorry",):
            _add_jpeg(tar, f"cifar10-jpeg/train/{cls}/0000.jpg", (1, 2, 3))
    with pytest.raises(DataUnavailableError, match="lorry"):
        load_split("cifar10", "train", root=tmp_path / "root", mirror=mirror)
    assert not (tmp_path / "root" / "cache" / "cifar10-train.pt").exists()


# ------------------------------------------------------------ damaged mirrors: one clear line


def _write_idx_mirror(raw: Path, prefix: str, pixels: np.ndarray, labels) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    _write_idx_gz(raw / f"{prefix}-images-idx3-ubyte.gz", pixels)
    _write_idx_gz(raw / f"{prefix}-labels-idx1-ubyte.gz", np.asarray(labels, np.uint8))


def _one_line_error(call) -> str:
    with pytest.raises(DataUnavailableError) as err:
        call()
    message = str(err.value)
    # One line, and no chained traceback ("During handling of the above exception...") under it.
    assert "\n" not in message and err.value.__cause__ is None, message
    assert err.value.__context__ is None or err.value.__suppress_context__, message
    return message


def _mnist_mirror(tmp_path: Path) -> Path:
    mirror = tmp_path / "mirror"
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 40), ("t10k", 20)):
        _write_idx_mirror(mirror / "MNIST" / "raw", prefix, rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
                          rng.integers(0, 10, n))
    return mirror


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _corrupt(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[30:60] = bytes(30)  # inside the deflate stream: an invalid block or a CRC mismatch
    path.write_bytes(bytes(raw))


def _not_gzip(path: Path) -> None:
    path.write_bytes(b"<html>404 Not Found</html>")


@pytest.mark.parametrize("damage", [_truncate, _corrupt, _not_gzip])
@pytest.mark.parametrize("file", ["t10k-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"])
def test_damaged_gz_names_the_file_and_the_fix(tmp_path, damage, file):
    mirror = _mnist_mirror(tmp_path)
    path = mirror / "MNIST" / "raw" / file
    damage(path)
    split = "test" if file.startswith("t10k") else "train"
    message = _one_line_error(lambda: load_split("mnist", split, root=tmp_path / "root", mirror=mirror))
    assert message.startswith(f"{path}: ") and message.endswith(f"; replace {file} in the mirror with an intact copy"), message
    assert not (tmp_path / "root" / "cache" / f"mnist-{split}.pt").exists()


def test_idx_that_inflates_past_the_cap_is_refused(tmp_path, monkeypatch):
    mirror = _mnist_mirror(tmp_path)
    monkeypatch.setattr(data, "_MAX_IDX_BYTES", 1000)  # train images are 40 * 784 bytes
    message = _one_line_error(lambda: load_split("mnist", "train", root=tmp_path / "root", mirror=mirror))
    assert "train-images-idx3-ubyte.gz: inflates to over" in message, message


def test_idx_with_a_short_body_is_refused(tmp_path):
    raw = tmp_path / "mirror" / "MNIST" / "raw"
    _write_idx_mirror(raw, "train", np.zeros((3, 28, 28), np.uint8), [1, 2, 3])
    header = bytes([0, 0, 8, 3]) + np.array((5, 28, 28), dtype=">u4").tobytes()  # says 5 images, holds 3
    with gzip.open(raw / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(header + bytes(3 * 784))
    message = _one_line_error(lambda: load_split("mnist", "train", root=tmp_path / "root", mirror=tmp_path / "mirror"))
    assert "the header says (5, 28, 28) (3920 bytes), but 2352 bytes follow it" in message, message


def test_ensure_splits_checks_the_test_split_too(tmp_path):
    mirror = _mnist_mirror(tmp_path)
    _truncate(mirror / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz")
    message = _one_line_error(lambda: ensure_splits("mnist", root=tmp_path / "root", mirror=mirror))
    assert "t10k-labels-idx1-ubyte.gz" in message
    # With an intact mirror, both splits are decoded and cached, and nothing is returned.
    mirror = _mnist_mirror(tmp_path / "good")
    assert ensure_splits("MNIST", root=tmp_path / "root2", mirror=mirror) is None
    assert sorted(p.name for p in (tmp_path / "root2" / "cache").iterdir()) == ["mnist-test.pt", "mnist-train.pt"]


def _cifar_tar(path: Path, extra=()) -> None:
    """A tiny CIFAR-10 JPEG mirror: one image per class and split, then ``extra`` (name, bytes) members."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for split in ("train", "test"):
            for k, cls in enumerate(CIFAR10_CLASSES):
                _add_jpeg(tar, f"cifar10-jpeg/{split}/{cls}/0000.jpg", (20 * k, 10, 10))
        for name, payload in extra:
            _add_bytes(tar, name, payload)


def _add_bytes(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    member = tarfile.TarInfo(name)
    member.size = len(payload)
    tar.addfile(member, io.BytesIO(payload))


def _jpeg_bytes(size=(32, 32)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, (1, 2, 3)).save(buffer, format="JPEG", quality=75)
    return buffer.getvalue()


def _jpeg_claiming(width: int, height: int) -> bytes:
    """A 32x32 JPEG whose frame header (SOF0: marker, length, precision, height, width) claims another size."""
    raw = bytearray(_jpeg_bytes())
    sof = raw.index(b"\xff\xc0")
    raw[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(raw)


@pytest.mark.parametrize(
    "payload,why",
    [
        (b"GIF89a not a jpeg at all", "is not a readable JPEG"),
        (_jpeg_bytes()[:300], "is not a readable JPEG"),  # truncated
        (_jpeg_bytes((64, 64)), "is 64x64, not 32x32"),
        (_jpeg_claiming(33, 32), "is 33x32, not 32x32"),  # refused before its pixels are decoded
        (_jpeg_claiming(60000, 60000), "is not a readable JPEG (Image size (3600000000 pixels)"),  # a pixel bomb
    ],
)
def test_bad_jpeg_names_the_tar_member(tmp_path, payload, why):
    tar = tmp_path / "mirror" / "cifar10-jpeg.tar.gz"
    _cifar_tar(tar, [("cifar10-jpeg/test/dog/0001.jpg", payload)])
    message = _one_line_error(lambda: load_split("cifar10", "test", root=tmp_path / "root", mirror=tar.parent))
    assert message.startswith(f"{tar}: member 'cifar10-jpeg/test/dog/0001.jpg' {why}"), message


@pytest.mark.parametrize(
    "name",
    ["elsewhere/train/cat/0001.jpg", "cifar10-jpeg/val/cat/0001.jpg", "cifar10-jpeg/train/cat/0001.png",
     "cifar10-jpeg/train/cat/deeper/0001.jpg", "cifar10-jpeg/train/0001.jpg", "cifar10-jpeg/../x/cat/1.jpg",
     "/cifar10-jpeg/train/cat/0001.jpg"],
)  # fmt: skip
def test_tar_member_outside_the_layout_is_rejected(tmp_path, name):
    tar = tmp_path / "mirror" / "cifar10-jpeg.tar.gz"
    _cifar_tar(tar, [(name, _jpeg_bytes())])
    # Rejected whichever split is asked for: the archive as a whole is not the documented one.
    for split in ("train", "test"):
        message = _one_line_error(lambda: load_split("cifar10", split, root=tmp_path / "root", mirror=tar.parent))
        assert f"member {name!r} does not fit the layout cifar10-jpeg/{{train,test}}/<class>/<name>.jpg" in message


def test_tar_symlink_member_is_rejected(tmp_path):
    tar_path = tmp_path / "mirror" / "cifar10-jpeg.tar.gz"
    _cifar_tar(tar_path)
    with tarfile.open(tar_path, "w:gz") as tar:
        link = tarfile.TarInfo("cifar10-jpeg/train/cat/0001.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    message = _one_line_error(lambda: load_split("cifar10", "train", root=tmp_path / "root", mirror=tar_path.parent))
    assert "member 'cifar10-jpeg/train/cat/0001.jpg' does not fit the layout" in message


def test_oversized_tar_member_is_rejected_unread(tmp_path, monkeypatch):
    tar = tmp_path / "mirror" / "cifar10-jpeg.tar.gz"
    _cifar_tar(tar, [("cifar10-jpeg/train/cat/0001.jpg", bytes(65 * 1024))])  # compresses to almost nothing
    read = []
    original = tarfile.TarFile.extractfile
    monkeypatch.setattr(tarfile.TarFile, "extractfile", lambda self, m: read.append(m.name) or original(self, m))
    message = _one_line_error(lambda: load_split("cifar10", "train", root=tmp_path / "root", mirror=tar.parent))
    assert "member 'cifar10-jpeg/train/cat/0001.jpg' is 66,560 bytes, over the 64 KiB limit" in message, message
    assert "cifar10-jpeg/train/cat/0001.jpg" not in read


def test_truncated_tar_names_the_archive(tmp_path):
    tar = tmp_path / "mirror" / "cifar10-jpeg.tar.gz"
    _cifar_tar(tar)
    _truncate(tar)
    message = _one_line_error(lambda: load_split("cifar10", "train", root=tmp_path / "root", mirror=tar.parent))
    assert message.startswith(f"{tar}: truncated or corrupt tar.gz"), message


# -------------------------------------------------------- damaged caches: rebuilt, with one line


def _cache_damages():
    def entry(cache: Path) -> dict:
        return torch.load(cache, weights_only=True)

    def resave(change):
        def damage(cache: Path) -> None:
            e = entry(cache)
            change(e)
            torch.save(e, cache)

        return damage

    return {
        "zero-byte": (lambda c: c.write_bytes(b""), "cannot be read"),
        "truncated": (_truncate, "cannot be read"),
        "not a dict": (lambda c: torch.save([1, 2, 3], c), "holds a list, not the dict mnv3.data writes"),
        "old format": (resave(lambda e: e.update(format=1)), "has format 1, this version writes 2"),
        "other classes": (resave(lambda e: e.update(classes=list("abcdefghij"))), "lists other classes"),
        "no labels": (resave(lambda e: e.pop("labels")), "lacks the 'images' or 'labels' tensor"),
        "float images": (resave(lambda e: e.update(images=e["images"].float())), "images are torch.float32"),
        "wrong shape": (resave(lambda e: e.update(images=e["images"][:, :, :14])), "(40, 1, 14, 28), expected uint8 [N, 1, 28, 28]"),
        "label out of range": (resave(lambda e: e["labels"].__setitem__(3, 10)), "labels run from 0 to 10, outside 0..9"),
        "negative label": (resave(lambda e: e["labels"].__setitem__(3, -1)), "labels run from -1 to"),
        "int32 labels": (resave(lambda e: e.update(labels=e["labels"].int())), "torch.int32 labels of shape (40,)"),
        "count mismatch": (resave(lambda e: e.update(labels=e["labels"][:-1])), "labels of shape (39,) for 40 images"),
        "empty": (resave(lambda e: e.update(images=e["images"][:0], labels=e["labels"][:0])), "it holds no images"),
    }


_DAMAGES = _cache_damages()


@pytest.mark.parametrize("kind", sorted(_DAMAGES))
def test_damaged_cache_is_rebuilt_with_one_line(tmp_path, capsys, kind):
    damage, why = _DAMAGES[kind]
    mirror, root = _mnist_mirror(tmp_path), tmp_path / "root"
    images, labels = load_split("mnist", "train", root=root, mirror=mirror)
    cache = root / "cache" / "mnist-train.pt"
    damage(cache)
    capsys.readouterr()

    again = load_split("mnist", "train", root=root, mirror=mirror)
    assert torch.equal(again[0], images) and torch.equal(again[1], labels)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"mnv3.data: the cache {cache} ") and err.rstrip().endswith("; rebuilding it"), err
    assert why in err, err
    # The rebuilt cache is valid: the next load reads it silently.
    load_split("mnist", "train", root=root, mirror=tmp_path / "gone")
    assert capsys.readouterr().err == ""


def test_damaged_cache_without_a_source_says_so(tmp_path, capsys):
    root = tmp_path / "root"
    (root / "cache").mkdir(parents=True)
    (root / "cache" / "mnist-test.pt").write_bytes(b"")
    with pytest.raises(DataUnavailableError, match="MNV3_DATA_MIRROR"):
        load_split("mnist", "test", root=root, download=False)
    assert "mnist-test.pt cannot be read" in capsys.readouterr().err


def _write_idx_gz(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _add_jpeg(tar: tarfile.TarFile, name: str, colour: tuple[int, int, int]) -> None:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), colour).save(buffer, format="JPEG", quality=75)
    member = tarfile.TarInfo(name)
    member.size = buffer.tell()
    buffer.seek(0)
    tar.addfile(member, buffer)


# ------------------------------------------------------------------------- the real mirror


def _find_mirror() -> Path | None:
    candidates = [os.environ.get("MNV3_DATA_MIRROR"), Path(__file__).resolve().parents[2] / "shared" / "datasets"]
    return next((Path(c) for c in candidates if c and Path(c).is_dir()), None)


_MIRROR = _find_mirror()


@pytest.fixture(scope="module")
def real_mirror() -> Path:
    if _MIRROR is None:
        pytest.skip("no dataset mirror: set MNV3_DATA_MIRROR or provide <repo>/../shared/datasets")
    return _MIRROR


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory) -> Path:
    """One data root for the module, so each split is decoded once and then read from cache."""
    return tmp_path_factory.mktemp("data-root")


def _load_real(name, split, real_mirror, cache_root):
    if not (real_mirror / ("MNIST/raw" if name == "mnist" else "cifar10-jpeg.tar.gz")).exists():
        pytest.skip(f"the mirror {real_mirror} has no {name}")
    start = time.perf_counter()
    images, labels = load_split(name, split, root=cache_root, mirror=real_mirror)
    print(f"\n{name} {split}: decoded from the mirror in {time.perf_counter() - start:.2f} s")
    return images, labels


@pytest.fixture(scope="module")
def mnist_train(real_mirror, cache_root):
    return _load_real("mnist", "train", real_mirror, cache_root)


@pytest.fixture(scope="module")
def mnist_test(real_mirror, cache_root):
    return _load_real("mnist", "test", real_mirror, cache_root)


@pytest.fixture(scope="module")
def cifar_train(real_mirror, cache_root):
    return _load_real("cifar10", "train", real_mirror, cache_root)


@pytest.fixture(scope="module")
def cifar_test(real_mirror, cache_root):
    return _load_real("cifar10", "test", real_mirror, cache_root)


@pytest.mark.mirror
def test_mirror_mnist_train(mnist_train, cache_root):
    images, labels = mnist_train
    assert images.shape == (60000, 1, 28, 28) and images.dtype == torch.uint8 and images.is_contiguous()
    assert labels.dtype == torch.int64 and labels[:5].tolist() == [5, 0, 4, 1, 9]
    counts = labels.bincount(minlength=10)
    assert counts.sum() == 60000 and counts.tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    pixels = images.float() / 255
    assert pixels.mean().item() == pytest.approx(0.1307, abs=1e-4)
    assert pixels.std().item() == pytest.approx(0.3081, abs=1e-4)

    cache = cache_root / "cache" / "mnist-train.pt"
    assert cache.is_file()
    start = time.perf_counter()
    cached = load_split("mnist", "train", root=cache_root, mirror=cache_root / "no-such-mirror")
    seconds = time.perf_counter() - start
    print(f"\nmnist train: loaded from the cache in {seconds:.3f} s")
    assert torch.equal(cached[0], images) and torch.equal(cached[1], labels)


@pytest.mark.mirror
def test_mirror_mnist_test(mnist_test, cache_root):
    images, labels = mnist_test
    assert images.shape == (10000, 1, 28, 28) and images.dtype == torch.uint8
    assert labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert labels.bincount(minlength=10).sum() == 10000
    assert (cache_root / "cache" / "mnist-test.pt").is_file()


@pytest.mark.mirror
def test_mirror_cifar10(cifar_train, cifar_test, cache_root):
    assert DATASETS["cifar10"].classes == CIFAR10_CLASSES
    for (images, labels), n in ((cifar_train, 50000), (cifar_test, 10000)):
        assert images.shape == (n, 3, 32, 32) and images.dtype == torch.uint8 and images.is_contiguous()
        assert labels.dtype == torch.int64
        assert labels.bincount(minlength=10).tolist() == [n // 10] * 10
    # Channel means near the official ones (the mirror's JPEG re-encoding shifts them slightly).
    means = cifar_train[0].sum((0, 2, 3), dtype=torch.float64) / (50000 * 32 * 32 * 255)
    assert torch.allclose(means, torch.tensor(DATASETS["cifar10"].mean, dtype=torch.float64), atol=0.005)
    entry = torch.load(cache_root / "cache" / "cifar10-train.pt", weights_only=True)
    assert tuple(entry["classes"]) == CIFAR10_CLASSES and "mirror" in entry["source"]
    assert torch.equal(entry["images"], cifar_train[0])
