"""The search's files read back for notebook 08: the trajectory, the latency model's errors, the
spec found against the paper's, and the comparison with the width multipliers.

Everything here reads what :mod:`mnv3.search.netadapt` (``search.jsonl``, ``searched.json``),
:mod:`mnv3.search.validation` (``latency-validation.json``) and :mod:`mnv3.search.compare`
(``comparison.json``) wrote into one search folder, and draws it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..spec import ModelSpec, load_spec
from .netadapt import read_log

__all__ = ["MissingSearchError", "load_search", "environment_frame", "sessions_frame", "width_dependence", "validation_summary",
           "model_frame", "proposals_frame", "steps_frame", "spec_table", "spec_note", "plot_trajectory",
           "plot_predicted_vs_measured", "plot_frontier", "comparison_summary", "runs_frame"]  # fmt: skip


class MissingSearchError(FileNotFoundError):
    """The search folder lacks the file a section needs; the message names the command that makes it."""


def load_search(search_dir: str | Path) -> dict[str, Any]:
    """One search folder: {"dir", "start" (the log's first record), "records", "spec" (the searched
    ModelSpec or None), "validation" and "comparison" (their JSON, or None)}. Raises
    MissingSearchError when there is no ``search.jsonl``."""
    folder = Path(search_dir)
    records = read_log(folder / "search.jsonl")
    if not records:
        raise MissingSearchError(f"{folder}/search.jsonl: no search there; run `make search` (python -m mnv3.search)")

    def read(name: str) -> dict[str, Any] | None:
        path = folder / name
        return json.loads(path.read_text()) if path.is_file() else None

    spec = load_spec(folder / "searched.json") if (folder / "searched.json").is_file() else None
    latency = read("latency.json") or read("latency/latency.json")
    return {"dir": folder, "start": records[0], "records": records, "spec": spec, "latency": latency,
            "validation": read("latency-validation.json"), "comparison": read("comparison.json")}  # fmt: skip


def environment_frame(search: dict[str, Any]):
    """Where the latencies were measured: CPU, ExecuTorch version, runtime threads, input, and the
    search's git commit and start time, as a one-column DataFrame."""
    import pandas as pd

    key = (search["latency"] or {}).get("key") or (search["validation"] or {}).get("key") or {}
    start = search["start"]
    rows = {"CPU": key.get("cpu"), "ExecuTorch": key.get("executorch"), "runtime threads": key.get("threads"),
            "input": f"{key.get('in_channels')}x{key.get('input_size')}x{key.get('input_size')}, batch 1",
            "drop_first_strides": key.get("drop_first_strides"), "seed run": start.get("run_dir"),
            "search started": start.get("time"), "git commit": start.get("git_commit")}  # fmt: skip
    return pd.DataFrame({"value": rows})


def sessions_frame(search: dict[str, Any]):
    """Every timing session: why, when, rounds, the seed's median (ms) and the cores other
    processes used meanwhile (:class:`mnv3.bench.machine.CpuMeter`)."""
    import pandas as pd

    sessions = (search["latency"] or {}).get("sessions", [])
    return pd.DataFrame([{k: s.get(k) for k in ("why", "time", "rounds", "reference_median_ms", "other_cores", "seconds")}
                         for s in sessions])  # fmt: skip


