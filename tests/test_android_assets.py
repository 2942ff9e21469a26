"""Golden-file tests of the Android app's assets (android-demo/app/src/main/assets/<dataset>/).

The app decodes each PNG, turns it into float [0, 1] NCHW (gray: the R byte of each pixel, one
plane; RGB: three planes) and runs model.pte with ExecuTorch. These tests do the same on the CPU,
independently of mnv3.export's own helpers (PIL decoding, ExecuTorch's Python runtime), and
compare with golden.json: predicted index equal, logits within 1e-4.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from export_fixtures import needs_export_extras

from mnv3 import export as ex
from mnv3.data import DataUnavailableError

REPO = Path(__file__).resolve().parents[1]
REAL_ASSETS = REPO / "android-demo" / "app" / "src" / "main" / "assets"
TOLERANCE = 1e-4
N_IMAGES = 12


@pytest.fixture(scope="session")
def exported(exported_run):
    return exported_run


@pytest.fixture(scope="session")
def assets(exported, tmp_path_factory):
    """Assets for the shared (gray, synthetic) run, written by make_android_assets into a tmp dir."""
    assets_dir = tmp_path_factory.mktemp("assets")
    done = ex.make_android_assets(exported.run, None, assets_dir, n_images=N_IMAGES, log=None)
    assert list(done) == [exported.info.name]
    return assets_dir / exported.info.name


def app_input(png: Path, channel_order: str, shape: list[int]) -> torch.Tensor:
    """What the app feeds the model: Android decodes to ARGB (gray PNGs with R = G = B)."""
    with Image.open(png) as img:
        assert img.mode == ("L" if channel_order == "gray" else "RGB"), f"{png}: PNG mode {img.mode}"
        assert img.size == (shape[3], shape[2]), f"{png}: {img.size} is not the model's W x H"
        rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)  # H, W, 3
    planes = rgb[:, :, :1] if channel_order == "gray" else rgb
    return torch.from_numpy(planes.transpose(2, 0, 1).astype(np.float32) / 255.0)[None].contiguous()


def check_golden(folder: Path) -> list[dict]:
    """Run folder/model.pte on every golden image as the app would and compare with golden.json."""
    needs_export_extras()
    from executorch.runtime import Runtime

    manifest = json.loads((folder / "model.json").read_text())
    golden = json.loads((folder / "golden.json").read_text())
    assert manifest["format"] == "mnv3-mobile" and manifest["version"] == 1
    assert golden["dataset"] == manifest["dataset"] and folder.name in (manifest["dataset"], "custom")  # custom/: any model
    assert golden["images"], f"{folder}/golden.json lists no images"
    method = Runtime.get().load_program(folder / manifest["files"]["pte_fp32"]).load_method("forward")
    shape = manifest["input"]["shape"]
    for entry in golden["images"]:
        x = app_input(folder / entry["file"], manifest["input"]["channel_order"], shape)
        assert list(x.shape) == shape
        logits = method.execute([x])[0][0]
        expected = torch.tensor(entry["expected_logits"])
        assert len(expected) == len(manifest["labels"]) == len(logits)
        assert int(logits.argmax()) == entry["expected_index"], entry["file"]
        diff = (logits - expected).abs().max().item()
        assert diff <= TOLERANCE, f"{folder.name}/{entry['file']}: max |logit - expected| = {diff:.2e}"
        assert 0 <= entry["label"] < len(manifest["labels"])
    return golden["images"]


def test_generated_assets_match_golden(assets, exported):
    images = check_golden(assets)
    assert [e["file"] for e in images] == [f"images/{i:02d}.png" for i in range(N_IMAGES)]
    assert sorted(p.name for p in (assets / "images").iterdir()) == [f"{i:02d}.png" for i in range(N_IMAGES)]
    assert {p.name for p in assets.iterdir()} == {"model.pte", "model.json", "golden.json", "images"}
    # classes in turn, so the demo shows every class
    assert [e["label"] for e in images] == [i % exported.info.num_classes for i in range(N_IMAGES)]


def test_pngs_hold_the_exact_test_pixels(assets, exported):
    """Lossless: each PNG decodes to the test image it came from, and the true label is its label."""
    from mnv3.data import load_split

    images, labels = load_split(exported.info.name, "test")
    for entry in json.loads((assets / "golden.json").read_text())["images"]:
        with Image.open(assets / entry["file"]) as img:
            pixels = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy())
        assert torch.equal(pixels, images[entry["test_index"], 0])
        assert entry["label"] == int(labels[entry["test_index"]])


def test_assets_model_is_the_exported_model(assets, exported):
    """The app gets the same fp32 program (and the same manifest, files aside) as RUN/export."""
    assert (assets / "model.pte").read_bytes() == (exported.out / "model.pte").read_bytes()
    shipped = json.loads((assets / "model.json").read_text())
    full = json.loads((exported.out / "model.json").read_text())
    assert shipped["files"] == {"pte_fp32": "model.pte"}
    for key in ("format", "version", "dataset", "labels", "input", "test_accuracy", "executorch_version", "source_run"):
        assert shipped[key] == full[key], key


def test_rgb_png_round_trip(tmp_path):
    """CIFAR images: an RGB PNG decodes (as the app does it) to the exact pixels, in R, G, B planes."""
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    ex.save_png(image, tmp_path / "x.png")
    x = app_input(tmp_path / "x.png", "RGB", [1, 3, 32, 32])
    assert torch.equal((x[0] * 255).round().to(torch.uint8), image)
    assert torch.equal(ex.png_to_input(tmp_path / "x.png", "RGB"), x)


def test_assets_need_a_run(tmp_path, capsys):
    with pytest.raises(ex.ExportError, match="at least one run"):
        ex.make_android_assets(None, None, tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        ex.main(["android-assets", "--assets-dir", str(tmp_path)])
    assert exit_info.value.code == 2 and "--mnist" in capsys.readouterr().err


def test_gray_run_is_refused_for_the_cifar_slot(exported, tmp_path):
    with pytest.raises(ex.ExportError, match="RGB"):
        ex.make_android_assets(None, exported.run, tmp_path)


# The committed full-profile runs that fill the app's two slots. The app's default CIFAR run,
# cifar10_small_s1, stopped before its end and has no weights; cifar10_small_s2 is the same Small
# network with the paper's strides, which finished.
COMMITTED = REPO / "reports" / "full" / "runs"
APP_RUNS = {"mnist": COMMITTED / "mnist_small", "cifar10": COMMITTED / "cifar10_small_s2"}


@pytest.fixture(scope="session")
def app_assets(tmp_path_factory, data_mirror) -> Path:
    """The app's assets made as `make android-assets PROFILE=full` makes them, from the committed
    weights, so that a clean clone (CI) checks real models: two XNNPACK lowerings and the two test
    splits decoded from the mirror, about a minute of CPU on 2 cores."""
    needs_export_extras()
    out = tmp_path_factory.mktemp("app-assets")
    ex.make_android_assets(APP_RUNS["mnist"], APP_RUNS["cifar10"], out / "assets", data_root=out / "data", data_mirror=data_mirror, log=None)
    return out / "assets"


@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
def test_real_app_assets_match_golden(dataset, app_assets):
    """The real models' assets as the app reads them; the app's own folder too, once generated."""
    images = check_golden(app_assets / dataset)
    assert len(images) == 20 and len({e["label"] for e in images}) == 10
    accuracy = json.loads((APP_RUNS[dataset] / "test.json").read_text())["test_accuracy"]
    assert sum(e["expected_index"] == e["label"] for e in images) >= (0.5 if accuracy < 0.9 else 0.9) * len(images)
    folder = REAL_ASSETS / dataset
    if (folder / "golden.json").is_file():
        check_golden(folder)


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_assets_record_the_pte_sha256(assets):
    manifest = json.loads((assets / "model.json").read_text())
    assert manifest["sha256"] == {"model.pte": hashlib.sha256((assets / "model.pte").read_bytes()).hexdigest()}


def test_truncated_export_is_not_copied_but_exported_again(exported, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(exported.run, run)
    good = (run / "export" / "model.pte").read_bytes()
    (run / "export" / "model.pte").write_bytes(good[: len(good) // 2])  # an interrupted copy
    messages: list[str] = []
    done = ex.make_android_assets(run, None, tmp_path / "assets", n_images=2, log=messages.append)
    assert any("not reusing" in m and "does not match the sha256" in m for m in messages), messages
    assert any("exported model.pte" in m for m in messages)
    shipped = done[exported.info.name] / "model.pte"
    assert ex.PteRunner(shipped).input_shape == (1, 1, 28, 28)
    manifest = json.loads((done[exported.info.name] / "model.json").read_text())
    assert manifest["sha256"]["model.pte"] == hashlib.sha256(shipped.read_bytes()).hexdigest()


def test_a_failure_leaves_the_assets_folder_unchanged(exported, tmp_path):
    assets_dir = tmp_path / "assets"
    (assets_dir / exported.info.name / "images").mkdir(parents=True)
    (assets_dir / exported.info.name / "model.pte").write_bytes(b"the previous model")
    (assets_dir / exported.info.name / "images" / "00.png").write_bytes(b"the previous image")
    before = tree(assets_dir)
    # The .pte is copied and model.json written, then reading the test images fails.
    run = tmp_path / "run"
    shutil.copytree(exported.run, run)
    config = json.loads((run / "config.json").read_text())
    config["dataset"] = "mnist"  # gray, same shape; its test split is not under the empty data root
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(DataUnavailableError):
        ex.make_android_assets(run, None, assets_dir, n_images=2, data_root=tmp_path / "empty", data_mirror=tmp_path / "none", log=None)
    assert tree(assets_dir) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".assets")] == []  # no staging left


def test_unloadable_pte_is_a_clear_error(tmp_path):
    needs_export_extras()
    (tmp_path / "model.pte").write_bytes(b"not a program")
    with pytest.raises(ex.ExportError, match=r"model.pte: ExecuTorch cannot load it .*export it again"):
        ex.PteRunner(tmp_path / "model.pte")


# ----------------------------------------------------------------------------- bad input (issue 22)


def reuse_the_shared_pte(monkeypatch, exported) -> list[Path]:
    """Make "exporting afresh" copy the session's own model.pte of the same run (no lowering)."""
    from mnv3.export import android

    calls: list[Path] = []

    def export_pte(wrapper, path, **kwargs):
        calls.append(Path(path))
        Path(path).write_bytes((exported.out / "model.pte").read_bytes())

    monkeypatch.setattr(android, "export_pte", export_pte)
    return calls


