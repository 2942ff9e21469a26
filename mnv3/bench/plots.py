"""Notebook 07's figures: latency relative to torchvision, per-call distributions, training
throughput and the accuracy-latency frontier (matplotlib; each function returns its figure)."""
from __future__ import annotations

from typing import Any, Mapping

from .config import CONTENDER_LABELS, CONTENDERS, TRAIN_CONTENDERS


SHORT_LABELS = {
    "torchvision_eager": "torchvision\neager",
    "ours_eager": "mnv3\neager",
    "executorch_fp32": "ET\nfp32",
    "executorch_int8": "ET\nint8",
    "onnxruntime": "ONNX\nRuntime",
    # (ET: ExecuTorch)
    "lite_interpreter": "lite\ninterp.",
}


def _log_axis(axis, values) -> None:
    """Readable log-scale ticks (0.1, 0.2, 0.5, 1, 2, 5, ...) with plain numbers."""
    import matplotlib.ticker as mticker

    axis.set_major_locator(mticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(mticker.NullFormatter())


def plot_inference(data: Mapping[str, Any]):
    """Latency of every contender relative to torchvision eager (log scale), one panel per batch size."""
    import matplotlib.pyplot as plt
    import numpy as np

    results = [r for r in data["results"] if r["median_ms"] is not None]
    batches = sorted({r["batch"] for r in results})
    settings = list(dict.fromkeys(r["setting"] for r in results))
    fig, axes = plt.subplots(1, len(batches), figsize=(6.8 * len(batches), 1.6 + 1.05 * len(settings)), squeeze=False)
    height = 0.8 / len(CONTENDERS)
    for ax, batch in zip(axes[0], batches):
        for i, contender in enumerate(CONTENDERS):
            ys, values = [], []
            for j, s in enumerate(settings):
                r = next((r for r in results if r["setting"] == s and r["batch"] == batch and r["contender"] == contender), None)
                if r is not None:
                    ys.append(j + i * height)
                    values.append(r["ratio_to_torchvision_eager"])
            ax.barh(ys, values, height, label=CONTENDER_LABELS[contender], color=f"C{i}")
            for y, v in zip(ys, values):
                ax.text(v * 1.03, y, f"{v:.2f}", va="center", fontsize=6.5)
        ax.axvline(1.0, color="k", lw=0.8)
        ax.set_xscale("log")
        _log_axis(ax.xaxis, None)
        ax.set_xlim(right=ax.get_xlim()[1] * 1.25)
        ax.set_yticks(np.arange(len(settings)) + 0.4 - height / 2, settings)
        ax.invert_yaxis()
        ax.set(xlabel="latency / torchvision eager (median; log scale; < 1 is faster)", title=f"batch {batch}")
        ax.grid(axis="x", which="major", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle("CPU inference latency relative to torchvision eager")
    fig.tight_layout(rect=(0, 0.09, 1, 1))
    return fig


def plot_latency_distributions(data: Mapping[str, Any], batch: int = 1):
    """Per-call times of every contender (box plots), one panel per setting, at ``batch``."""
    import matplotlib.pyplot as plt

    results = [r for r in data["results"] if r["batch"] == batch and r["times_ms"]]
    settings = list(dict.fromkeys(r["setting"] for r in results))
    if not settings:
        return None
    fig, axes = plt.subplots(1, len(settings), figsize=(3.9 * len(settings), 3.8), squeeze=False)
    for ax, s in zip(axes[0], settings):
        rows = [r for r in results if r["setting"] == s]
        ax.boxplot([r["times_ms"] for r in rows], whis=(10, 90), flierprops={"markersize": 3})
        ax.set_xticks(range(1, len(rows) + 1), [SHORT_LABELS.get(r["contender"], r["contender"]) for r in rows], fontsize=7)
        ax.set_yscale("log")
        _log_axis(ax.yaxis, None)
        ax.set(title=f"{s}, batch {batch}", ylabel="ms per call (log)")
        ax.grid(axis="y", which="major", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_training(*datas: Mapping[str, Any] | None):
    """Left: training images/s of torchvision and mnv3 per setting (log scale). Right: mnv3's
    throughput over torchvision's, the median of the per-round ratios with its 95% interval."""
    import matplotlib.pyplot as plt
    import numpy as np

    rows = [r for data in datas for r in (data or {}).get("results", [])]
    if not rows:
        return None
    groups = list(dict.fromkeys((r["setting"], r["device"]) for r in rows))
    fig, (ax, ax_ratio) = plt.subplots(1, 2, figsize=(11, 1.2 + 0.75 * len(groups)), gridspec_kw={"width_ratios": [3, 2]})
    for i, model in enumerate(TRAIN_CONTENDERS):
        values = [next((r["images_per_s"] for r in rows if (r["setting"], r["device"]) == g and r["contender"] == model), np.nan) for g in groups]
        ys = np.arange(len(groups)) + 0.4 * i
        ax.barh(ys, values, 0.4, label="torchvision" if model == "torchvision" else "mnv3", color=f"C{i}")
        for y, v in zip(ys, values):
            ax.text(v * 1.03, y, f"{v:.0f}", va="center", fontsize=7)
    ax.set_xscale("log")
    _log_axis(ax.xaxis, None)
    ax.set_xlim(right=ax.get_xlim()[1] * 1.5)
    ax.set_yticks(np.arange(len(groups)) + 0.2, [f"{s}\n{d}" for s, d in groups], fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel="training images / s (median step; log scale)", title="throughput, steps alternating")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8)
    for k, g in enumerate(groups):
        r = next((r for r in rows if (r["setting"], r["device"]) == g and r["contender"] == "ours"), None)
        if r is None or r.get("paired_ratio_median") is None:
            continue
        lo, hi = r["paired_ratio_ci95"]
        med = r["paired_ratio_median"]
        ax_ratio.errorbar(med, k, xerr=[[med - lo], [hi - med]], fmt="o", color="C1", capsize=4,
                          label="per-round ratios: median, 95% interval" if k == 0 else None)  # fmt: skip
        ax_ratio.plot(r["ratio_to_torchvision"], k, "kx", label="ratio of the medians (the target's value)" if k == 0 else None)
        ax_ratio.text(max(hi, r["ratio_to_torchvision"]), k - 0.25, f" {r['ratio_to_torchvision']:.3f}", fontsize=8)
    ax_ratio.axvline(1.0, color="k", lw=0.8)
    ax_ratio.set_yticks(range(len(groups)), ["" for _ in groups])
    ax_ratio.set_ylim(len(groups) - 0.5, -0.5)
    ax_ratio.set(xlabel="mnv3 / torchvision images/s", title="ratio (target: at least 1)")
    ax_ratio.grid(axis="x", alpha=0.3)
    ax_ratio.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.25 - 0.1 / max(1, len(groups))), frameon=False)
    fig.tight_layout()
    return fig


