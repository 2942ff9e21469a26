"""What notebook 07 computes from the JSON files: tables of the environment, the latencies,
the training throughput, the frontier, and the verdict on every target."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..experiments import EXPERIMENTS
from ..runs import dataset_label, format_accuracy, load_record, load_test
from .config import CONTENDER_LABELS, CONTENDERS
from .formatting import target_verdict


def load_results(bench_dir: str | Path) -> dict[str, dict[str, Any] | None]:
    """{"inference", "training", "training_gpu", "frontier"}: each suite's JSON, or None if absent."""
    out = {}
    for name in ("inference", "training", "training_gpu", "frontier"):
        path = Path(bench_dir) / f"{name}.json"
        out[name] = json.loads(path.read_text()) if path.is_file() else None
    return out


def environment_frame(results: Mapping[str, Any]):
    """One column per suite: machine, threads, versions, date, commit, load average."""
    import pandas as pd

    columns = {}
    for name, data in results.items():
        if not data:
            continue
        env = data["environment"]
        t = env.get("threads", {})
        columns[name] = {
            "CPU": env.get("cpu_model"), "cores (usable)": f"{env.get('cpu_count')} ({env.get('usable_cores')})",
            "GPU": env.get("gpu") or "-",
            "threads (torch / ExecuTorch / onnxruntime)": f"{t.get('torch')} / {t.get('executorch')} / {t.get('onnxruntime')}",
            "torch": env["versions"].get("torch"), "torchvision": env["versions"].get("torchvision"),
            "executorch": env["versions"].get("executorch"), "onnxruntime": env["versions"].get("onnxruntime"),
            "python": env["versions"].get("python"), "date (UTC)": env.get("date"),
            "git commit": (env.get("git_commit") or "?")[:10] + (" (dirty)" if env.get("git_dirty") else ""),
            "load average (1/5/15 min) at start": ", ".join(f"{v:.1f}" for v in env.get("load_average_start") or []),
            "load average at end": ", ".join(f"{v:.1f}" for v in env.get("load_average_end") or []),
            "suite seconds": data.get("seconds"), "profile": data.get("config", {}).get("profile"),
        }  # fmt: skip
    return pd.DataFrame(columns)


def inference_frame(data: Mapping[str, Any]):
    """One row per (setting, batch, contender): median/p90 ms, rounds, ratio to torchvision eager."""
    import pandas as pd

    rows = []
    for r in data["results"]:
        rows.append({
            "setting": r["setting"], "input": f"{r['in_channels']}x{r['resolution']}x{r['resolution']}", "classes": r["classes"],
            "batch": r["batch"], "contender": r["label"], "median ms": r["median_ms"], "p90 ms": r["p90_ms"], "n": r["n"],
            "ratio to torchvision eager": r["ratio_to_torchvision_eager"],
            "paired ratio (95% interval)": _interval(r.get("paired_ratio_median"), r.get("paired_ratio_ci95")),
            "images/s": r["images_per_s"], "max |logit diff|": r.get("max_abs_diff_vs_torchvision"),
            "other processes (cores)": r.get("cpu_other_cores"), "error": r.get("error") or "",
        })  # fmt: skip
    return pd.DataFrame(rows)


def _interval(median: float | None, ci: Sequence[float] | None) -> str:
    if median is None:
        return "-"
    return f"{median:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci and ci[0] is not None else f"{median:.3f}"


def inference_pivot(data: Mapping[str, Any], value: str = "median_ms"):
    """Rows (setting, batch), columns contenders, cells ``value`` (median_ms, p90_ms or ratio_to_torchvision_eager)."""
    import pandas as pd

    frame = pd.DataFrame([{"setting": r["setting"], "batch": r["batch"], "contender": r["label"], value: r[value]} for r in data["results"]])
    table = frame.pivot_table(index=["setting", "batch"], columns="contender", values=value, sort=False)
    order = [CONTENDER_LABELS[c] for c in CONTENDERS if CONTENDER_LABELS[c] in table.columns]
    return table[order]


def target_checks(results: Mapping[str, Any]):
    """Every target row of the suites present: target, setting, value, threshold, verdict, note."""
    import pandas as pd

    rows = []
    for name in ("inference", "training", "training_gpu"):
        data = results.get(name)
        for t in (data or {}).get("targets", []):
            op = "≤" if "<=" in t["target"] else "≥"
            where = f"{t['setting']}, batch {t['batch']}" + (f", {t['device']}" if t.get("device") else "")
            verdict = target_verdict(t)  # computed here too: files written before the verdict field have none
            if verdict == "undecided":
                statement = f"{t['value']:.3f}, its 95% interval contains {t['threshold']:g}: undecided"
            elif verdict == "met":
                statement = f"{t['value']:.3f} {op} {t['threshold']:g}: met"
            else:
                statement = f"{t['value']:.3f} is not {op} {t['threshold']:g}: NOT met"
            rows.append({"target": t["target"], "where": where, "value": round(t["value"], 3), "statement": statement,
                         "verdict": verdict, "met": t["met"], "within_noise": t.get("within_noise"), "note": t.get("note", "")})  # fmt: skip
    return pd.DataFrame(rows)


