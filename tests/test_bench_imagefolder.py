"""python -m mnv3.bench.imagefolder: both paths time the same images with the same step, and the
ratios are what the epoch times say. (The speed itself is measured on a quiet machine, not here.)"""
from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

from mnv3.bench import imagefolder as bench


def test_extract_takes_a_tenth_per_class_from_the_mirrors_training_split(tmp_path):
    tar = tmp_path / "cifar10-jpeg.tar.gz"
    with tarfile.open(tar, "w:gz") as archive:
        for split in ("train", "test"):
            for cls in ("cat", "dog"):
                for i in range(4):
                    data = io.BytesIO()
                    Image.fromarray(np.full((32, 32, 3), 10 * i, np.uint8)).save(data, format="JPEG")
                    info = tarfile.TarInfo(f"cifar10-jpeg/{split}/{cls}/{i:04d}.jpg")
                    info.size = len(data.getvalue())
                    archive.addfile(info, io.BytesIO(data.getvalue()))
    root = bench.extract_cifar10_subset(tar, tmp_path / "out", images=20)
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.jpg")) == [
        f"{c}/{i:04d}.jpg" for c in ("cat", "dog") for i in range(2)]


def test_both_paths_train_the_same_images_and_the_ratios_follow(tmp_path, one_thread):
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "f" / cls).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / "f" / cls / f"{i}.jpg")
    path = bench.main(["--folder", str(tmp_path / "f"), "--sizes", "16", "--batch", "4", "--epochs", "2", "--workers", "2",
                       "--device", "cpu", "--out", str(tmp_path / "out")])  # fmt: skip
    row = json.loads(path.read_text())["results"][0]
    ours, theirs = row["ours"], row["torchvision"]
    assert ours["images"] == theirs["images"] == 22  # the training split (a tenth of each class is test), both ways
    assert len(ours["epoch_seconds"]) == len(theirs["epoch_seconds"]) == 2 and ours["epoch_seconds"][0] >= ours["decode_seconds"] > 0
    assert row["ratio_first_epoch"] == pytest.approx(theirs["epoch_seconds"][0] / ours["epoch_seconds"][0])
    assert row["ratio_later_epochs"] == pytest.approx(theirs["epoch_seconds"][1] / ours["epoch_seconds"][1])
    assert row["target"] == 1.5 and row["target_met"] == (row["ratio_later_epochs"] >= 1.5)