ARCH_COLORS = {"small": "C0", "large": "C3", "tiny": "C2"}


def plot_frontier(data: Mapping[str, Any]):
    """Latency against MACs and against parameters (log-log), a line per arch through its widths;
    and accuracy against latency: the paper's ImageNet top-1 where Table 3 has it, and every
    trained run of the same arch and width."""
    import matplotlib.pyplot as plt

    results = [r for r in data["results"] if r["median_ms"] is not None]
    with_accuracy = any(r["accuracy"] or r.get("paper") for r in results)
    panels = 3 if with_accuracy else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.4 * panels, 4.5))
    archs = list(dict.fromkeys(r["arch"] for r in results))
    res = results[0]["resolution"] if results else "?"
    mac_res = results[0].get("mac_resolution", 224) if results else 224
    for ax, key, label in ((axes[0], "macs", f"MACs (millions, {mac_res}x{mac_res}; log)"), (axes[1], "params", "parameters (millions; log)")):
        for arch in archs:
            pts = sorted((r for r in results if r["arch"] == arch), key=lambda r: r["width"])
            xs, ys = [r[key] / 1e6 for r in pts], [r["median_ms"] for r in pts]
            ax.plot(xs, ys, "-o", color=ARCH_COLORS.get(arch, "C4"), label=f"MobileNetV3-{arch.capitalize()}")
            for r, x_, y_ in zip(pts, xs, ys):
                ax.annotate(f"{r['width']:g}", (x_, y_), textcoords="offset points", xytext=(5, -11), fontsize=8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        _log_axis(ax.xaxis, None)
        _log_axis(ax.yaxis, None)
        ax.set(xlabel=label, ylabel=f"ExecuTorch fp32 latency, batch 1, {res}px (ms; log)")
        ax.grid(which="major", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    axes[0].set_title("latency against MACs (labels: width multiplier)")
    axes[1].set_title("latency against parameters")
    if with_accuracy:
        ax = axes[2]
        markers = {"mnist": "s", "cifar10": "^", "cifar100": "v", "fashion_mnist": "D", "kmnist": "P", "synthetic": "x"}
        for arch in archs:
            color = ARCH_COLORS.get(arch, "C4")
            paper = sorted((r for r in results if r["arch"] == arch and r.get("paper")), key=lambda r: r["width"])
            if paper:
                ax.plot([r["median_ms"] for r in paper], [r["paper"]["top1"] for r in paper], "--o", mfc="none", color=color,
                        label=f"{arch.capitalize()}: paper, ImageNet top-1 (Table 3)")  # fmt: skip
                for r in paper:
                    ax.annotate(f"{r['width']:g}", (r["median_ms"], r["paper"]["top1"]), textcoords="offset points", xytext=(5, -11), fontsize=8)
            for r in results:
                if r["arch"] != arch:
                    continue
                for a in r["accuracy"]:
                    ax.plot(r["median_ms"], 100 * a["test_accuracy"], markers.get(a["dataset"], "o"), color=color, ms=8)
                    ax.annotate(f"{a['experiment']}", (r["median_ms"], 100 * a["test_accuracy"]),
                                textcoords="offset points", xytext=(-4, 6), fontsize=7, ha="right")  # fmt: skip
        ax.set_xscale("log")
        _log_axis(ax.xaxis, None)
        lo, hi = ax.get_xlim()
        ax.set_xlim(lo / 1.3, hi * 1.3)
        ax.set(xlabel=f"ExecuTorch fp32 latency at {res}px, this CPU (ms; log)", ylabel="top-1 accuracy (%)",
               title="accuracy against latency (filled: trained runs)")  # fmt: skip
        ax.grid(which="major", alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1, frameon=False)
    fig.tight_layout()
    return fig


def label_frontier_accuracy_axis(fig) -> None:
    """Name the dataset of :func:`plot_frontier`'s accuracy panel (its third axes, drawn when some
    row has an accuracy): the paper's ImageNet top-1, for a figure of :func:`frontier_paper_only`'s
    copy. A figure with fewer axes is left as it is."""
    if len(fig.axes) >= 3:
        ax = fig.axes[2]
        ax.set_ylabel("ImageNet top-1 accuracy (%), the paper's Table 3")
        ax.set_title("the paper's ImageNet accuracy against latency here")
