"""Image folders (--dataset folder:PATH): layouts, splits, the cache and its fingerprint, every bad
input's message, streaming from the memory-mapped cache, and the run's record read back."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mnv3 import imagefolder
from mnv3.data import dataset_info
from mnv3.imagefolder import ImageFolderError, open_folder_dataset


def png(path: Path, size=(8, 8), mode="L", seed=0) -> Path:
    """A random image of ``size`` (width, height) and PIL ``mode``, saved by extension."""
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
    return path


def make_folder(root: Path, counts: dict[str, int], *, mode="L", size=(8, 8)) -> Path:
    for c, (name, n) in enumerate(counts.items()):
        for i in range(n):
            png(root / name / f"{i:03d}.png", size, mode, seed=100 * c + i)
    return root


def open_quiet(root: Path, cache: Path, **kw):
    lines: list[str] = []
    ds = open_folder_dataset(f"folder:{root}", root=cache, log=lines.append, workers=1, **kw)
    return ds, lines


def refused(root: Path, cache: Path, **kw) -> str:
    with pytest.raises(ImageFolderError) as err:
        open_quiet(root, cache, **kw)
    message = str(err.value)
    assert "\n" not in message
    return message


# ----------------------------------------------------------------------------- layouts and splits


def test_class_folders_are_sorted_classes_split_per_class_with_a_fixed_seed(tmp_path):
    root = make_folder(tmp_path / "pets", {"dog": 10, "cat": 10, "emu": 20})
    ds, lines = open_quiet(root, tmp_path / "data")
    assert ds.info.classes == ("cat", "dog", "emu") and ds.info.name == "folder:pets" and ds.info.in_channels == 1
    rows = ds.rows
    assert sorted(torch.cat(list(rows.values())).tolist()) == list(range(40))  # disjoint, and every image used
    for k, n in enumerate((10, 10, 20)):  # per class: round(n/10) to test, round(n * val_fraction) to val
        counts = [int((ds.labels[rows[s]] == k).sum()) for s in ("train", "val", "test")]
        assert counts == [n - 2 * round(n / 10), round(n / 10), round(n / 10)]
    again, _ = open_quiet(root, tmp_path / "data")
    assert all(torch.equal(rows[s], again.rows[s]) for s in rows)
    test_labels = ds.labels[rows["test"]].tolist()
    assert test_labels != sorted(test_labels)  # shuffled with a fixed seed, so the first images mix the classes
    assert any("train 32, val 4, test 4" in line for line in lines)


def test_train_val_test_folders_are_used_as_given_and_an_absent_split_is_carved(tmp_path):
    root = tmp_path / "given"
    make_folder(root / "train", {"a": 10, "b": 10})
    make_folder(root / "test", {"a": 2, "b": 3})
    ds, _ = open_quiet(root, tmp_path / "data")
    sources = np.array([f[2] for f in ds.meta["files"]])
    assert set(sources[ds.rows["test"].numpy()]) == {"test"} and len(ds.rows["test"]) == 5
    assert set(sources[ds.rows["val"].numpy()]) == {"train"} and len(ds.rows["val"]) == 2  # carved: val_fraction of train
    assert len(ds.rows["train"]) == 18


def test_gray_only_when_every_image_is_gray_and_the_resize_rule(tmp_path):
    root = make_folder(tmp_path / "mixed", {"a": 2, "b": 2})
    png(root / "b" / "colour.png", (40, 20), "RGB", seed=7)
    ds, _ = open_quiet(root, tmp_path / "data", image_size=10)
    assert ds.info.in_channels == 3 and ds.details["channels"].startswith("RGB")
    # torchvision's Resize(10) + CenterCrop(10), spelled out with PIL: 40x20 -> 20x10, then the middle 10 columns.
    with Image.open(root / "b" / "colour.png") as img:
        expected = np.asarray(img.resize((20, 10), Image.BILINEAR).crop((5, 0, 15, 10))).transpose(2, 0, 1)
    row = [f[0] for f in ds.meta["files"]].index("b/colour.png")
    assert np.array_equal(ds.images[row].numpy(), expected)
    assert np.array_equal(imagefolder.decode_image(root / "b" / "colour.png", 3, 10), expected)  # predict's decoder
    assert "Resize(10) then CenterCrop(10)" in ds.details["resize"]


def test_mean_and_std_come_from_the_training_split(tmp_path):
    ds, _ = open_quiet(make_folder(tmp_path / "f", {"a": 10, "b": 10}), tmp_path / "data")
    pixels = ds.images[ds.rows["train"]].numpy().astype(np.float64) / 255
    assert ds.info.mean == pytest.approx((pixels.mean(),), abs=1e-12)
    assert ds.info.std == pytest.approx((pixels.std(),), abs=1e-12)
    assert ds.info.mean != pytest.approx((ds.images.numpy().mean() / 255,), abs=1e-12)  # not the whole folder's


def test_the_cache_is_a_memory_mapped_file_keyed_by_the_files(tmp_path):
    root = make_folder(tmp_path / "f", {"a": 3, "b": 3})
    ds, lines = open_quiet(root, tmp_path / "data")
    assert any(line.startswith("decoding 6 images") for line in lines)
    cache = tmp_path / "data" / "cache" / ds.details["cache"]
    # The tensor's memory is a mapping of images.npy (Linux: /proc/self/maps), not a copy.
    address = ds.images.data_ptr()
    maps = [line.split() for line in Path("/proc/self/maps").read_text().splitlines()]
    mapped = [m[-1] for m in maps if len(m) >= 6 and int(m[0].split("-")[0], 16) <= address < int(m[0].split("-")[1], 16)]
    assert mapped == [str((cache / "images.npy").resolve())]
    _, lines = open_quiet(root, tmp_path / "data")
    assert not any(line.startswith("decoding") for line in lines)  # read, not decoded again
    png(root / "a" / "000.png", seed=99)  # an edited image (new bytes, new mtime)
    os.utime(root / "a" / "000.png", ns=(1, 1))
    edited, lines = open_quiet(root, tmp_path / "data")
    assert any(line.startswith("decoding 6 images") for line in lines) and edited.details["cache"] != ds.details["cache"]
    png(root / "b" / "new.png", seed=5)
    added, _ = open_quiet(root, tmp_path / "data")
    assert added.details["images"] == 7


# ----------------------------------------------------------------------------- bad input: one line naming it


def test_a_missing_folder_or_a_file_is_named(tmp_path):
    message = refused(tmp_path / "nowhere", tmp_path / "data")
    assert str(tmp_path / "nowhere") in message and "does not exist" in message
    png(tmp_path / "one.png")
    assert "is a file, not a folder" in refused(tmp_path / "one.png", tmp_path / "data")


def test_a_folder_without_images_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    message = refused(tmp_path / "empty", tmp_path / "data")
    assert str(tmp_path / "empty") in message and "no class folders and no images" in message
    png(tmp_path / "loose" / "a.png")
    png(tmp_path / "loose" / "b.png")
    message = refused(tmp_path / "loose", tmp_path / "data")
    assert "2 images but no class folders" in message and f"{tmp_path / 'loose'}/<class>/" in message


def test_an_empty_class_folder_is_named(tmp_path):
    root = make_folder(tmp_path / "f", {"a": 2, "b": 2})
    (root / "c").mkdir()
    (root / "c" / "notes.txt").write_text("no images here")
    message = refused(root, tmp_path / "data")
    assert str(root / "c") in message and "empty class folder" in message


def test_a_single_class_is_refused(tmp_path):
    message = refused(make_folder(tmp_path / "f", {"only": 3}), tmp_path / "data")
    assert "single class folder (only/)" in message and "at least two classes" in message


def test_a_test_class_that_train_lacks_is_named(tmp_path):
    root = tmp_path / "given"
    make_folder(root / "train", {"a": 3, "b": 3})
    make_folder(root / "test", {"a": 1, "zebra": 1})
    message = refused(root, tmp_path / "data")
    assert str(root / "test" / "zebra") in message and "not in train/" in message


def test_a_folder_beside_train_is_named(tmp_path):
    root = tmp_path / "given"
    make_folder(root / "train", {"a": 3, "b": 3})
    make_folder(root / "valid", {"a": 1, "b": 1})
    assert "valid/" in refused(root, tmp_path / "data")


def test_symlink_loops_are_named(tmp_path):
    root = make_folder(tmp_path / "f", {"a": 2, "b": 2})
    (root / "a" / "again").symlink_to(root / "a", target_is_directory=True)
    message = refused(root, tmp_path / "data")
    assert "symlink loop" in message and str(root / "a" / "again") in message
    (root / "a" / "again").unlink()
    (root / "b" / "self.png").symlink_to(root / "b" / "self.png")
    message = refused(root, tmp_path / "data")
    assert "symlink loop" in message and str(root / "b" / "self.png") in message


def test_non_image_files_are_ignored_by_extension_and_counted(tmp_path):
    root = make_folder(tmp_path / "f", {"a": 2, "b": 2})
    (root / "a" / "notes.txt").write_text("not an image")
    (root / "b" / ".DS_Store").write_bytes(b"\0")
    png(root / "b" / "UPPER.PNG", seed=3)  # extensions in any case, as ImageFolder
    ds, lines = open_quiet(root, tmp_path / "data")
    assert ds.details["images"] == 5 and ds.details["ignored_files"] == 2
    ignored = [line for line in lines if line.startswith("ignored")]
    assert ignored and "ignored 2 files" in ignored[0] and "a/notes.txt" in ignored[0]


def test_a_file_that_does_not_decode_is_named_with_the_way_to_skip_it(tmp_path):
    root = make_folder(tmp_path / "f", {"a": 3, "b": 3})
    (root / "a" / "broken.jpg").write_bytes(b"not a jpeg at all")
    message = refused(root, tmp_path / "data")
    assert str(root / "a" / "broken.jpg") in message and "does not decode" in message and "--skip-bad-images" in message
    ds, lines = open_quiet(root, tmp_path / "data", skip_bad=True)
    assert ds.details["skipped"] == ["a/broken.jpg"] and ds.details["images"] == 6
    assert any(line.startswith("skipped 1 files that do not decode") and "a/broken.jpg" in line for line in lines)
    # The cache that skipped it is not taken as a licence to skip without the flag.
    assert str(root / "a" / "broken.jpg") in refused(root, tmp_path / "data")


def test_a_truncated_image_is_named_when_its_pixels_fail(tmp_path):
    root = make_folder(tmp_path / "f", {"a": 3, "b": 3})
    whole = png(root / "b" / "cut.png", (64, 64), seed=11).read_bytes()
    (root / "b" / "cut.png").write_bytes(whole[: len(whole) // 2])  # the header opens, the pixels do not
    message = refused(root, tmp_path / "data", image_size=8)
    assert str(root / "b" / "cut.png") in message and "--skip-bad-images" in message
    ds, _ = open_quiet(root, tmp_path / "data", skip_bad=True, image_size=8)
    assert ds.details["skipped"] == ["b/cut.png"] and len(ds.images) == 6


def test_images_of_several_sizes_need_image_size(tmp_path):
    root = make_folder(tmp_path / "f", {"a": 2, "b": 2})
    png(root / "b" / "wide.png", (12, 8))
    message = refused(root, tmp_path / "data")
    assert "--image-size N" in message and "is 12x8" in message


# ----------------------------------------------------------------------------- the run's record, read back


def test_run_dataset_info_reads_the_record_and_old_runs_fall_back(tmp_path):
    ds, _ = open_quiet(make_folder(tmp_path / "f", {"a": 4, "b": 4}), tmp_path / "data")
    block = imagefolder.dataset_record(ds.info, ds.details)
    config = json.loads(json.dumps({"dataset": f"folder:{tmp_path / 'f'}", "dataset_info": block}))
    assert imagefolder.run_dataset_info(config) == ds.info  # through JSON, exactly
    assert imagefolder.run_dataset_info({"dataset": "cifar10"}) == dataset_info("cifar10")
    builtin = imagefolder.dataset_record(dataset_info("mnist"))
    assert "folder" not in builtin and imagefolder.run_dataset_info({"dataset": "mnist", "dataset_info": builtin}) == dataset_info("mnist")
    with pytest.raises(ValueError, match="malformed"):
        imagefolder.run_dataset_info({"dataset": "x", "dataset_info": {"name": "x"}})


def test_a_runs_split_needs_only_the_cache_and_says_what_is_gone(tmp_path):
    root = make_folder(tmp_path / "f", {"a": 10, "b": 10})
    ds, _ = open_quiet(root, tmp_path / "data")
    config = {"dataset": f"folder:{root}", "data_root": str(tmp_path / "data"), "dataset_info": imagefolder.dataset_record(ds.info, ds.details)}
    moved = root.rename(tmp_path / "moved")
    images, labels = imagefolder.load_run_split(config, "test")
    assert torch.equal(images, ds.images[ds.rows["test"]]) and torch.equal(labels, ds.labels[ds.rows["test"]])
    cache = tmp_path / "data" / "cache" / ds.details["cache"]
    shutil.rmtree(cache)
    with pytest.raises(ImageFolderError) as err:
        imagefolder.load_run_split(config, "test")
    assert str(cache) in str(err.value) and str(root) in str(err.value) and "is gone" in str(err.value)
    moved.rename(root)
    images, _ = imagefolder.load_run_split(config, "test")  # the folder alone rebuilds the same cache
    assert torch.equal(images, ds.images[ds.rows["test"]])
    shutil.rmtree(cache)
    png(root / "a" / "extra.png", seed=77)
    with pytest.raises(ImageFolderError, match="changed since the run was trained"):
        imagefolder.load_run_split(config, "test")


def test_mapped_images_index_like_a_tensor(tmp_path):
    ds, _ = open_quiet(make_folder(tmp_path / "f", {"a": 5, "b": 5}), tmp_path / "data")
    rows = ds.rows["train"]
    mapped = imagefolder.MappedImages(ds.images, rows)
    resident = ds.images[rows]
    idx = torch.tensor([3, 0, 5])
    assert len(mapped) == len(rows) and mapped.shape == resident.shape
    assert torch.equal(mapped[idx], resident[idx]) and torch.equal(mapped[1:4], resident[1:4]) and torch.equal(mapped[2], resident[2])


# ----------------------------------------------------------------------------- training on a folder


def _train(tmp_path: Path, root: Path, name: str, *extra: str) -> Path:
    from mnv3.train import main

    return main(["--experiment", "mnist_small", "--dataset", f"folder:{root}", "--name", name, "--out", str(tmp_path / "runs"),
                 "--data-root", str(tmp_path / "data"), "--threads", "1", "--epochs", "1", "--batch-size", "8", "--image-size", "16", *extra])


def test_streaming_from_the_cache_trains_the_same_weights(tmp_path, monkeypatch, capsys):
    from mnv3.checkpoint import load_checkpoint

    root = make_folder(tmp_path / "f", {"a": 16, "b": 16})
    resident = _train(tmp_path, root, "resident")
    monkeypatch.setenv(imagefolder.RESIDENT_ENV, "0")  # nothing fits: every batch is read from the memory-mapped file
    streamed = _train(tmp_path, root, "streamed")
    assert "batches stream from the memory-mapped cache" in capsys.readouterr().out
    a, b = load_checkpoint(resident / "last.pt")["model"], load_checkpoint(streamed / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    config = json.loads((streamed / "config.json").read_text())
    assert config["dataset_info"]["classes"] == ["a", "b"] and config["dataset_info"]["image_size"] == 16
    assert json.loads((streamed / "test.json").read_text())["test_accuracy"] >= 0


def test_the_train_command_names_a_bad_folder_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        _train(tmp_path, tmp_path / "absent", "x")
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1 and str(tmp_path / "absent") in err


def test_resume_refuses_a_folder_whose_images_changed(tmp_path, monkeypatch, capsys, interrupt_training_after):
    root = make_folder(tmp_path / "f", {"a": 16, "b": 16})
    interrupt_training_after(2)
    with pytest.raises(SystemExit):
        _train(tmp_path, root, "cut")
    monkeypatch.undo()
    png(root / "b" / "late.png", seed=42)  # the folder changes while the run is stopped
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        _train(tmp_path, root, "cut", "--resume")
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "resume refused" in err and "image_folder_fingerprint" in err