def width_dependence(search: dict[str, Any]) -> dict[str, Any] | None:
    """The seed's spec at the comparison's widths: {"table" (width, MACs in millions, measured ms),
    "floor_ms" (the intercept of a least-squares line of latency over MACs), "share" (the part of
    the seed's latency above that floor), "sentence"}; None before the comparison ran."""
    import numpy as np
    import pandas as pd

    from ..model import MobileNetV3
    from ..spec import spec_from_dict
    from ..summary import summarize, totals
    from .compare import spec_at_width

    comparison = search["comparison"]
    if comparison is None:
        return None
    setting = search["start"]["setting"]
    seed_spec = spec_from_dict(search["latency"]["reference"])
    rows = []
    for name, timing in comparison["timing"]["programs"].items():
        if name.startswith("width "):
            width = float(name.split()[1])
            model = MobileNetV3(spec_at_width(seed_spec, width), num_classes=setting["num_classes"], in_channels=setting["in_channels"],
                                drop_first_strides=setting["drop_first_strides"])  # fmt: skip
            macs = totals(summarize(model, setting["input_size"]))["macs"] / 1e6
            rows.append({"width": width, "MACs (M)": macs, "latency (ms)": timing["median_ms"]})
    table = pd.DataFrame(rows).sort_values("width").set_index("width")
    slope, floor = np.polyfit(table["MACs (M)"], table["latency (ms)"], 1)
    full = float(table["latency (ms)"].iloc[-1])
    share = 1 - floor / full
    sentence = (f"A straight line through these points meets zero multiply-adds at **{floor:.3f} ms**: that floor does not "
                f"depend on width. At width {table.index[-1]:g} ({full:.3f} ms) **{100 * share:.0f}%** of the latency "
                f"is above it, {1000 * slope:.2f} µs per million multiply-adds: that is what a search over widths can cut.")
    return {"table": table, "floor_ms": float(floor), "share": float(share), "sentence": sentence}


def validation_summary(search: dict[str, Any]) -> str:
    """The latency model's two numbers against their goals, as Markdown."""
    v = search["validation"]
    if v is None:
        return "No validation yet: `python -m mnv3.search latency` fits and validates the model."
    mape_ok = v["mape_percent"] <= v["goals"]["mape_percent"]
    rho_ok = v["spearman_cuts"] >= v["goals"]["spearman_cuts"]
    return (f"Fitted on {v['fit_specs']} random specs (and the seed); on {len(v['held_out'])} held-out specs the mean absolute "
            f"percentage error is **{v['mape_percent']:.2f}%** (goal at most {v['goals']['mape_percent']:g}%: "
            f"{'met' if mape_ok else 'missed'}); on the seed's {len(v['cuts'])} single-layer cuts Spearman's rank "
            f"correlation of predicted against measured cuts is **{v['spearman_cuts']:.3f}** (goal at least "
            f"{v['goals']['spearman_cuts']:g}: {'met' if rho_ok else 'missed'}).")


def model_frame(search: dict[str, Any]):
    """The validated latency model's coefficients: the intercept (ms) and ms per million of each feature."""
    import pandas as pd

    v = search["validation"]
    if v is None:
        return pd.DataFrame()
    model = v["model"]
    rows = {"intercept (ms)": model["intercept_ms"], **{f"{k} (ms per million)": c for k, c in model["coef_ms_per_million"].items()}}
    return pd.DataFrame({"coefficient": rows})


def proposals_frame(search: dict[str, Any]):
    """Every proposal as a DataFrame row: step, kind, label, from, channels, predicted_ms,
    proxy_accuracy, score, chosen (bool)."""
    import pandas as pd

    chosen = {(r["step"], r["label"]) for r in search["records"] if r["type"] == "step"}
    rows = [{**{k: r[k] for k in ("step", "kind", "label", "from", "channels", "predicted_ms", "proxy_accuracy", "score")},
             "chosen": (r["step"], r["label"]) in chosen} for r in search["records"] if r["type"] == "proposal"]  # fmt: skip
    return pd.DataFrame(rows)


def steps_frame(search: dict[str, Any]):
    """One row per step (step 0 is the seed): label, predicted_ms, measured_ms, proxy_accuracy,
    seconds."""
    import pandas as pd

    start = search["start"]
    first = next((r for r in search["records"] if r["type"] == "proposal"), None)
    rows = [{"step": 0, "label": "seed", "predicted_ms": None, "measured_ms": start["seed_ms"],
             "proxy_accuracy": first["parent_accuracy"] if first else None, "seconds": None}]  # fmt: skip
    rows += [{k: r.get(k) for k in ("step", "label", "predicted_ms", "measured_ms", "proxy_accuracy", "seconds")}
             for r in search["records"] if r["type"] == "step"]  # fmt: skip
    return pd.DataFrame(rows).set_index("step")


