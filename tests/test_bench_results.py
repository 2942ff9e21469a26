"""What notebook 07 shows beside the benchmark files: the frontier plot with the paper's accuracy
only, and the trained runs' own accuracies read from their run folders (mnv3.bench.results)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mnv3.bench.plots import label_frontier_accuracy_axis, plot_frontier
from mnv3.bench.results import frontier_paper_only, trained_runs_at_widths

FRONTIER = {"results": [
    {"arch": "small", "width": 1.0, "median_ms": 2.0, "accuracy": [{"experiment": "mnist_small", "dataset": "mnist",
                                                                     "test_accuracy": 0.42}], "paper": {"top1": 67.4}},
    {"arch": "large", "width": 1.0, "median_ms": 5.0, "accuracy": [], "paper": {"top1": 75.2}},
]}  # fmt: skip


# The model configs mnv3.train records for these datasets (Small, 10 classes; 1 or 3 channels).
COMMITTED = Path(__file__).resolve().parents[1] / "reports" / "full" / "runs"
MODELS = {d: json.loads((COMMITTED / run / "config.json").read_text())["model"] for d, run in (("mnist", "mnist_small"), ("cifar10", "cifar10_small_s2"))}


def fake_run(root: Path, name: str, *, finished: bool, dataset: str = "cifar10", mirror: bool = False) -> Path:
    """A run folder as mnv3.train leaves it: config.json, and test.json once finished."""
    run = root / name
    run.mkdir(parents=True)
    config = {"experiment": name, "dataset": dataset, "image_size": 32, "fields": {"epochs": 1, "arch": "small", "width_mult": 1.0},
              "model": MODELS[dataset]}
    if mirror:
        config["data_mirror"] = "../shared/datasets"
    (run / "config.json").write_text(json.dumps(config))
    if finished:
        (run / "test.json").write_text(json.dumps({"test_accuracy": 0.5, "epochs": 1}))
    return run


def test_benchmark_page_keeps_one_dataset_per_accuracy_axis(tmp_path):
    shown = frontier_paper_only(FRONTIER)
    assert [r["accuracy"] for r in shown["results"]] == [[], []] and FRONTIER["results"][0]["accuracy"]  # a copy
    assert [r["paper"] for r in shown["results"]] == [{"top1": 67.4}, {"top1": 75.2}]
    # the runs' accuracies come from the run folders (the index's source), not the benchmark file
    fake_run(tmp_path, "mnist_small", finished=True, dataset="mnist")
    fake_run(tmp_path, "cifar10_small_s1", finished=False)
    fake_run(tmp_path, "cifar10_large_s1", finished=True, mirror=True)
    table = trained_runs_at_widths(tmp_path, FRONTIER)
    assert list(table.index) == ["mnist_small", "cifar10_large_s1"]  # the unfinished run has no accuracy to list
    assert table.loc["mnist_small", "test accuracy"] == "50.00%"  # test.json's, not the file's 42%
    assert table.loc["mnist_small", "dataset"] == "MNIST" and table.loc["cifar10_large_s1", "dataset"] == "CIFAR-10 (JPEG mirror)"
    assert table.loc["mnist_small", "ExecuTorch fp32 latency, 224x224 model (ms)"] == 2.0
    assert table.loc["mnist_small", "input"] == "32x32" and table.loc["mnist_small", "width"] == 1.0
    assert trained_runs_at_widths(tmp_path / "absent", FRONTIER).empty


def test_frontier_accuracy_axis_names_the_papers_dataset():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [dict(r, params=1e6 * (i + 1), macs=5e7 * (i + 1), resolution=224, p90_ms=r["median_ms"]) for i, r in enumerate(FRONTIER["results"])]
    fig = plot_frontier(frontier_paper_only({"results": rows}))
    label_frontier_accuracy_axis(fig)
    assert fig.axes[2].get_ylabel() == "ImageNet top-1 accuracy (%), the paper's Table 3"
    two = plot_frontier({"results": [dict(r, paper=None, accuracy=[]) for r in rows]})
    label_frontier_accuracy_axis(two)  # no accuracy panel: nothing to name
    assert len(two.axes) == 2 and "accuracy" not in two.axes[1].get_ylabel()
    plt.close(fig)
    plt.close(two)
