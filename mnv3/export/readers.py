"""An export folder read back for notebooks/06_export.ipynb: parity.json and model.json as tables
and plots, and the errors that say how to make a missing export.

Everything here reads files that :mod:`mnv3.export.run` wrote; the committed full-profile exports
(``reports/full/runs/*/export``) must keep rendering, so readers cope with fields older exports lack.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..paths import shown_path
from ..records import read_record
from ..runs import format_accuracy, require_run

# How RUN/export/ is made (a Requirement hint template; notebooks/06_export.ipynb says the same).
EXPORT_HINT = "`make export PROFILE={profile}` (this run alone: `python -m mnv3.export {runs_dir}/{experiment}`)"

# The artefacts of RUN/export/parity.json, as the 06 notebook names them (in parity.json's order).
ARTEFACT_LABELS = {
    "eager": "eager PyTorch",
    "pte": "ExecuTorch .pte fp32",
    "pte-int8": "ExecuTorch .pte int8",
    "ptl": "TorchScript lite .ptl (legacy)",
    "onnx": "ONNX",
}


class MissingExportError(FileNotFoundError):
    """A run has no export report (RUN/export/parity.json); the message names the make target."""


def export_hint(profile: str, runs_dir: str | Path, experiment: str) -> str:
    """How to make ``runs_dir/experiment/export`` (Markdown: the make target, and the command for this run alone)."""
    return EXPORT_HINT.format(profile=profile, runs_dir=runs_dir, experiment=experiment)


def require_export(runs_dir: str | Path, experiment: str, profile: str) -> Path:
    """RUN/export when its parity.json exists, else MissingExportError saying how to make it
    (MissingRunError, from :func:`mnv3.runs.require_run`, when the run folder itself is missing)."""

    run_dir = require_run(runs_dir, experiment, profile)
    export_dir = run_dir / "export"
    if not (export_dir / "parity.json").is_file():
        raise MissingExportError(
            f"{shown_path(export_dir)} has no parity.json: the run has not been exported. Produce it with "
            f"{export_hint(profile, shown_path(runs_dir), experiment)}."
        )
    return export_dir


def export_command(run_dir: str | Path, *, data_root: str | Path = "", data_mirror: str = "", args: Sequence[str] = ()) -> list[str]:
    """The command that exports one run (for the 06 notebook's optional interactive cell); paths are
    made absolute, so it can run from any folder."""
    cmd = [sys.executable, "-m", "mnv3.export", str(Path(run_dir).resolve())]
    cmd += ["--data-root", str(Path(data_root).resolve())] if data_root else []
    return cmd + (["--data-mirror", str(Path(data_mirror).resolve())] if data_mirror else []) + list(args)


def load_export(path: str | Path) -> dict[str, Any]:
    """An export folder (or the run folder holding ``export/``) read back: {"dir", "parity", "manifest"}.

    ``parity`` is parity.json and ``manifest`` model.json, each None when the file is absent, each
    checked by :func:`mnv3.records.read_record` (RecordError names the file and the field).
    """
    path = Path(path)
    export_dir = path / "export" if (path / "export").is_dir() else path

    def read(name: str) -> dict[str, Any] | None:
        file = export_dir / name
        return read_record(file) if file.exists() else None

    return {"dir": export_dir, "parity": read("parity.json"), "manifest": read("model.json")}


def _parity_report(parity_or_path: Mapping[str, Any] | str | Path) -> Mapping[str, Any]:
    if isinstance(parity_or_path, Mapping):
        return parity_or_path
    parity = load_export(parity_or_path)["parity"]
    if parity is None:
        raise MissingExportError(f"no parity.json in {parity_or_path} (or its export/ folder): run `make export`")
    return parity


def load_parity(parity_or_path: Mapping[str, Any] | str | Path):
    """parity.json as a DataFrame, one row per artefact (eager first), numbers kept numeric.

    Takes a run folder, its export folder, or parity.json already loaded. Columns: artefact (the
    format name), file, size_bytes, size_mb, max_abs_logit_diff, top1_agreement, test_accuracy,
    latency_ms_median / _p10 / _p90, latency_vs_eager (median / eager's median), compared_at_batch,
    evaluated_with. The index is the artefact's label (:data:`ARTEFACT_LABELS`).
    """
    import pandas as pd

    parity = _parity_report(parity_or_path)
    frame = pd.DataFrame(parity["rows"])
    frame["size_mb"] = frame["size_bytes"].astype("float64") / 1e6
    # Exports time latency only with --latency-runs: the fields are null (NaN here) otherwise.
    for column in ("latency_ms_median", "latency_ms_p10", "latency_ms_p90"):
        frame[column] = pd.to_numeric(frame.get(column), errors="coerce").astype("float64")
    eager = frame.loc[frame["artefact"] == "eager", "latency_ms_median"]
    frame["latency_vs_eager"] = frame["latency_ms_median"] / float(eager.iloc[0]) if len(eager) else float("nan")
    columns = ["artefact", "file", "size_bytes", "size_mb", "max_abs_logit_diff", "top1_agreement", "test_accuracy",
               "latency_ms_median", "latency_ms_p10", "latency_ms_p90", "latency_vs_eager", "compared_at_batch", "evaluated_with"]
    frame = frame.reindex(columns=columns)
    frame.index = [ARTEFACT_LABELS.get(a, a) for a in frame["artefact"]]
    frame.index.name = "artefact"
    return frame


def parity_table(frame):
    """:func:`load_parity`'s frame formatted for reading: one row per artefact, text cells."""
    import pandas as pd


    def num(value: Any, spec: str, suffix: str = "") -> str:
        return "—" if value is None or pd.isna(value) else f"{value:{spec}}{suffix}"

    return pd.DataFrame(
        {
            "file": [f if isinstance(f, str) else "—" for f in frame["file"]],
            "size (MB)": [num(v, ".2f") for v in frame["size_mb"]],
            "max abs logit diff vs eager": [num(v, ".2e") for v in frame["max_abs_logit_diff"]],
            "top-1 agreement": [num(100 * v, ".2f", "%") for v in frame["top1_agreement"]],
            "test accuracy": [format_accuracy(v) for v in frame["test_accuracy"]],
            "latency median (ms)": [num(v, ".3f") for v in frame["latency_ms_median"]],
            "latency vs eager": [num(v, ".2f", "x") for v in frame["latency_vs_eager"]],
            "accuracy measured with": list(frame["evaluated_with"]),
        },
        index=frame.index,
    )


def int8_budget(parity_or_path: Mapping[str, Any] | str | Path) -> dict[str, Any] | None:
    """The int8 .pte's test-accuracy loss against the fp32 .pte (eager when there is none), recomputed
    from the rows, against the budget (parity.json's, else mnv3.export's INT8_MAX_DROP_POINTS).

    Returns None when there is no int8 row; else reference, reference_accuracy, int8_accuracy,
    drop_points, budget_points, met (bool) and text (one Markdown sentence).
    """

    parity = _parity_report(parity_or_path)
    rows = {r["artefact"]: r for r in parity["rows"]}
    if "pte-int8" not in rows:
        return None
    reference = "pte" if "pte" in rows else "eager"
    budget = (parity.get("int8") or {}).get("max_drop_points")
    if budget is None:
        from .pte import INT8_MAX_DROP_POINTS as budget  # noqa: N811
    ref_acc, int8_acc = rows[reference]["test_accuracy"], rows["pte-int8"]["test_accuracy"]
    drop = 100.0 * (ref_acc - int8_acc)
    met = drop <= budget
    change = f"loses **{drop:.2f} points**" if drop > 0 else f"gains {-drop:.2f} points" if drop < 0 else "loses nothing"
    text = (
        f"int8 against {ARTEFACT_LABELS[reference]}: test accuracy {format_accuracy(int8_acc)} against "
        f"{format_accuracy(ref_acc)}, so quantization {change} of test accuracy on {parity.get('test_images', '?'):,} test "
        f"images. Budget: at most {budget:.1f} point lost. **Budget {'met' if met else 'not met'}.**"
    )
    return {"reference": reference, "reference_accuracy": ref_acc, "int8_accuracy": int8_acc, "drop_points": drop,
            "budget_points": float(budget), "met": met, "text": text}


def _delegation_reports(parity: Mapping[str, Any] | None, manifest: Mapping[str, Any] | None) -> dict[str, Any]:
    for source in (parity, manifest):
        if source and isinstance(source.get("delegation"), Mapping) and source["delegation"]:
            return dict(source["delegation"])
    return {}


def delegation_table(parity: Mapping[str, Any] | None, manifest: Mapping[str, Any] | None = None):
    """The XNNPACK delegation of each .pte (from parity.json, else model.json), or None when neither
    records it. One row per program: backends, delegate calls, ops inside the delegate, ops outside
    it, the outside ops that touch the input (these would run per image in portable kernels)."""
    import pandas as pd

    reports_ = _delegation_reports(parity, manifest)
    if not reports_:
        return None

    def ops(counts: Mapping[str, int]) -> str:
        return ", ".join(f"{op} x{n}" for op, n in counts.items()) or "none"

    rows = []
    for fmt, rep in reports_.items():
        rows.append({
            "artefact": ARTEFACT_LABELS.get(fmt, fmt),
            "fully delegated": "yes" if rep.get("fully_delegated") else "NO",
            "backends": ", ".join(rep.get("backends", [])) or "none",
            "delegate calls": rep.get("delegates"),
            "ops in the delegate": rep.get("delegated_ops"),
            "ops outside": rep.get("non_delegated_ops"),
            "outside ops touching the input": ops(rep.get("non_delegated_compute", {})),
            "outside ops (all)": ops(rep.get("non_delegated_by_op", {})),
        })  # fmt: skip
    return pd.DataFrame(rows).set_index("artefact")


def delegated_ops_table(parity: Mapping[str, Any] | None, manifest: Mapping[str, Any] | None = None):
    """Op counts inside the XNNPACK delegate, one column per .pte, or None when not recorded."""
    import pandas as pd

    reports_ = _delegation_reports(parity, manifest)
    if not reports_:
        return None
    frame = pd.DataFrame({ARTEFACT_LABELS.get(f, f): r.get("delegated_by_op", {}) for f, r in reports_.items()})
    frame = frame.fillna(0).astype(int).sort_index()
    frame.index.name = "op in the delegate"
    return frame


def manifest_table(manifest: Mapping[str, Any]):
    """model.json flattened to one row per field ("input.shape", "files.pte_fp32", ...), values as text;
    an absolute path (an export run on an absolute run folder) is shown relative to the repository."""
    import pandas as pd

    rows: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping) and value:
            for key, sub in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), sub)
        elif isinstance(value, list):
            rows.append((prefix, ", ".join(map(str, value)) if all(not isinstance(v, (list, dict)) for v in value) else json.dumps(value)))
        elif isinstance(value, str) and value.startswith("/") and Path(value).is_absolute():
            rows.append((prefix, shown_path(value)))
        else:
            rows.append((prefix, "—" if value is None else str(value)))

    walk("", dict(manifest))
    return pd.DataFrame(rows, columns=["field", "value"]).set_index("field")