def spec_table(searched: ModelSpec, paper: ModelSpec | str = "small"):
    """The searched spec row by row against the paper's table: kernel, SE, NL, stride, and
    exp_size and out as "paper -> searched" where they changed."""
    import pandas as pd

    paper = load_spec(paper) if isinstance(paper, str) else paper

    def cell(a: int, b: int) -> str:
        return str(a) if a == b else f"{a} -> {b}"

    rows = [{"row": "stem", "kernel": paper.stem.kernel, "exp size": "-", "out": cell(paper.stem.out, searched.stem.out),
             "SE": "-", "NL": paper.stem.nl, "stride": paper.stem.stride}]  # fmt: skip
    for i, (p, s) in enumerate(zip(paper.blocks, searched.blocks)):
        rows.append({"row": f"block {i}", "kernel": p.kernel, "exp size": cell(p.exp_size, s.exp_size), "out": cell(p.out, s.out),
                     "SE": "yes" if p.se else "", "NL": p.nl, "stride": p.stride})  # fmt: skip
    return pd.DataFrame(rows).set_index("row")


def spec_note(search: dict[str, Any]) -> str:
    """The searched spec's notes (where it came from) and its parameters and MACs against the
    seed's, as Markdown."""
    import json

    from ..model import MobileNetV3
    from ..spec import spec_from_dict
    from ..summary import summarize, totals

    setting = search["start"]["setting"]
    data = json.loads((search["dir"] / "searched.json").read_text())
    seed = spec_from_dict(search["latency"]["reference"]) if search["latency"] else load_spec("small")

    def size(spec):
        model = MobileNetV3(spec, num_classes=setting["num_classes"], in_channels=setting["in_channels"],
                            drop_first_strides=setting["drop_first_strides"])  # fmt: skip
        t = totals(summarize(model, setting["input_size"]))
        return t["params"], t["macs"]

    (p0, m0), (p1, m1) = size(seed), size(search["spec"])
    return (f"{data['notes']}\n\nParameters {p1:,} against the seed's {p0:,} ({p1 / p0:.2f}x); multiply-adds per image "
            f"{m1 / 1e6:.2f}M against {m0 / 1e6:.2f}M ({m1 / m0:.2f}x) at {setting['input_size']}x{setting['input_size']}.")