@pytest.mark.parametrize("manifest", [[], {"format": "mnv3-mobile", "input": None, "source_run": None}, "sha256-as-a-string"])
def test_a_malformed_model_json_means_exporting_afresh(exported, tmp_path, monkeypatch, manifest):
    run = tmp_path / "run"
    shutil.copytree(exported.run, run)
    good = json.loads((run / "export" / "model.json").read_text())
    bad = {**good, "sha256": "deadbeef"} if manifest == "sha256-as-a-string" else manifest
    (run / "export" / "model.json").write_text(json.dumps(bad))
    calls = reuse_the_shared_pte(monkeypatch, exported)
    messages: list[str] = []
    done = ex.make_android_assets(run, None, tmp_path / "assets", n_images=2, log=messages.append)
    assert len(calls) == 1 and any("not reusing" in m and "model.json" in m and "Exporting afresh" in m for m in messages), messages
    check_golden(done[exported.info.name])


def test_assets_dir_that_is_a_file_is_refused_before_any_work(exported, tmp_path, monkeypatch, capsys):
    from mnv3.export import android

    def must_not_run(*args, **kwargs):
        raise AssertionError("the export work started")

    monkeypatch.setattr(android, "load_wrapped_run", must_not_run)
    (tmp_path / "assets").write_text("a file")
    assert ex.main(["android-assets", "--mnist", str(exported.run), "--assets-dir", str(tmp_path / "assets")]) == 2
    err = capsys.readouterr().err
    assert "a file stands where the app's assets folder goes" in err and "Traceback" not in err
    assert (tmp_path / "assets").read_text() == "a file"


def test_a_killed_runs_staging_is_removed_and_a_read_only_folder_is_one_line(exported, tmp_path, monkeypatch, read_only_dir, capsys):
    leftover = tmp_path / ".assets.staging-999999999-x1y2"  # a killed run's (no such process)
    (leftover / "new" / "mnist").mkdir(parents=True)
    reuse_the_shared_pte(monkeypatch, exported)
    ex.make_android_assets(exported.run, None, tmp_path / "assets", n_images=2, log=None)
    assert not leftover.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["assets"]
    assert ex.main(["android-assets", "--mnist", str(exported.run), "--assets-dir", str(read_only_dir / "assets")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {read_only_dir}") and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