def _plot_latency(ax_lat, frame, y, colors) -> None:
    """plot_parity's latency panel: median bars, p10-p90 whiskers, eager's median dashed."""
    import numpy as np

    med = frame["latency_ms_median"].to_numpy(dtype=float)
    lo = np.clip(med - frame["latency_ms_p10"].to_numpy(dtype=float), 0, None)
    hi = np.clip(frame["latency_ms_p90"].to_numpy(dtype=float) - med, 0, None)
    ax_lat.barh(y, med, xerr=[np.nan_to_num(lo), np.nan_to_num(hi)], color=colors, capsize=3)
    for yi, v in zip(y, med):
        ax_lat.text(v, yi, f" {v:.2f}", va="bottom", fontsize=8)
    if "eager" in set(frame["artefact"]):
        ax_lat.axvline(float(frame.loc[frame["artefact"] == "eager", "latency_ms_median"].iloc[0]), color="k", ls="--", lw=1, label="eager median")
        ax_lat.legend(fontsize=8, loc="lower right")
    log = np.nanmax(med) > 20 * np.nanmin(med)  # e.g. eager against XNNPACK: the small bars would vanish
    if log:
        ax_lat.set_xscale("log")
    ax_lat.set(xlabel=f"batch-1 CPU latency (ms): median, p10-p90{' (log scale)' if log else ''}", title="latency")


