"""Tests for mnv3.export: every exported format against eager PyTorch, the XNNPACK delegation
check, model.json, the parity report and the CLI's errors.

One small trained run is exported once for the whole session (tests/export_fixtures.py).
"""
from __future__ import annotations

import importlib.metadata
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from export_fixtures import needs_export_extras

from mnv3 import export as ex
from mnv3.data import dataset_info, make_synthetic, prepare_batch
from mnv3.model import build_model

ROW_FIELDS = {
    "artefact", "file", "size_bytes", "max_abs_logit_diff", "top1_agreement", "test_accuracy",
    "latency_ms_median", "latency_ms_p10", "latency_ms_p90", "latency_runs", "evaluated_with", "compared_at_batch",
}  # fmt: skip


@pytest.fixture(scope="session")
def exported(exported_run):
    return exported_run


@pytest.fixture(scope="session")
def eager_logits(exported):
    with torch.inference_mode():
        return exported.wrapper(exported.held_out)


# ----------------------------------------------------------------------------- numerics


def test_pte_fp32_matches_eager(exported, eager_logits):
    runner = ex.PteRunner(exported.out / "model.pte")
    assert runner.input_shape == (1, 1, 28, 28)  # the app's shape: batch 1, static
    logits = runner(exported.held_out)  # fed one image at a time
    assert (logits - eager_logits).abs().max().item() <= 1e-4


@pytest.mark.parametrize("name", ["model.ptl", "model.onnx"])
def test_ptl_and_onnx_match_eager(exported, eager_logits, name):
    logits = ex.load_runner(exported.out / name)(exported.held_out)
    assert (logits - eager_logits).abs().max().item() <= 1e-4


def test_int8_agrees_with_eager_on_top1(exported, eager_logits):
    logits = ex.PteRunner(exported.out / "model_int8.pte")(exported.held_out)
    agreement = (logits.argmax(1) == eager_logits.argmax(1)).float().mean().item()
    assert agreement >= 0.95, f"int8 agrees with eager on top-1 for only {agreement:.1%} of the held-out batch"


def test_wrapper_normalises_inside(exported):
    """Raw pixels into the wrapper == normalised pixels (prepare_batch) into the bare model."""
    images = exported.held_out_uint8[:16]
    with torch.inference_mode():
        wrapped = exported.wrapper(images.float() / 255.0)
        bare = exported.wrapper.model(prepare_batch(images, exported.info, train=False))
    assert torch.allclose(wrapped, bare, atol=1e-5, rtol=0)
    assert exported.wrapper.mean.flatten().tolist() == pytest.approx(exported.info.mean)
    assert exported.wrapper.std.flatten().tolist() == pytest.approx(exported.info.std)
    assert {name for name, _ in exported.wrapper.named_buffers()} >= {"mean", "std"}


def test_wrapper_resizes_like_prepare_batch_for_upsampled_runs():
    info = dataset_info("synthetic")
    model = build_model("small", num_classes=10, in_channels=1).eval()
    images, _ = make_synthetic(4, seed=3)
    wrapper = ex.RawPixelModel(model, info.mean, info.std, image_size_in=28, image_size=64).eval()
    assert wrapper.input_shape(1) == (1, 1, 28, 28)
    with torch.inference_mode():
        expected = model(prepare_batch(images, info, train=False, image_size=64))
        assert torch.allclose(wrapper(images.float() / 255.0), expected, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- delegation


def test_fp32_and_int8_programs_are_fully_delegated(exported):
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in exported.wrapper.modules())
    for fmt in ("pte", "pte-int8"):
        report = exported.summary["delegation"][fmt]
        assert report["fully_delegated"], report
        assert report["delegates"] >= 1 and report["backends"] == ["XnnpackBackend"]
        assert report["non_delegated_compute"] == {}
        assert not any("conv" in op or "linear" in op or "hardswish" in op for op in report["non_delegated_by_op"])
        assert report["delegated_by_op"].get("aten.convolution.default") == convs
        assert report["delegated_by_op"].get("aten.linear.default") == 2


def test_undelegated_convolution_is_detected():
    needs_export_extras()
    from executorch.exir import to_edge_transform_and_lower

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3)

        def forward(self, x):
            return self.conv(x).mean((2, 3), keepdim=True).flatten(1)

    program = torch.export.export(Tiny().eval(), (torch.zeros(1, 1, 8, 8),))
    edge = to_edge_transform_and_lower(program, partitioner=[])  # nothing delegated
    report = ex.delegation_report(edge)
    assert not report["fully_delegated"]
    assert report["delegates"] == 0
    assert "aten.convolution.default" in report["non_delegated_compute"]
    with pytest.raises(ex.DelegationError, match="convolution"):
        ex.check_delegation(report)


# ----------------------------------------------------------------------------- model.json, parity


def test_model_json_schema(exported):
    manifest = json.loads((exported.out / "model.json").read_text())
    assert manifest["format"] == "mnv3-mobile" and manifest["version"] == 1
    assert manifest["dataset"] == "synthetic"
    assert manifest["labels"] == list(exported.info.classes)
    assert manifest["input"] == {
        "shape": [1, 1, 28, 28],
        "dtype": "float32",
        "layout": "NCHW",
        "channel_order": "gray",
        "value_range": [0.0, 1.0],
        "normalization": "inside the model graph; feed raw pixels/255",
    }
    assert manifest["files"] == {"pte_fp32": "model.pte", "pte_int8": "model_int8.pte", "ptl": "model.ptl", "onnx": "model.onnx"}
    for name in manifest["files"].values():
        assert (exported.out / name).is_file()
    assert "ptl" in manifest["legacy"] and "deprecated" in manifest["legacy"]["ptl"]
    test_json = json.loads((exported.run / "test.json").read_text())
    assert manifest["test_accuracy"] == pytest.approx(test_json["test_accuracy"])
    assert manifest["executorch_version"] == importlib.metadata.version("executorch")
    assert manifest["source_run"]["checkpoint"] == "best.pt"
    assert len(manifest["source_run"]["checkpoint_sha256"]) == 64