def target_summary(results: Mapping[str, Any]) -> list[str]:
    """One Markdown line per target: met everywhere, or where it is not met or undecided."""
    checks = target_checks(results)
    lines = []
    if checks.empty:
        return lines
    for target, group in checks.groupby("target", sort=False):
        short = group[group["verdict"] != "met"]
        values = ", ".join(f"{v:.3f}" for v in group["value"])
        if short.empty:
            lines.append(f"- **{target}**: met in all {len(group)} measurements ({values}).")
        else:
            misses = "; ".join(f"{row['where']}: {row['statement']}" for _, row in short.iterrows())
            lines.append(f"- **{target}**: met in {len(group) - len(short)} of {len(group)} measurements ({values}). "
                         f"Not met or undecided: {misses} (why: the notes in the table below).")  # fmt: skip
    return lines


def training_frame(*datas: Mapping[str, Any] | None):
    """One row per (setting, device, model) of the training files given (None ones skipped):
    median and p90 step ms, images/s, ratio to torchvision and its paired interval."""
    import pandas as pd

    rows = []
    for data in datas:
        for r in (data or {}).get("results", []):
            rows.append({
                "setting": r["setting"], "device": r["device"], "input": f"{r['in_channels']}x{r['resolution']}x{r['resolution']}",
                "drop_first_strides": r["drop_first_strides"], "batch": r["batch"], "model": r["label"],
                "median step ms": r["median_step_ms"], "p90 step ms": r["p90_step_ms"], "n": r["n"],
                "images/s": r["images_per_s"], "ratio to torchvision": r["ratio_to_torchvision"],
                "paired ratio (95% interval)": _interval(r.get("paired_ratio_median"), r.get("paired_ratio_ci95")),
                "other processes (cores)": r.get("cpu_other_cores"),
            })  # fmt: skip
    return pd.DataFrame(rows)


def frontier_frame(data: Mapping[str, Any]):
    """One row per (arch, width) of frontier.json: parameters, MACs in millions, ExecuTorch fp32
    median and p90 ms, the trained runs' test accuracies and the paper's top-1 (Table 3)."""
    import pandas as pd

    rows = []
    for r in data["results"]:
        rows.append({
            "arch": r["arch"], "width": r["width"], "params": r["params"], "MACs (M)": r["macs"] / 1e6,
            f"ExecuTorch fp32 median ms ({r['resolution']}px)": r["median_ms"], "p90 ms": r["p90_ms"], "n": r["n"],
            "trained runs (test accuracy)": ", ".join(f"{a['experiment']}: {100 * a['test_accuracy']:.2f}%" for a in r["accuracy"]) or "-",
            "paper ImageNet top-1 (Table 3)": r["paper"]["top1"] if r.get("paper") else None,
        })  # fmt: skip
    return pd.DataFrame(rows)


def frontier_paper_only(frontier: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of frontier.json without the trained runs' accuracies (every ``accuracy`` list
    emptied), so that its plot's accuracy axis holds one dataset, the paper's ImageNet top-1. The
    page lists the runs' own accuracies from the run folders instead (:func:`trained_runs_at_widths`)."""
    data = copy.deepcopy(dict(frontier))
    for row in data.get("results", []):
        row["accuracy"] = []
    return data


def trained_runs_at_widths(runs_dir: str | Path, frontier: Mapping[str, Any] | None = None, experiments: Sequence[str] = EXPERIMENTS):
    """The finished runs of ``runs_dir`` (the index's source), one row each, indexed by experiment:
    dataset, arch, width, input size, test accuracy ("98.76%") and, from ``frontier``
    (frontier.json), the ExecuTorch fp32 batch-1 latency in ms of the 224x224, 1000-class model of
    the same arch and width (None when not measured). Reads ``RUN/config.json`` and
    ``RUN/test.json`` of each name in ``experiments``; runs without test.json (unfinished) or
    without config.json are left out. An empty DataFrame when none is finished. Raises KeyError
    or ValueError for a config.json without the model's spec or a test.json that is not JSON."""
    import pandas as pd

    latency = {(r["arch"], float(r["width"])): r.get("median_ms") for r in (frontier or {}).get("results", [])}
    rows = []
    for name in experiments:
        run_dir = Path(runs_dir) / name
        test = load_test(run_dir)
        if test is None or not (run_dir / "config.json").is_file():
            continue
        config = load_record(run_dir)
        arch = config.get("fields", {}).get("arch") or config["model"]["spec"]["name"].rsplit("_", 1)[-1]
        width = float(config.get("fields", {}).get("width_mult") or config["model"].get("width_mult", 1.0))
        rows.append({
            "experiment": name, "dataset": dataset_label(config), "arch": arch, "width": width,
            "input": f"{config['image_size']}x{config['image_size']}", "test accuracy": format_accuracy(test["test_accuracy"]),
            "ExecuTorch fp32 latency, 224x224 model (ms)": latency.get((arch, width)),
        })  # fmt: skip
    return pd.DataFrame(rows).set_index("experiment") if rows else pd.DataFrame()
