"""What notebook 07 computes from the JSON files: tables of the environment, the latencies,
the training throughput, the frontier, and the verdict on every target."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from .config import CONTENDER_LABELS, CONTENDERS

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
            if t["met"]:
                statement = f"{t['value']:.3f} {op} {t['threshold']:g}: met"
            elif t.get("within_noise"):
                statement = f"{t['value']:.3f} is not {op} {t['threshold']:g}: not met, within noise"
            else:
                statement = f"{t['value']:.3f} is not {op} {t['threshold']:g}: NOT met"
            rows.append({"target": t["target"], "where": where, "value": round(t["value"], 3), "statement": statement,
                         "met": t["met"], "within_noise": t.get("within_noise"), "note": t.get("note", "")})  # fmt: skip
    return pd.DataFrame(rows)


def target_summary(results: Mapping[str, Any]) -> list[str]:
    """One Markdown line per target: met everywhere, or where it falls short."""
    checks = target_checks(results)
    lines = []
    if checks.empty:
        return lines
    for target, group in checks.groupby("target", sort=False):
        short = group[~group["met"]]
        values = ", ".join(f"{v:.3f}" for v in group["value"])
        if short.empty:
            lines.append(f"- **{target}**: met in all {len(group)} measurements ({values}).")
        else:
            misses = "; ".join(f"{row['where']}: {row['statement']}" for _, row in short.iterrows())
            lines.append(f"- **{target}**: met in {len(group) - len(short)} of {len(group)} measurements ({values}). "
                         f"Short: {misses} (why: the notes in the table below).")  # fmt: skip
    return lines


def training_frame(*datas: Mapping[str, Any] | None):
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
