"""Smoke test of python -m mnv3.bench: the tiny configuration, every suite and every contender.

One run (module fixture, about a minute on two cores, mostly ExecuTorch lowering in two worker
processes) feeds every check: the JSON schema, a finite number from every contender, the same
weights everywhere (logits agree), the targets block, and what notebook 07 computes from them.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("executorch")
pytest.importorskip("onnxruntime")

from mnv3 import bench  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ENVIRONMENT_KEYS = {"cpu_model", "cpu_count", "usable_cores", "threads", "versions", "platform",
                    "date", "git_commit", "load_average_start", "load_average_end"}  # fmt: skip
RESULT_KEYS = {"contender", "setting", "arch", "resolution", "batch", "classes", "median_ms", "p90_ms", "n",
               "ratio_to_torchvision_eager", "paired_ratio_median", "paired_ratio_ci95", "times_ms", "error"}  # fmt: skip


def finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    messages: list[str] = []
    cfg = bench.tiny_config(out=out, runs_dir=None, cache_dir=None)
    written = bench.run(cfg, log=messages.append)
    data = {name: json.loads(path.read_text()) for name, path in written.items()}
    return {"out": out, "written": written, "data": data, "log": "\n".join(messages)}


def test_one_json_per_suite_with_the_common_environment(tiny):
    assert set(tiny["written"]) == {"inference", "training", "frontier"}
    for name, data in tiny["data"].items():
        assert data["schema"] == bench.SCHEMA and data["version"] == bench.SCHEMA_VERSION
        assert data["suite"] == name
        env = data["environment"]
        assert ENVIRONMENT_KEYS <= set(env), ENVIRONMENT_KEYS - set(env)
        assert env["cpu_model"] and env["cpu_count"] >= 1
        threads = bench.tiny_config().threads
        assert env["threads"]["requested"] == threads and env["threads"]["torch"] == threads
        assert env["threads"]["onnxruntime"] == threads and env["threads"]["executorch"] == threads
        for package in ("torch", "torchvision", "executorch", "onnxruntime", "python"):
            assert env["versions"][package], package
        assert data["config"]["profile"] == "tiny" and data["config"]["threads"] == threads
        assert data["targets_definition"] == bench.TARGETS


def test_every_contender_produced_a_number_at_every_setting(tiny):
    data = tiny["data"]["inference"]
    cfg = bench.tiny_config()
    expected = {(s, b, c) for s in cfg.settings for b in cfg.batches for c in bench.CONTENDERS}
    got = {(r["setting"], r["batch"], r["contender"]): r for r in data["results"]}
    assert set(got) == expected
    for key, r in got.items():
        assert RESULT_KEYS <= set(r), (key, RESULT_KEYS - set(r))
        assert r["error"] is None, (key, r["error"])
        assert finite(r["median_ms"]) and r["median_ms"] > 0, key
        assert finite(r["p90_ms"]) and r["p90_ms"] >= r["median_ms"] - 1e-9, key
        assert r["n"] == len(r["times_ms"]) >= cfg.min_rounds, key
        assert finite(r["ratio_to_torchvision_eager"]), key
        assert r["classes"] == 10 and r["resolution"] == 32
    for s in cfg.settings:
        for b in cfg.batches:
            assert got[(s, b, "torchvision_eager")]["ratio_to_torchvision_eager"] == 1.0
            # Round-robin: every contender was timed the same number of rounds.
            assert len({got[(s, b, c)]["n"] for c in bench.CONTENDERS}) == 1


def test_contenders_share_the_weights(tiny):
    for r in tiny["data"]["inference"]["results"]:
        scale = r["logit_scale"]
        assert scale > 0.1  # randomized weights: the comparison is not between near-zero logits
        diff = r["max_abs_diff_vs_torchvision"]
        if r["contender"] == "ours_eager":
            assert diff == 0.0  # from_torchvision: the same computation
        elif r["contender"] == "executorch_int8":
            assert diff < scale  # quantized, but the same network
        else:
            assert diff < 1e-3 * max(1.0, scale), (r["contender"], diff)


def test_exports_are_reported_and_delegated(tiny):
    exports = tiny["data"]["inference"]["exports"]
    formats = {(e["format"], e["batch"]) for e in exports}
    assert {("pte", 1), ("pte", 2), ("pte-int8", 1), ("pte-int8", 2), ("onnx", None), ("ptl", None)} <= formats
    for e in exports:
        assert e["error"] is None and e["size_bytes"] > 0 and finite(e["export_seconds"])
        if e["format"].startswith("pte"):
            assert e["fully_delegated"] is True, e


def test_targets_are_evaluated_not_asserted(tiny):
    targets = tiny["data"]["inference"]["targets"]
    kinds = {t["target"] for t in targets}
    assert any("1.05" in k for k in kinds) and any("3x" in k for k in kinds)
    for t in targets + tiny["data"]["training"]["targets"]:
        assert finite(t["value"]) and isinstance(t["met"], bool) and "note" in t
    assert "target MET" in tiny["log"] or "target NOT MET" in tiny["log"]


def test_training_compares_both_models(tiny):
    data = tiny["data"]["training"]
    rows = {r["contender"]: r for r in data["results"]}
    assert set(rows) == set(bench.TRAIN_CONTENDERS)
    for r in rows.values():
        assert finite(r["images_per_s"]) and r["images_per_s"] > 0
        assert finite(r["median_step_ms"]) and r["n"] >= 3 and r["device"] == "cpu"
        assert finite(r["final_loss"])
        assert r["in_channels"] == 1 and r["resolution"] == 28 and r["batch"] == 8
    assert rows["torchvision"]["ratio_to_torchvision"] == 1.0
    assert finite(rows["ours"]["ratio_to_torchvision"])
    assert len(data["targets"]) == 1


def test_frontier_has_every_width_with_latency_macs_and_params(tiny):
    rows = tiny["data"]["frontier"]["results"]
    assert [r["width"] for r in rows] == list(bench.tiny_config().widths)
    for r in rows:
        assert r["error"] is None and finite(r["median_ms"]) and r["n"] >= 3
        assert r["params"] > 0 and r["macs"] > 0 and r["accuracy"] == [] and r["paper"] is None
    assert rows[0]["params"] < rows[1]["params"] and rows[0]["macs"] < rows[1]["macs"]
    # width 1.0 is the inference setting's network: its program was exported once, not twice
    assert "exporting 7 file(s)" in tiny["log"]  # 6 for the inference setting, 1 for width 0.5


def test_frontier_reads_trained_runs(tmp_path):
    run = tmp_path / "mnist_small"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({
        "experiment": "mnist_small", "dataset": "mnist", "image_size": 28, "profile": "quick",
        "model": json.loads((REPO / "reports/full/runs/mnist_small/config.json").read_text())["model"],  # what train records
    }))  # fmt: skip
    (run / "test.json").write_text(json.dumps({"test_accuracy": 0.987, "epochs": 3}))
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "config.json").write_text("{}")
    runs = bench.find_trained_runs(tmp_path)
    assert runs == [{
        "experiment": "mnist_small", "run_dir": str(run), "arch": "small", "width": 1.0, "dataset": "mnist",
        "image_size": 28, "drop_first_strides": 0, "test_accuracy": 0.987, "epochs": 3, "profile": "quick",
    }]  # fmt: skip
    assert bench.find_trained_runs(tmp_path / "absent") == []


def test_environment_names_the_command_line(monkeypatch):
    import torch

    monkeypatch.setattr(sys, "argv", [str(REPO / "mnv3" / "bench" / "__main__.py"), "--tiny", "--out", "x"])
    env = bench.environment({"requested": 1}, "cpu")
    assert env["command"] == "python -m mnv3.bench --tiny --out x"
    assert env["versions"]["torch"] == torch.__version__ and list(env["versions"])[:2] == ["python", "torch"]
    monkeypatch.setattr(sys, "argv", ["pytest", "-q"])
    assert bench.environment({"requested": 1})["command"] is None


def test_threads_are_pinned_in_every_runtime():
    import torch

    before = torch.get_num_threads()
    try:
        counts = bench.set_threads(2)
        assert counts["torch"] == 2 and counts["executorch"] == 2 and counts["onnxruntime"] == 2
        counts = bench.set_threads(1)
        assert counts["torch"] == 1 and counts["executorch"] == 1
    finally:
        torch.set_num_threads(before)


def test_notebook_07_computes_its_tables_and_figures_from_the_results(tiny):
    # What notebook 07 calls, in its order, on the files this run wrote (make reports renders it).
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = bench.load_results(tiny["out"])
    assert results["training_gpu"] is None and all(results[k] for k in ("inference", "training", "frontier"))
    env = bench.environment_frame({k: v for k, v in results.items() if v})
    assert list(env.columns) == ["inference", "training", "frontier"] and env.loc["profile", "inference"] == "tiny"
    checks = bench.target_checks(results)
    assert len(checks) == len(results["inference"]["targets"]) + len(results["training"]["targets"])
    assert all(s.endswith((": met", ": undecided", "NOT met")) for s in checks["statement"])
    assert set(checks["verdict"]) <= {"met", "not met", "undecided"}
    assert len(bench.target_summary(results)) == checks["target"].nunique()
    pivot = bench.inference_pivot(results["inference"], "median_ms")
    assert list(pivot.columns) == [bench.CONTENDER_LABELS[c] for c in bench.CONTENDERS]
    assert list(pivot.index) == [("tiny", 1), ("tiny", 2)] and pivot.notna().all().all()
    assert len(bench.inference_frame(results["inference"])) == len(results["inference"]["results"])
    assert len(bench.training_frame(results["training"], None)) == 2
    assert list(bench.frontier_frame(results["frontier"])["width"]) == list(bench.tiny_config().widths)
    figures = [bench.plot_inference(results["inference"]), bench.plot_latency_distributions(results["inference"], batch=1),
               bench.plot_training(results["training"], None)]  # fmt: skip
    assert [len(f.axes) for f in figures] == [2, 1, 2]  # a panel per batch, per setting; throughput and ratio
    frontier = bench.plot_frontier(bench.frontier_paper_only(results["frontier"]))
    assert len(frontier.axes) == 2  # tiny widths: no paper accuracy and no trained run, so no accuracy panel
    for fig in [*figures, frontier]:
        plt.close(fig)


def test_export_cache_key_follows_the_export_code(tmp_path):
    from mnv3.bench.artefacts import _export_versions

    for name in ("layers.py", "model.py"):
        (tmp_path / name).write_text(f"# {name}\n")
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "__init__.py").write_text("")
    (tmp_path / "export" / "pte.py").write_text("B = 1\n")
    package = _export_versions(tmp_path)["mnv3_code"]
    assert package == _export_versions(tmp_path)["mnv3_code"] and len(package) == 16
    (tmp_path / "export" / "pte.py").write_text("B = 2\n")
    edited = _export_versions(tmp_path)["mnv3_code"]
    assert edited != package
    (tmp_path / "export" / "pte.py").rename(tmp_path / "export" / "ptl.py")  # same code in another file
    assert _export_versions(tmp_path)["mnv3_code"] != edited
    (tmp_path / "model.py").write_text("# changed\n")
    assert len({package, edited, _export_versions(tmp_path)["mnv3_code"]}) == 3


def test_export_cache_key_of_this_checkout_hashes_export_layers_and_model():
    import hashlib

    from mnv3.bench.artefacts import _export_sources, _export_versions

    package = REPO / "mnv3"
    sources = _export_sources(package)
    assert sources[-2:] == [package / "layers.py", package / "model.py"] and all(p.is_file() for p in sources)
    if not (package / "export").is_dir():  # the single-module layout: the same key as before the package split
        code = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:16]
        assert _export_versions()["mnv3_code"] == code


def test_help_teaches_and_bad_arguments_fail_cleanly(tmp_path):
    out = subprocess.run([sys.executable, "-m", "mnv3.bench", "--help"], capture_output=True, text=True, cwd=REPO, check=True).stdout
    for word in ("--suite", "--threads", "--repeats", "--warmup", "--quick", "--tiny", "--runs-dir", "round-robin",
                 "torchvision eager", "ExecuTorch", "ONNX Runtime", "lite interpreter", "1.05", "training_gpu.json"):
        assert word in out, word
    assert bench.main(["--suite", "latency", "--out", str(tmp_path)]) == 2
    assert bench.main(["--settings", "huge@224", "--out", str(tmp_path)]) == 2
    assert not list(tmp_path.glob("*.json"))


def test_config_json_holds_no_absolute_cache_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    inside = bench.BenchConfig(cache_dir=tmp_path / "cache" / "bench").to_json()
    assert inside["cache_dir"] == "cache/bench"
    outside = bench.BenchConfig(cache_dir=tmp_path.parent / "elsewhere").to_json()
    assert "cache_dir" not in outside and str(tmp_path.parent) not in json.dumps(outside)
    for committed in sorted((REPO / "reports" / "bench").glob("*.json")):
        text = committed.read_text()
        assert str(REPO) not in text and "/tmp/" not in text, committed.name
        config = json.loads(text).get("config", {})  # imagefolder.json has no BenchConfig
        assert not Path(config.get("cache_dir", "")).is_absolute(), committed.name


def test_frontier_names_a_run_whose_records_are_damaged(tmp_path, capsys):
    run = tmp_path / "mnist_small"
    run.mkdir()
    (run / "config.json").write_text((REPO / "reports/full/runs/mnist_small/config.json").read_text())
    (run / "test.json").write_text(json.dumps({"test_accuracy": "98.7%"}))
    assert bench.find_trained_runs(tmp_path) == []
    assert "test.json: field 'test_accuracy' is \"98.7%\"" in capsys.readouterr().err


def test_an_interval_that_contains_the_threshold_is_undecided_on_either_side():
    # Issue 27: both were undecided, yet the first was called MET and the second NOT MET.
    from mnv3.bench.formatting import target_line

    eager = {"setting": "small@224", "batch": 32, "contender": "ours_eager", "median_ms": 10.0,
             "ratio_to_torchvision_eager": 0.961, "paired_ratio_ci95": [0.934, 1.111]}  # fmt: skip
    training = {"setting": "cifar10_small_s1", "batch": 128, "device": "cpu", "contender": "ours",
                "ratio_to_torchvision": 0.941, "paired_ratio_ci95": [0.902, 1.013]}  # fmt: skip
    (latency,) = bench.inference_targets([eager])
    (throughput,) = bench.training_targets([training])
    assert latency["met"] and not throughput["met"]  # the point estimates fall on either side
    assert latency["verdict"] == throughput["verdict"] == "undecided"
    for t, (lo, hi), threshold in ((latency, eager["paired_ratio_ci95"], "1.05"), (throughput, training["paired_ratio_ci95"], "1")):
        line = target_line(t)
        assert line.startswith("target UNDECIDED: ") and "MET" not in line
        assert f"95% interval [{lo:.3f}, {hi:.3f}]" in line
        assert f"which contains {threshold}: the difference is within this machine's noise" in line
    # outside the interval the verdict follows the value, in the same words for both targets
    clear = bench.inference_targets([{**eager, "ratio_to_torchvision_eager": 1.2, "paired_ratio_ci95": [1.15, 1.25]}])[0]
    fast = bench.training_targets([{**training, "ratio_to_torchvision": 1.1, "paired_ratio_ci95": [1.05, 1.15]}])[0]
    assert target_line(clear).startswith("target NOT MET: ") and "entirely above 1.05" in target_line(clear)
    assert target_line(fast).startswith("target MET: ") and "entirely above 1" in target_line(fast)
    # notebook 07 words them alike too, also for files written before the verdict field
    checks = bench.target_checks({"inference": {"targets": [{k: v for k, v in latency.items() if k != "verdict"}]},
                                  "training": {"targets": [throughput]}})  # fmt: skip
    assert list(checks["verdict"]) == ["undecided", "undecided"]
    assert list(checks["statement"]) == ["0.961, its 95% interval contains 1.05: undecided", "0.941, its 95% interval contains 1: undecided"]