def plot_trajectory(search: dict[str, Any]):
    """Latency (predicted, ms) against proxy accuracy: every proposal faint, coloured by step;
    the chosen path drawn through the steps' measured latencies."""
    import matplotlib.pyplot as plt

    proposals, steps = proposals_frame(search), steps_frame(search)
    fig, ax = plt.subplots(figsize=(8, 5))
    for step, group in proposals.groupby("step"):
        ax.scatter(group["predicted_ms"], 100 * group["proxy_accuracy"], s=18, alpha=0.25, color=f"C{(step - 1) % 10}",
                   label=f"step {step} proposals")  # fmt: skip
    ax.plot(steps["measured_ms"], 100 * steps["proxy_accuracy"], "-o", color="k", label="chosen (measured latency)")
    for step, row in steps.iterrows():
        ax.annotate(str(row["label"]), (row["measured_ms"], 100 * row["proxy_accuracy"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.axvline(search["start"]["target_ms"], color="C3", ls="--", lw=1, label="target")
    ax.set(xlabel="latency (ms, ExecuTorch fp32, 1 thread)", ylabel="proxy accuracy (%, validation slice)",
           title="NetAdapt trajectory: faint dots are the proposals each step weighed")  # fmt: skip
    ax.invert_xaxis()
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def plot_predicted_vs_measured(search: dict[str, Any]):
    """Predicted against measured latency: the held-out specs of the validation (left) and the
    latency cuts of the seed's single-layer proposals (right), each with the identity line; the
    search's steps are added on the left."""
    import matplotlib.pyplot as plt

    validation = search["validation"]
    if validation is None:
        raise MissingSearchError(f"{search['dir']}/latency-validation.json: run python -m mnv3.search latency")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    held = validation["held_out"]
    left.scatter([r["measured_ms"] for r in held], [r["predicted_ms"] for r in held], label="held-out random specs")
    steps = [r for r in search["records"] if r["type"] == "step"]
    if steps:
        left.scatter([r["measured_ms"] for r in steps], [r["predicted_ms"] for r in steps], marker="x", label="search steps (before refit)")
    cuts = validation["cuts"]
    right.scatter([r["measured_cut_ms"] for r in cuts], [r["predicted_cut_ms"] for r in cuts], color="C2")
    for ax, title in ((left, f"latency: MAPE {validation['mape_percent']:.2f}% (goal <= {validation['goals']['mape_percent']:g}%)"),
                      (right, f"cuts of single-layer proposals: Spearman {validation['spearman_cuts']:.3f} "
                              f"(goal >= {validation['goals']['spearman_cuts']:g})")):  # fmt: skip
        lo, hi = (min(ax.get_xlim()[0], ax.get_ylim()[0]), max(ax.get_xlim()[1], ax.get_ylim()[1]))
        ax.plot([lo, hi], [lo, hi], color="grey", lw=1)
        ax.set(xlabel="measured (ms)", ylabel="predicted (ms)", title=title)
        ax.grid(alpha=0.3)
    left.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_frontier(search: dict[str, Any]):
    """Test accuracy against measured latency: each width multiplier's seeds and mean, the frontier
    between them, and the searched spec with its seeds and its 95% interval."""
    import matplotlib.pyplot as plt

    comparison = search["comparison"]
    if comparison is None:
        raise MissingSearchError(f"{search['dir']}/comparison.json: run python -m mnv3.search compare")
    lat, acc, gap = comparison["latency_ms"], comparison["accuracies"], comparison["gap"]
    low, high = comparison["widths"]["low"], comparison["widths"]["high"]
    arms = {"searched": ("searched", "C3"), f"width{low:g}": ("low", "C0"), f"width{high:g}": ("high", "C0")}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for arm, (key, color) in arms.items():
        values = [100 * a for a in acc[arm]]
        ax.scatter([lat[key]] * len(values), values, color=color, alpha=0.5, s=20)
        ax.scatter([lat[key]], [sum(values) / len(values)], color=color, s=80, marker="D",
                   label=f"{arm} (mean of {len(values)} seeds)")  # fmt: skip
    ax.plot([lat["low"], lat["high"]], [100 * gap["low_mean"], 100 * gap["high_mean"]], color="C0", lw=1, label="width frontier")
    lo, hi = gap["ci95_points"]
    ax.errorbar([lat["searched"]], [100 * gap["frontier_at_latency"] + gap["gap_points"]],
                yerr=[[gap["gap_points"] - lo], [hi - gap["gap_points"]]], color="C3", capsize=4, lw=1)  # fmt: skip
    ax.set(xlabel="latency (ms, ExecuTorch fp32, 1 thread)", ylabel="test accuracy (%)",
           title=f"searched spec against the width multipliers ({comparison['epochs']} epochs each)")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def runs_frame(search: dict[str, Any]):
    """The comparison's runs: arm, seed, test accuracy, measured latency of the arm (ms)."""
    import pandas as pd

    c = search["comparison"]
    low, high = c["widths"]["low"], c["widths"]["high"]
    keys = {"searched": "searched", f"width{low:g}": "low", f"width{high:g}": "high"}
    rows = [{"arm": arm, "seed": seed, "test accuracy (%)": 100 * acc, "latency (ms)": c["latency_ms"][keys[arm]], "run": run}
            for arm, accs in c["accuracies"].items() for seed, acc, run in zip(c["seeds"], accs, c["runs"][arm])]  # fmt: skip
    return pd.DataFrame(rows)


def comparison_summary(search: dict[str, Any]) -> str:
    """The comparison as one Markdown paragraph, the sign and the interval as measured."""
    c = search["comparison"]
    if c is None:
        return "No comparison yet: run `python -m mnv3.search compare` (part of `make search`)."
    g = c["gap"]
    lo, hi = g["ci95_points"]
    verdict = ("a gain" if lo > 0 else "a loss" if hi < 0 else "no difference the seeds can resolve")
    text = (f"At equal measured latency the searched spec is **{g['gap_points']:+.2f} points** against the width frontier "
            f"(95% interval {lo:+.2f} to {hi:+.2f}, {len(c['seeds'])} seeds per arm, {c['epochs']} epochs): {verdict}. ")
    if "latency_ratio_at_equal_accuracy" in g:
        text += (f"At equal accuracy the frontier needs {g['latency_ratio_at_equal_accuracy']:.3f}x the searched spec's latency"
                 + (" (extrapolated beyond the two widths)." if g["extrapolated"] else "."))
    return text
