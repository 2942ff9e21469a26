"""Tests for mnv3.export: every exported format against eager PyTorch, the XNNPACK delegation
check, model.json, the parity report and the CLI's errors.

One small trained run is exported once for the whole session (tests/export_fixtures.py).
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from damage import DAMAGES, damaged_copy
from export_fixtures import needs_export_extras

from mnv3 import export as ex
from mnv3.checkpoint import load_run
from mnv3.augment import prepare_batch
from mnv3.data import dataset_info, make_synthetic
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


def _hand_count(edge) -> dict[str, dict[str, int]]:
    """Ops per name inside and outside the delegates, counted over the graphs directly (getitem aside)."""
    from collections import Counter

    gm = edge.exported_program().graph_module

    def name(node):
        return (getattr(node.target, "__name__", None) or str(node.target)).split(":")[0].strip("<> ").replace("EdgeOpOverload ", "")

    inside, outside = Counter(), Counter()
    for node in gm.graph.nodes:
        if node.op != "call_function" or name(node) == "getitem":
            continue
        if name(node) == "executorch_call_delegate":
            lowered = getattr(gm, node.args[0].target)
            inside.update(name(n) for n in lowered.original_module.graph.nodes if n.op == "call_function" and name(n) != "getitem")
        else:
            outside[name(node)] += 1
    return {"delegated_by_op": dict(inside), "non_delegated_by_op": dict(outside)}


def test_delegation_counts_per_op_match_a_hand_count():
    """Two delegates around an op XNNPACK cannot run: ExecuTorch's count, renamed by op, is the graph's."""
    needs_export_extras()

    class Split(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Conv2d(1, 4, 3), torch.nn.Conv2d(4, 4, 3)

        def forward(self, x):
            return self.b(torch.cumsum(self.a(x), 1)).flatten(1)

    edge = ex.to_edge_xnnpack(Split().eval(), (torch.zeros(1, 1, 8, 8),))
    report = ex.delegation_report(edge)
    assert {k: report[k] for k in ("delegated_by_op", "non_delegated_by_op")} == _hand_count(edge)
    assert report["delegated_by_op"] == {"aten.convolution.default": 2, "aten.view_copy.default": 1}
    assert report["non_delegated_by_op"] == report["non_delegated_compute"] == {"aten.cumsum.default": 1}
    assert report["delegates"] == 2 and report["delegated_ops"] == 3 and report["non_delegated_ops"] == 1
    assert not report["fully_delegated"]


def test_delegation_report_is_the_committed_exports(tmp_path):
    """Notebook 06 shows parity.json's delegation tables: the committed full-profile mnist_small export,
    lowered again from its checkpoint by this code (with the ExecuTorch version that wrote it), must
    report the same numbers, op for op, for the fp32 and the int8 program."""
    needs_export_extras()
    run = Path(__file__).resolve().parents[1] / "reports" / "full" / "runs" / "mnist_small"
    parity = json.loads((run / "export" / "parity.json").read_text())
    manifest = json.loads((run / "export" / "model.json").read_text())
    if importlib.metadata.version("executorch") != manifest["executorch_version"]:
        pytest.skip(f"the committed export was lowered by executorch {manifest['executorch_version']}")
    wrapper, _, _ = ex.load_wrapped_run(run, which=Path(manifest["source_run"]["checkpoint"]).stem)
    _, fp32 = ex.lower_to_pte(wrapper, wrapper.input_shape(1))
    assert fp32 == parity["delegation"]["pte"]
    # Node counts do not depend on the calibration images, only on the layers kept in fp32.
    kept = ex.fp32_module_names(wrapper, parity["int8"]["keep_fp32"])
    quantized = ex.quantize_int8(wrapper, torch.rand(8, *wrapper.input_shape(1)[1:]), batch_size=4, keep_fp32=kept)
    _, int8 = ex.lower_to_pte(quantized, wrapper.input_shape(1))
    assert int8 == parity["delegation"]["pte-int8"]


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
    from mnv3.export.manifest import _sha256 as sha256_of, source_run_record as source_run

    monkeypatch.chdir(exported.run.parent.parent)
    source = source_run(exported.run, exported.config)
    assert source["run_dir"] == f"{exported.run.parent.name}/{exported.run.name}"
    assert source["checkpoint_sha256"] == sha256_of(exported.run / source["checkpoint"])


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
    # the budget, on this small trained model, with the default layers kept in fp32
    assert report["int8"]["max_drop_points"] == ex.INT8_MAX_DROP_POINTS == 0.5
    assert report["int8"]["keep_fp32"] == list(ex.INT8_KEEP_FP32)
    assert report["int8"]["within_budget"], f"int8 loses {report['int8']['accuracy_drop_points']:.2f} points"
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
    assert ex.main(["run", str(run), "--formats", "pte"]) == 2  # the command the short form stands for
    assert capsys.readouterr().err == err


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
    assert "python -m mnv3.export [run] RUN_DIR" in out  # both commands, and that `run` may be left out
    with pytest.raises(SystemExit):
        ex.main(["run", "--help"])
    assert "--allow-undelegated" in capsys.readouterr().out  # every option of the run command
    with pytest.raises(SystemExit):
        ex.main(["android-assets", "--help"])
    assert "golden.json" in capsys.readouterr().out


# ----------------------------------------------------------------------------- refusing broken models


def copy_run(run: Path, dest: Path, *, with_export: bool = False) -> Path:
    shutil.copytree(run, dest, ignore=None if with_export else shutil.ignore_patterns("export"))
    return dest


def edit_weights(run: Path, edit) -> None:
    """Apply ``edit(state_dict)`` to RUN/best.pt, in place."""
    from mnv3.checkpoint import load_checkpoint, save_checkpoint

    payload = load_checkpoint(run / "best.pt")
    edit(payload["model"])
    save_checkpoint(run / "best.pt", {k: v for k, v in payload.items() if k != "format"})


def test_non_finite_weights_are_refused_before_any_file(trained_run, tmp_path, capsys):
    run = copy_run(trained_run, tmp_path / "run")
    name = next(k for k in load_run(run)[0].state_dict() if k.endswith("weight"))
    edit_weights(run, lambda state: state[name].view(-1)[:3].copy_(torch.tensor([float("nan"), float("inf"), 1.0])))
    assert ex.main([str(run), "--formats", "pte,onnx", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert str(run / "best.pt") in err and name in err and "1 NaN and 1 inf" in err
    assert not list((tmp_path / "out").glob("*"))


def test_check_finite_names_the_buffer():
    module = torch.nn.BatchNorm2d(4)
    module.running_var[2] = float("-inf")
    with pytest.raises(ex.ExportError, match=r"the model: .*running_var holds 0 NaN and 1 inf of 4"):
        ex.check_finite(module)
    with pytest.raises(ex.ExportError, match="running_var"):
        ex.lower_to_pte(module, (1, 4, 2, 2))  # before anything is lowered


def test_compare_logits_and_accuracy_count_nan_rows_as_failures():
    reference = torch.tensor([[0.0, 1.0], [2.0, 0.0], [0.0, 3.0], [1.0, 0.0]])
    logits = torch.tensor([[0.0, 1.5], [float("nan"), 0.0], [0.0, float("inf")], [0.0, 1.0]])
    got = ex.compare_logits(reference, logits)
    # row 1: argmax picks the NaN (index 0 = the reference's) and row 2 the inf (index 1): neither counts
    assert got == {"max_abs_logit_diff": 1.0, "top1_agreement": 0.25, "nonfinite_outputs": 2}
    assert ex.compare_logits(reference, torch.full_like(reference, float("nan")))["max_abs_logit_diff"] is None
    images = torch.zeros(4, 1, 2, 2, dtype=torch.uint8)
    labels = reference.argmax(1)
    assert ex.accuracy(lambda x: logits[: len(x)], images, labels, batch_size=4) == 0.25


def test_nan_outputs_fail_the_export_with_a_strict_json_report(trained_run, tmp_path, capsys):
    # Finite weights that still give NaN: a negative running variance (sqrt of it in BatchNorm).
    run = copy_run(trained_run, tmp_path / "run")
    edit_weights(run, lambda state: state[next(k for k in state if k.endswith("running_var"))].fill_(-1.0))
    out = tmp_path / "out"
    assert ex.main([str(run), "--formats", "ptl", "--out", str(out), "--parity-samples", "16", "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert "do not ship" in err and "model.ptl outputs NaN or inf for 16 of the 16 compared images" in err

    def refuse(constant):
        raise AssertionError(f"parity.json holds the non-JSON constant {constant}")

    report = json.loads((out / "parity.json").read_text(), parse_constant=refuse)
    rows = {row["artefact"]: row for row in report["rows"]}
    assert rows["ptl"]["top1_agreement"] == 0.0 and rows["ptl"]["test_accuracy"] == 0.0
    assert rows["ptl"]["max_abs_logit_diff"] is None and rows["ptl"]["nonfinite_outputs"] == 16
    assert len(report["failures"]) == 2  # eager computes NaN too: the weights are broken, not the export
    assert "FAILED" in (out / "parity.md").read_text()


def test_strict_json_maps_nan_to_null(tmp_path):
    from mnv3.files import write_json_atomic  # the one writer export, training and bench share

    write_json_atomic(tmp_path / "x.json", {"a": float("nan"), "b": [1.0, float("-inf")], "c": {"d": 2}})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": None, "b": [1.0, None], "c": {"d": 2}}


def test_parity_md_words_the_sign_of_the_int8_change(tmp_path):
    row = {"artefact": "pte", "file": "model.pte", "size_bytes": 1, "max_abs_logit_diff": 0.0, "top1_agreement": 1.0,
           "test_accuracy": 0.9, "latency_ms_median": None, "evaluated_with": "x"}  # fmt: skip
    report = {"dataset": "mnist", "experiment": "e", "parity_samples": 1, "test_images": 1, "latency_runs": 0,
              "threads": {"torch": 1, "executorch": 1, "onnxruntime": None}, "rows": [row]}  # fmt: skip
    for drop, words in ((-0.04, "0.04 points of test accuracy gained"), (0.5, "0.50 points of test accuracy lost"),
                        (0.0, "no change in test accuracy")):
        report["int8"] = {"accuracy_drop_points": drop, "max_drop_points": 1.0, "within_budget": True}
        ex.write_parity(report, tmp_path)
        text = (tmp_path / "parity.md").read_text()
        assert f"int8 vs fp32 .pte: {words}" in text and "-0.04" not in text


class TinyRGB(torch.nn.Module):
    """The layer kinds that broke channels_last lowering: a 3-channel stem, depthwise and 1x1 convs."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.dw = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pw = torch.nn.Conv2d(8, 16, 1)
        self.fc = torch.nn.Linear(16, 10)

    def forward(self, x):
        x = F.hardswish(self.pw(F.hardswish(self.dw(self.stem(x)))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def test_channels_last_model_lowers_fully_delegated(tmp_path):
    needs_export_extras()
    torch.manual_seed(0)
    model = TinyRGB().eval().to(memory_format=torch.channels_last)  # as train(..., return_model=True) returns it
    wrapper = ex.RawPixelModel(model, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), image_size_in=8, image_size=8).eval()
    report = ex.export_pte(wrapper, tmp_path / "m.pte")
    assert report["fully_delegated"] and report["non_delegated_by_op"].get("aten.as_strided_copy.default") is None
    x = torch.rand(3, 3, 8, 8)
    with torch.inference_mode():
        expected = wrapper(x)
    assert (ex.PteRunner(tmp_path / "m.pte")(x) - expected).abs().max().item() <= 1e-5
    assert model.stem.weight.is_contiguous(memory_format=torch.channels_last)  # the caller's model is untouched


def test_onnx_writes_the_opset_asked_or_refuses(tmp_path):
    needs_export_extras()
    import onnx

    torch.manual_seed(0)
    wrapper = ex.RawPixelModel(TinyRGB().eval(), (0.5,) * 3, (0.25,) * 3, image_size_in=8, image_size=8).eval()
    how = ex.export_onnx(wrapper, tmp_path / "m11.onnx", (1, 3, 8, 8), opset=11)
    assert "opset 11" in how and "TorchScript" in how
    assert [o.version for o in onnx.load(str(tmp_path / "m11.onnx")).opset_import if o.domain in ("", "ai.onnx")] == [11]
    x = torch.rand(2, 3, 8, 8)
    with torch.inference_mode():
        assert (ex.OnnxRunner(tmp_path / "m11.onnx")(x) - wrapper(x)).abs().max().item() <= 1e-5
    with pytest.raises(ex.ExportError, match="opset 5"):
        ex.export_onnx(wrapper, tmp_path / "m5.onnx", (1, 3, 8, 8), opset=5)
    assert not (tmp_path / "m5.onnx").exists()


def test_shared_export_reports_the_files_own_opset(exported):
    assert ex.onnx_opset(exported.out / "model.onnx") == ex.ONNX_OPSET
    manifest = json.loads((exported.out / "model.json").read_text())
    assert f"opset {ex.ONNX_OPSET} (read from the file)" in manifest["notes"]["onnx"]


def test_files_follow_the_umask(exported, tmp_path):
    mask = os.umask(0o022)
    os.umask(mask)
    for path in exported.out.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask, path.name
    from mnv3.files import write_bytes_atomic  # what the exporters write with

    old = os.umask(0o027)
    try:
        write_bytes_atomic(tmp_path / "f.bin", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.bin").stat().st_mode) == 0o640


def test_model_json_records_each_files_sha256(exported):
    manifest = json.loads((exported.out / "model.json").read_text())
    assert set(manifest["sha256"]) == set(manifest["files"].values())
    for name, digest in manifest["sha256"].items():
        assert digest == hashlib.sha256((exported.out / name).read_bytes()).hexdigest()
    assert ex.verify_files(exported.out, manifest, manifest["files"].values()) == []


def test_latency_percentiles_interpolate_like_every_other_timer(monkeypatch):
    """p10/p90 are numpy's linear-interpolation percentiles (mnv3.timing), not nearest-rank picks."""
    from types import SimpleNamespace

    import numpy as np

    from mnv3 import timing

    durations_ms = [5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 10.0, 4.0, 8.0, 6.0]  # one per timed call, shuffled
    clock = {"now": 0.0, "calls": 0}

    def runner(x):
        clock["calls"] += 1
        if clock["calls"] > 2:  # the two warm-up calls are not timed
            clock["now"] += durations_ms[clock["calls"] - 3] / 1000.0
        return x

    monkeypatch.setattr(timing, "time", SimpleNamespace(perf_counter=lambda: clock["now"]))
    result = ex.measure_latency(runner, torch.zeros(1), runs=len(durations_ms), warmup=2)
    assert clock["calls"] == 12 and result["latency_runs"] == 10
    assert result["latency_ms_median"] == pytest.approx(5.5)
    assert result["latency_ms_p10"] == pytest.approx(np.percentile(durations_ms, 10)) == pytest.approx(1.9)
    assert result["latency_ms_p90"] == pytest.approx(np.percentile(durations_ms, 90)) == pytest.approx(9.1)


def test_latency_is_opt_in_and_readers_cope_without_it(tmp_path):
    from mnv3.export import readers

    assert ex.measure_latency(lambda x: x, torch.zeros(1), runs=0) == ex.NOT_TIMED
    rows = [{"artefact": name, "file": None if name == "eager" else f"m.{name}", "size_bytes": None if name == "eager" else 10,
             "max_abs_logit_diff": 0.0, "top1_agreement": 1.0, "test_accuracy": 0.9, "compared_at_batch": 1,
             "evaluated_with": "x", **ex.NOT_TIMED} for name in ("eager", "pte")]  # fmt: skip
    report = {"dataset": "mnist", "experiment": "e", "parity_samples": 1, "test_images": 1, "latency_runs": 0,
              "threads": {"torch": 1, "executorch": 1, "onnxruntime": None}, "rows": rows}  # fmt: skip
    ex.write_parity(report, tmp_path)
    assert "Latency: not timed here (`make bench`" in (tmp_path / "parity.md").read_text()
    assert json.loads((tmp_path / "parity.json").read_text())["rows"][1]["latency_ms_median"] is None
    frame = readers.load_parity(tmp_path)  # what notebook 06 reads
    assert frame["latency_ms_median"].isna().all() and frame["latency_vs_eager"].isna().all()
    assert set(readers.parity_table(frame)["latency median (ms)"]) == {"—"}
    import matplotlib

    matplotlib.use("Agg")
    readers.plot_parity(frame)


def test_int8_keeps_the_asked_layers_in_fp32_inside_the_delegate(tmp_path):
    needs_export_extras()
    torch.manual_seed(0)
    wrapper = ex.RawPixelModel(TinyRGB().eval(), (0.5,) * 3, (0.25,) * 3, image_size_in=8, image_size=8).eval()
    quantized = ex.quantize_int8(wrapper, torch.rand(8, 3, 8, 8), batch_size=4, keep_fp32=["model.fc"])

    def weight_source(op):
        node = next(n for n in quantized.graph.nodes if n.op == "call_function" and op in str(n.target))
        return str(node.args[1].target) if node.args[1].op == "call_function" else node.args[1].op

    assert "dequantize" in weight_source("conv2d")  # int8 weights
    assert "dequantize" not in weight_source("linear")  # the kept layer: float weights
    report = ex.export_pte_int8(quantized, tmp_path / "q.pte", (1, 3, 8, 8))
    assert report["fully_delegated"] and report["delegated_by_op"].get("aten.linear.default") == 1
    small = ex.RawPixelModel(build_model("small", num_classes=10), (0.5,) * 3, (0.25,) * 3)
    se = ex.fp32_module_names(small, ["se"])
    assert len(se) == sum(b.se for b in small.model.spec.blocks) and all(name.startswith("model.features.") for name in se)
    assert ex.fp32_module_names(small, ["classifier"]) == ["model.classifier"]
    with pytest.raises(ex.ExportError, match="valid: se, classifier, first_block, or a module name"):
        ex.fp32_module_names(small, ["hardsigmoid"])


# ----------------------------------------------------------------------------- the folder: whole reports, owned files (issue 22)


def test_export_never_touches_a_file_it_did_not_write(trained_run, tmp_path, capsys):
    # Case 3: `--out DIR` deleted the user's own model.onnx as "not part of this export".
    out = tmp_path / "mine"
    out.mkdir()
    (out / "model.onnx").write_text("mine")
    (out / ".notes.tmp").write_text("mine too")
    (out / ".model.onnx.k3j2.tmp.onnx").write_bytes(b"")  # what a killed export leaves (the litter)
    assert ex.main([str(trained_run), "--formats", "ptl", "--skip-parity", "--out", str(out), "--threads", "1"]) == 0
    assert (out / "model.onnx").read_text() == "mine" and (out / ".notes.tmp").read_text() == "mine too"
    assert not list(out.glob(".model.onnx.*.tmp*"))  # the killed export's temporary is gone
    assert json.loads((out / "model.json").read_text())["files"] == {"ptl": "model.ptl"}
    # a format whose file would replace the user's is refused before any work
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert ex.main([str(trained_run), "--formats", "onnx,ptl", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "model.onnx is not from an mnv3 export" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_killed_re_export_never_leaves_a_report_of_other_files(exported, tmp_path, monkeypatch):
    # Case 4: a re-export killed while parity ran left the old parity.json (listing a model_int8.pte
    # that was deleted, with "failures": []) beside the new model.json, and notebook 06 showed it.
    from mnv3.export import readers, run as run_module

    run = copy_run(exported.run, tmp_path / "runs" / "mnist_small", with_export=True)
    out = run / "export"
    assert (out / "parity.json").is_file() and (out / "model_int8.pte").is_file()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    # killed while writing the files: the old model.json and reports are already gone
    monkeypatch.setattr(run_module, "export_ptl", killed)
    with pytest.raises(KeyboardInterrupt):
        ex.export_run(run, formats="ptl", threads=1, log=None)
    assert not any((out / name).exists() for name in ("parity.json", "parity.md", "model.json"))
    monkeypatch.undo()
    # killed while the parity report is computed: model.json describes the new files, no report does
    monkeypatch.setattr(run_module, "parity_report", killed)
    with pytest.raises(KeyboardInterrupt):
        ex.export_run(run, formats="ptl", threads=1, log=None)
    assert not (out / "parity.json").exists() and not (out / "parity.md").exists()
    assert json.loads((out / "model.json").read_text())["files"] == {"ptl": "model.ptl"}
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["model.json", "model.ptl"]
    with pytest.raises(readers.MissingExportError):
        readers.require_export(run.parent, "mnist_small", "quick")
    assert readers.load_export(out)["parity"] is None


TINY_SPEC = {"name": "tiny", "stem": {"kernel": 3, "out": 8, "nl": "HS", "stride": 2},
             "blocks": [{"kernel": 3, "exp_size": 16, "out": 8, "se": True, "nl": "RE", "stride": 2}],
             "head": {"out": 16, "nl": "HS", "hidden": 32}}  # fmt: skip


def test_an_input_size_other_than_the_datasets_exports_int8_and_checks_parity(tmp_path):
    # Case 5: --input-size 32 crashed in the int8 path (the graph was calibrated, and so
    # specialised, at the dataset's 28 px: "Guard failed: x.size()[2] == 28"). A one-block
    # network of our own spec takes the same path as MobileNetV3 and lowers in seconds.
    from mnv3.train import main as train_main

    needs_export_extras()
    (tmp_path / "tiny.json").write_text(json.dumps(TINY_SPEC))
    run = train_main(["--experiment", "mnist_small", "--arch", str(tmp_path / "tiny.json"), "--name", "tiny", "--dataset", "synthetic",
                      "--epochs", "1", "--max-train-samples", "256", "--batch-size", "64", "--threads", "1", "--out", str(tmp_path)])
    summary = ex.export_run(run, tmp_path / "e32", formats="pte-int8", input_size=32, calibration_batches=2, calibration_batch_size=16,
                            parity_samples=16, eval_batch_size=1, threads=1, log=None)  # fmt: skip
    assert ex.PteRunner(summary["files"]["pte-int8"]).input_shape == (1, 1, 32, 32)
    assert summary["manifest"]["input"]["shape"] == [1, 1, 32, 32] and summary["manifest"]["model"]["trained_image_size"] == 28
    report = json.loads((tmp_path / "e32" / "parity.json").read_text())  # parity ran on test images resized to 32
    rows = {r["artefact"]: r for r in report["rows"]}
    assert set(rows) == {"eager", "pte-int8"} and report["test_images"] == 512 and rows["pte-int8"]["max_abs_logit_diff"] < 0.05


@pytest.mark.parametrize("argv, words", [
    (["--input-size", "5000"], "expected a positive integer up to 1024, got 5000"),
    (["--input-size", "0"], "expected a positive integer up to 1024, got 0"),
])  # fmt: skip
def test_input_sizes_out_of_bounds_are_refused_by_the_command_line(trained_run, capsys, argv, words):
    with pytest.raises(SystemExit) as refused:
        ex.main([str(trained_run), *argv])
    assert refused.value.code == 2 and words in capsys.readouterr().err


@pytest.mark.parametrize("name", DAMAGES)
def test_bad_records_are_refused_before_any_file_is_written(trained_run, tmp_path, capsys, name):
    damage, words = DAMAGES[name]
    run = damaged_copy(trained_run, tmp_path / "damaged", **damage)
    assert ex.main([str(run), "--formats", "pte", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_published_weights_with_a_bad_model_config_or_an_ema_are_refused(trained_run, tmp_path, capsys):
    from mnv3.publish import publish_run

    published = publish_run(trained_run, tmp_path / "published")
    meta = json.loads((published / "final.json").read_text())
    for bad, words in (({**meta, "ema": {"x": 1}}, "field 'ema' is not allowed"),
                       ({**meta, "model_config": {**meta["model_config"], "width_mult": -1}}, "'model_config.width_mult' is -1")):
        (published / "final.json").write_text(json.dumps(bad))
        assert ex.main([str(published), "--formats", "pte", "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err, err


def test_export_to_a_file_or_a_read_only_folder_is_one_line(trained_run, tmp_path, read_only_dir, capsys):
    (tmp_path / "a_file").write_text("x")
    for out, words in ((tmp_path / "a_file", "a file stands where the export folder would go"), (read_only_dir, str(read_only_dir))):
        assert ex.main([str(trained_run), "--formats", "ptl", "--skip-parity", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_a_run_on_a_dataset_this_export_cannot_load_is_one_line(trained_run, tmp_path, capsys):
    # An image-folder run (--dataset folder:PATH) whose folder and cache are gone: refused in one
    # line naming the folder, before any file is written.
    info = {"name": "folder:photos", "classes": [f"class {i}" for i in range(10)], "num_classes": 10, "in_channels": 1,
            "image_size": 28, "mean": [0.5], "std": [0.25],
            "folder": {"path": "no/such/photos", "cache": "folder-0000", "fingerprint": "0000", "requested_image_size": 28,
                       "skipped": [], "val_fraction": 0.1}}
    run = damaged_copy(trained_run, tmp_path / "run", config=lambda c: c.update(dataset="folder:no/such/photos", dataset_info=info))
    assert ex.main([str(run), "--formats", "pte", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "folder" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("latency_runs", [0, 2])
def test_the_console_table_says_not_timed_once(trained_run, tmp_path, latency_runs):
    # Every row ended in "— ms" when latency was off (the default), which looked like a failure.
    lines: list[str] = []
    ex.export_run(copy_run(trained_run, tmp_path / "run"), formats="ptl", threads=1, parity_samples=8,
                  latency_runs=latency_runs, log=lines.append)  # fmt: skip
    rows = [line for line in lines if "max|dlogit|" in line]
    assert [row.split()[0] for row in rows] == ["eager", "ptl"]
    assert not any("—" in row for row in rows)
    said = [line for line in lines if "not timed" in line]
    if latency_runs:
        assert not said and all(re.search(r"test acc \d\.\d{4}  \d+\.\d{3} ms$", row) for row in rows)
    else:
        assert len(said) == 1 and all(re.search(r"test acc \d\.\d{4}$", row) for row in rows)


def test_export_refuses_a_folder_holding_another_runs_export(trained_run, tmp_path, capsys):
    # The probe: run B exported with --out RUN_A/export deleted A's parity.json and rewrote model.json to name B.
    run_a, run_b = copy_run(trained_run, tmp_path / "a"), copy_run(trained_run, tmp_path / "b")
    args = ["--formats", "ptl", "--skip-parity", "--threads", "1"]
    assert ex.main([str(run_a), *args]) == 0
    before = {p.name: p.read_bytes() for p in (run_a / "export").iterdir()}
    capsys.readouterr()
    for out in (run_a / "export", tmp_path / "a" / "." / "export"):
        assert ex.main([str(run_b), *args, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert "holds the export of run" in err and str(run_b) in err and "a" in err.split("holds the export of run")[1], err
    assert {p.name: p.read_bytes() for p in (run_a / "export").iterdir()} == before
    # the same run into the same folder, again, and a run into its own default folder whatever it holds
    shared = tmp_path / "shared"
    assert ex.main([str(run_a), *args, "--out", str(shared)]) == 0
    assert ex.main([str(run_a), *args, "--out", str(shared)]) == 0
    assert ex.main([str(run_b), *args, "--out", str(shared)]) == 2
    shutil.copytree(run_a / "export", run_b / "export")
    assert ex.main([str(run_b), *args]) == 0
    assert json.loads((run_b / "export" / "model.json").read_text())["source_run"]["run_dir"].endswith("b")
