"""Shared, expensive fixtures: tiny trained runs, made once per test session."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def mirror_path() -> Path | None:
    """The real offline dataset mirror: $MNV3_DATA_MIRROR, else ../shared/datasets beside the checkout."""
    for candidate in (os.environ.get("MNV3_DATA_MIRROR"), REPO.parent / "shared" / "datasets"):
        if candidate and (Path(candidate) / "MNIST" / "raw").is_dir():
            return Path(candidate)
    return None


@pytest.fixture(scope="module")
def one_thread():
    """For modules of tiny tensors: one thread is as fast alone and several times faster on a busy
    machine (two OpenMP threads spinning against other processes cost 5-8x the CPU time)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def interrupt_training_after(monkeypatch):
    """``interrupt_training_after(steps)`` delivers a real SIGINT (Ctrl-C) once ``steps`` training
    steps have run (through ``mnv3.step.compute_loss``); ``monkeypatch.undo()`` disarms it."""
    import signal

    from mnv3 import step as train_module

    def arm(steps: int) -> None:
        calls, original = {"n": 0}, train_module.compute_loss

        def loss_then_interrupt(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == steps:
                os.kill(os.getpid(), signal.SIGINT)
            return original(*args, **kwargs)

        monkeypatch.setattr(train_module, "compute_loss", loss_then_interrupt)

    return arm


@pytest.fixture(scope="session")
def data_mirror() -> Path:
    path = mirror_path()
    if path is None:
        pytest.skip("the offline dataset mirror is absent: set MNV3_DATA_MIRROR or put it at ../shared/datasets")
    return path


# Each experiment trained briefly on the synthetic dataset (1x28x28, 10 classes): enough to give
# the notebooks, export and benchmark tests real run folders. mnist_small takes the most steps
# (about 80% test accuracy), so that the int8 and parity checks of the export mean something.
TINY_RUN_ARGS = {
    "mnist_small": ["--epochs", "2", "--max-train-samples", "1024", "--batch-size", "32"],
    "cifar10_small_s2": ["--epochs", "2", "--max-train-samples", "256", "--batch-size", "64"],
    "cifar10_small_s1": ["--epochs", "2", "--max-train-samples", "256", "--batch-size", "64"],
    "cifar10_large_s1": ["--epochs", "2", "--max-train-samples", "256", "--batch-size", "64"],
}


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory) -> Path:
    """A runs/quick folder with all four experiments, trained on synthetic data."""
    from mnv3.train import main

    root = tmp_path_factory.mktemp("runs")
    threads = torch.get_num_threads()
    try:
        for name, extra in TINY_RUN_ARGS.items():
            # One thread: on a busy 2-core machine two OpenMP threads make small batches far slower.
            main(["--experiment", name, "--name", name, "--dataset", "synthetic", "--out", str(root), "--data-root", str(root / "data"),
                  "--threads", "1", *extra])  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    return root / "quick"


@pytest.fixture(scope="session")
def trained_run(tiny_runs) -> Path:
    """The tiny mnist_small run folder (config.json, metrics.csv, best.pt, last.pt, test.json)."""
    return tiny_runs / "mnist_small"


@pytest.fixture(scope="session")
def exported_run(trained_run):
    """The tiny mnist_small run exported once in every format (see tests/export_fixtures.py)."""
    from export_fixtures import export_shared, needs_export_extras

    needs_export_extras()
    return export_shared(trained_run)


# Real images: scikit-learn's load_digits (1,797 scans of handwritten digits, 8x8, 17 grey levels;
# the UCI "Optical Recognition of Handwritten Digits" test set), written out as PNG class folders.
DIGITS_RUN_ARGS = ["--image-size", "28", "--epochs", "3", "--batch-size", "64", "--threads", "1"]


@pytest.fixture(scope="session")
def digits_folder(tmp_path_factory) -> Path:
    """``digits/<0..9>/<index>.png``: load_digits' images as 8-bit gray PNGs (value * 255 / 16)."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("images") / "digits"
    digits = load_digits()
    for i, (image, target) in enumerate(zip(digits.images, digits.target)):
        (root / str(target)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(image * 255 / 16).astype(np.uint8), "L").save(root / str(target) / f"{i:04d}.png")
    return root


@pytest.fixture(scope="session")
def digits_run(digits_folder, tmp_path_factory) -> Path:
    """MobileNetV3-Small trained from scratch on the digits folder (3 epochs at 28x28, about 10 s)."""
    from mnv3.train import main

    root = tmp_path_factory.mktemp("digits-runs")
    threads = torch.get_num_threads()
    try:
        return main(["--experiment", "mnist_small", "--dataset", f"folder:{digits_folder}", "--name", "digits", "--out", str(root),
                     "--data-root", str(root / "data"), *DIGITS_RUN_ARGS])  # fmt: skip
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def digits_export(digits_run):
    """The digits run exported (model.pte, with its parity report against eager)."""
    from export_fixtures import needs_export_extras

    needs_export_extras()
    from mnv3.export import export_run

    return export_run(digits_run, formats="pte", parity_samples=64, threads=1, log=None)


@pytest.fixture(scope="session")
def digits_assets(digits_run, digits_export, tmp_path_factory) -> Path:
    """The app's assets folder with the digits run as its third model (assets/custom/)."""
    from mnv3.export import make_android_assets

    assets = tmp_path_factory.mktemp("app-assets")
    make_android_assets(custom_run=digits_run, assets_dir=assets, n_images=10, log=None)
    return assets


@pytest.fixture
def read_only_dir(tmp_path) -> Path:
    """A folder where nothing can be created: mode 0555 for a normal user; for root, who ignores
    permission bits, /sys, which the kernel keeps unwritable (CI runs as either)."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    folder = Path("/sys")
    try:
        (folder / "mnv3-write-probe").mkdir()
    except OSError:
        yield folder
        return
    pytest.fail("/sys accepted a new folder: no read-only folder to test with here")


@pytest.fixture(scope="session")
def headless_browser() -> str:
    """A headless Chromium or Chrome (.ci/run installs Debian's chromium; GitHub's runners have Chrome)."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no headless browser: install Debian's chromium (apt-get install chromium)")