def test_model_json_names_its_run_without_the_machines_path(exported, monkeypatch):
    # The full profile's model.json is committed: its source run must read the same on every machine.
    import mnv3.export as ex

    monkeypatch.chdir(exported.run.parent.parent)
    source = ex._source_run(exported.run, exported.config)
    assert source["run_dir"] == f"{exported.run.parent.name}/{exported.run.name}"
    assert source["checkpoint_sha256"] == ex._sha256(exported.run / source["checkpoint"])


def test_channel_order_follows_the_dataset():
    cifar = ex.model_manifest(dataset_info("cifar10"), (1, 3, 32, 32), {"pte": "model.pte"})
    assert cifar["input"]["channel_order"] == "RGB" and cifar["input"]["shape"] == [1, 3, 32, 32]
    assert cifar["files"] == {"pte_fp32": "model.pte"} and "legacy" not in cifar
    assert ex.model_manifest(dataset_info("mnist"), (1, 1, 28, 28), {})["input"]["channel_order"] == "gray"


def test_parity_report_has_every_artefact(exported):
    report = json.loads((exported.out / "parity.json").read_text())
    rows = {row["artefact"]: row for row in report["rows"]}
    assert list(rows) == ["eager", "pte", "pte-int8", "ptl", "onnx"]
    for name, row in rows.items():
        assert ROW_FIELDS <= set(row), f"{name} lacks {ROW_FIELDS - set(row)}"
        assert 0.0 <= row["test_accuracy"] <= 1.0 and 0.0 <= row["top1_agreement"] <= 1.0
        assert row["latency_ms_median"] > 0 and row["latency_runs"] == 10
        if name != "eager":
            assert row["size_bytes"] == (exported.out / row["file"]).stat().st_size
    assert rows["eager"]["max_abs_logit_diff"] == 0.0
    for name in ("pte", "ptl", "onnx"):
        assert rows[name]["max_abs_logit_diff"] <= 1e-4 and rows[name]["top1_agreement"] == 1.0
        assert rows[name]["test_accuracy"] == pytest.approx(rows["eager"]["test_accuracy"], abs=2 / report["test_images"])
    assert rows["pte"]["compared_at_batch"] == 1
    assert set(report["threads"]) == {"torch", "executorch", "onnxruntime"}
    assert report["int8"]["accuracy_drop_points"] == pytest.approx(100 * (rows["pte"]["test_accuracy"] - rows["pte-int8"]["test_accuracy"]))
    assert set(report["export_seconds"]) >= {"pte", "pte-int8", "ptl", "onnx"}
    table = (exported.out / "parity.md").read_text()
    for name in rows:
        assert f"| {name} |" in table


# ----------------------------------------------------------------------------- errors and CLI


def test_run_without_weights_is_a_clear_error(exported, tmp_path, capsys):
    run = tmp_path / "no_weights"
    run.mkdir()
    shutil.copy(exported.run / "config.json", run / "config.json")
    assert ex.main([str(run), "--formats", "pte"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no weights" in err and "Traceback" not in err


def test_unknown_format_lists_the_valid_ones(exported, capsys):
    with pytest.raises(SystemExit) as exit_info:
        ex.main([str(exported.run), "--formats", "pte,tflite"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "'tflite'" in err and "pte, pte-int8, ptl, onnx" in err
    with pytest.raises(ex.ExportError, match="valid formats: pte, pte-int8, ptl, onnx"):
        ex.export_run(exported.run, formats=["coreml"])


def test_missing_executorch_names_the_install_command(exported, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "executorch", None)  # import executorch now raises ImportError
    with pytest.raises(ex.MissingDependencyError, match=r"'executorch'.*pip install -e \"\.\[export\]\""):
        ex.PteRunner(exported.out / "model.pte")
    assert ex.main([str(exported.run), "--formats", "pte", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "executorch" in err and 'pip install -e ".[export]"' in err and "Traceback" not in err
    assert not (tmp_path / "out" / "model.pte").exists()


def test_module_imports_without_executorch():
    """mnv3.export must import where executorch is absent (torch 2.11 machines): lazy imports only."""
    code = (
        "import sys; sys.modules['executorch'] = None; sys.modules['onnxruntime'] = None\n"
        "import mnv3.export as ex\n"
        "assert ex.RawPixelModel and ex.FORMATS == ('pte', 'pte-int8', 'ptl', 'onnx')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1], timeout=120)


def test_help_explains_formats_and_assets(capsys):
    with pytest.raises(SystemExit) as exit_info:
        ex.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for word in ("pte-int8", "XNNPACK", "LEGACY", "android-assets", "--skip-parity", "--calibration-batches"):
        assert word in out
    with pytest.raises(SystemExit):
        ex.main(["android-assets", "--help"])
    assert "golden.json" in capsys.readouterr().out