def plot_parity(frame, *, title: str = ""):
    """Three bar panels per artefact: file size (MB), batch-1 CPU latency (median, p10-p90 whiskers,
    eager's median dashed; a log scale when the medians span over 20x) and test accuracy (%, axis zoomed
    on the values). ``frame``: :func:`load_parity`."""
    import matplotlib.pyplot as plt
    import numpy as np

    labels = list(frame.index)
    y = np.arange(len(labels))
    colors = [f"C{i}" for i in range(len(labels))]
    fig, (ax_size, ax_lat, ax_acc) = plt.subplots(1, 3, figsize=(15, 0.55 * len(labels) + 1.8), sharey=True)

    sizes = frame["size_mb"].to_numpy(dtype=float)
    ax_size.barh(y, np.nan_to_num(sizes), color=colors)
    for yi, v in zip(y, sizes):
        ax_size.text(0 if np.isnan(v) else v, yi, " no file" if np.isnan(v) else f" {v:.2f}", va="center", fontsize=8)
    ax_size.set(xlabel="file size (MB)", title="size")
    ax_size.set_xlim(0, max(1e-3, np.nanmax(sizes) if np.isfinite(sizes).any() else 1) * 1.3)

    med = frame["latency_ms_median"].to_numpy(dtype=float)
    if np.isfinite(med).any():
        _plot_latency(ax_lat, frame, y, colors)
    else:  # exported without --latency-runs: make bench times the programs
        ax_lat.text(0.5, 0.5, "not timed at export\n(make bench times them)", ha="center", va="center", transform=ax_lat.transAxes)
        ax_lat.set(title="latency", xticks=[])

    acc = 100 * frame["test_accuracy"].to_numpy(dtype=float)
    low = max(0.0, float(np.nanmin(acc)) - max(1.0, 0.5 * float(np.nanmax(acc) - np.nanmin(acc))))
    ax_acc.barh(y, acc - low, left=low, color=colors)
    for yi, v in zip(y, acc):
        ax_acc.text(v, yi, f" {v:.2f}%", va="center", fontsize=8)
    ax_acc.set_xlim(low, float(np.nanmax(acc)) + 0.35 * (float(np.nanmax(acc)) - low))
    ax_acc.xaxis.set_major_locator(plt.MaxNLocator(5))
    ax_acc.set(xlabel=f"test accuracy (%; axis from {low:.1f})", title="accuracy")

    ax_size.set_yticks(y, labels)
    ax_size.invert_yaxis()
    for ax in (ax_size, ax_lat, ax_acc):
        ax.grid(axis="x", alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
