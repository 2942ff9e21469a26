"""parity.json / parity.md: every exported file against eager PyTorch (logits, top-1 agreement,
test accuracy, size, optional latency)."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..data import DatasetInfo
from ..imagefolder import load_run_split
from ..files import write_json_atomic, write_text_atomic
from ..timing import percentile, time_calls
from .formats import FILE_NAMES
from .manifest import LEGACY_NOTE
from .pte import INT8_FINDING, INT8_MAX_DROP_POINTS, lower_to_pte
from .runners import EagerRunner, OnnxRunner, PteRunner, PtlRunner
from .threadpool import executorch_threads
from .wrapper import RawPixelModel, resize_images

PROBE_BATCH = 64  # batch for the logit comparison where the format allows any batch (eager, ptl, onnx)
EVAL_BUDGET_S = 60.0  # a full test pass through the batch-1 .pte may take this long, else a twin is built


def compare_logits(reference: torch.Tensor, logits: torch.Tensor) -> dict[str, Any]:
    """``logits`` [N, classes] against ``reference`` [N, classes] (any float dtype).

    Returns ``max_abs_logit_diff`` (over the rows where both are finite; None when there is no
    such row), ``top1_agreement`` (fraction of the N rows with equal argmax; a row holding NaN or
    inf in ``logits`` counts as a disagreement, since argmax would happily pick the NaN) and
    ``nonfinite_outputs`` (rows of ``logits`` holding NaN or inf).
    """
    reference, logits = reference.float(), logits.float()
    finite = torch.isfinite(logits).all(1)
    both = finite & torch.isfinite(reference).all(1)
    agree = (reference.argmax(1) == logits.argmax(1)) & both
    return {
        "max_abs_logit_diff": (reference[both] - logits[both]).abs().max().item() if bool(both.any()) else None,
        "top1_agreement": agree.float().mean().item(),
        "nonfinite_outputs": int((~finite).sum()),
    }


def _predict(runner: Callable, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Logits for uint8 images fed as raw pixels / 255 in batches."""
    return torch.cat([runner(images[i : i + batch_size].float() / 255.0).float() for i in range(0, len(images), batch_size)])


def _accuracy_of(logits: torch.Tensor, labels: torch.Tensor) -> float:
    # A prediction made from NaN or inf logits is wrong, whatever argmax returns for it.
    right = (logits.argmax(1) == labels) & torch.isfinite(logits).all(1)
    return right.float().mean().item()


def accuracy(runner: Callable, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 100) -> float:
    """Top-1 accuracy (a fraction) of ``runner`` (raw pixels -> logits) on uint8 ``images`` [N, C, H, W];
    images whose logits hold NaN or inf count as wrong."""
    return _accuracy_of(_predict(runner, images, batch_size), labels)


NOT_TIMED = {"latency_ms_median": None, "latency_ms_p10": None, "latency_ms_p90": None, "latency_runs": 0}


def measure_latency(runner: Callable, x: torch.Tensor, *, runs: int = 100, warmup: int = 10) -> dict[str, Any]:
    """Wall-clock latency of ``runner(x)`` in milliseconds, after ``warmup`` untimed calls.

    Returns ``latency_ms_median``, ``latency_ms_p10`` and ``latency_ms_p90`` (floats, ms: numpy's
    linear-interpolation percentiles, as every timer of :mod:`mnv3.timing`) and ``latency_runs``.
    ``runs`` = 0 times nothing and returns :data:`NOT_TIMED` (the same keys, None values); a
    negative ``runs`` or ``warmup`` raises ValueError.
    """
    if runs == 0:
        return dict(NOT_TIMED)
    times = time_calls(lambda: runner(x), runs=runs, warmup=warmup)
    return {
        "latency_ms_median": percentile(times, 50),
        "latency_ms_p10": percentile(times, 10),
        "latency_ms_p90": percentile(times, 90),
        "latency_runs": runs,
    }


def _nonfinite_failures(rows: list[dict[str, Any]], compared: int, tested: int) -> list[str]:
    """One sentence per artefact whose outputs hold NaN or inf: such a file must not ship."""
    failures = []
    for row in rows:
        if row["nonfinite_outputs"] or row["test_nonfinite_outputs"]:
            failures.append(
                f"{row['file'] or row['artefact']} outputs NaN or inf for {row['nonfinite_outputs']} of the {compared} "
                f"compared images and {row['test_nonfinite_outputs']} of the {tested} test images"
            )
    return failures


def _accuracy_change(drop_points: float) -> str:
    """A drop in accuracy points worded as a reader reads it: "0.04 points lost" / "gained"."""
    if round(drop_points, 2) == 0:
        return "no change in test accuracy (0.00 points)"
    return f"{abs(drop_points):.2f} points of test accuracy {'lost' if drop_points > 0 else 'gained'}"


def _fmt(value: Any, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def write_parity(report: dict[str, Any], out_dir: str | Path) -> None:
    """Write ``parity.json`` and the markdown table ``parity.md``."""
    out_dir = Path(out_dir)
    write_json_atomic(out_dir / "parity.json", report)
    threads = report["threads"]
    latency = (
        f"Latency: batch 1, median of {report['latency_runs']} runs after warm-up, CPU threads: torch "
        f"{threads['torch']}, ExecuTorch {threads['executorch']}, onnxruntime {threads['onnxruntime']}."
        if report.get("latency_runs")
        else "Latency: not timed here (`make bench` times these programs; pass --latency-runs N to time them now)."
    )
    lines = [
        f"# Export parity: {report['dataset']} ({report.get('experiment') or 'run'})",
        "",
        f"Reference: eager PyTorch on raw pixels. Logit difference and top-1 agreement on the first "
        f"{report['parity_samples']} test images (the .pte files run them one at a time, at batch 1 as in the "
        f"app; the others in batches of {PROBE_BATCH}); accuracy on all {report['test_images']} test images. "
        + latency,
        "",
        "| artefact | file | size (bytes) | max abs logit diff | top-1 agreement | test accuracy | latency median (ms) | accuracy measured with |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['artefact']} | {row['file'] or '—'} | {_fmt(row['size_bytes'], 'd')} | "
            f"{_fmt(row['max_abs_logit_diff'], '.2e')} | {_fmt(row['top1_agreement'], '.4f')} | "
            f"{_fmt(row['test_accuracy'], '.4f')} | {_fmt(row['latency_ms_median'], '.3f')} | {row['evaluated_with']} |"
        )
    int8 = report.get("int8")
    if int8:
        verdict = "within" if int8["within_budget"] else "OVER"
        lines += ["", f"int8 vs fp32 .pte: {_accuracy_change(int8['accuracy_drop_points'])} "
                      f"({verdict} the {int8['max_drop_points']:.1f}-point budget of loss)."]  # fmt: skip
        if "keep_fp32" in int8:
            lines += ["", f"Kept in fp32 inside the int8 program: {', '.join(int8['keep_fp32']) or 'nothing'}. "
                          f"{INT8_FINDING}"]  # fmt: skip
    if report.get("failures"):
        lines += ["", "**FAILED: NaN or inf outputs; these files must not ship.**", ""]
        lines += [f"- {failure}" for failure in report["failures"]]
    if any(row["artefact"] == "ptl" for row in report["rows"]):
        lines += ["", f"Legacy: {LEGACY_NOTE}"]
    write_text_atomic(out_dir / "parity.md", "\n".join(lines) + "\n")


def _thread_counts(onnx_threads: int | None = None) -> dict[str, int | None]:
    counts: dict[str, int | None] = {"torch": torch.get_num_threads(), "executorch": None, "onnxruntime": onnx_threads}
    with contextlib.suppress(Exception):
        counts["executorch"] = executorch_threads()
    return counts


def parity_report(
    wrapper: RawPixelModel,
    out_dir: Path,
    formats: tuple[str, ...],
    sources: dict[str, nn.Module],
    info: DatasetInfo,
    config: dict[str, Any],
    *,
    root,
    mirror,
    samples: int,
    eval_batch_size: int,
    latency_runs: int,
    require_full_delegation: bool,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """The parity report (what :func:`write_parity` writes): one row for eager and one per artefact
    of ``formats`` in ``out_dir``, on the run's test images at the side the exported graph takes
    (resized when the export's input size is not the dataset's).

    ``sources`` maps each .pte format to the module it was lowered from, so a batch-``B`` twin
    program can be built for the full test pass (``eval_batch_size``: 1 = the shipped batch-1
    file, B > 1 = a twin, 0 = the file when a pass fits in EVAL_BUDGET_S seconds, else batch 100).
    The first ``samples`` test images are compared logit by logit with eager; ``latency_runs``
    batch-1 calls are timed (0: none). ``root``/``mirror`` locate the images
    (:func:`mnv3.export.wrapper.run_data_location`); ``say`` gets one line per artefact.
    Keys: dataset, experiment, parity_samples, test_images, latency_runs, threads, rows (per
    artefact: :func:`compare_logits`'s and :func:`measure_latency`'s keys, file, size_bytes,
    test_accuracy as a fraction, test_nonfinite_outputs, evaluated_with), failures (one sentence
    per artefact with NaN or inf outputs) and, with pte-int8, int8 (accuracy_drop_points against
    the fp32 .pte, in percentage points, and the budget). Raises what loading the test images and
    the files raises (ImageFolderError, ExportError).
    """
    images, labels = load_run_split(config, "test", root=root, mirror=mirror)
    images = resize_images(images, wrapper.input_shape(1)[-1])
    probe = images[: max(1, min(samples, len(images)))]
    one = probe[:1].float() / 255.0
    eager = EagerRunner(wrapper)
    reference = _predict(eager, probe, PROBE_BATCH)
    onnx_threads = None
    rows = []
    if not latency_runs:  # said once here, rather than a latency column of dashes in every row
        say("  latency: not timed (make bench times these programs; --latency-runs N times them here)")

    def row(name: str, runner: Callable, eval_runner: Callable, eval_batch: int, evaluated_with: str, path: Path | None):
        # The .pte files take batch 1 only (static shape), so they are compared exactly as the app runs them.
        probe_batch = getattr(runner, "batch_size", PROBE_BATCH)
        logits = _predict(runner, probe, probe_batch)
        result = {"artefact": name, "file": path.name if path else None, "size_bytes": path.stat().st_size if path else None}
        result.update(compare_logits(reference, logits))
        result["compared_at_batch"] = probe_batch
        result.update(measure_latency(runner, one, runs=latency_runs))
        test_logits = _predict(eval_runner, images, eval_batch)
        result["test_accuracy"] = _accuracy_of(test_logits, labels)
        result["test_nonfinite_outputs"] = int((~torch.isfinite(test_logits).all(1)).sum())
        result["evaluated_with"] = evaluated_with
        timed = f"  {result['latency_ms_median']:.3f} ms" if result["latency_ms_median"] is not None else ""
        say(f"  {name:9s} max|dlogit| {_fmt(result['max_abs_logit_diff'], '.2e')}  top-1 agree {result['top1_agreement']:.4f}  "
            f"test acc {result['test_accuracy']:.4f}{timed}")  # fmt: skip
        rows.append(result)

    row("eager", eager, eager, 500, "eager PyTorch, batch 500", None)
    for fmt in formats:
        path = out_dir / FILE_NAMES[fmt]
        if fmt.startswith("pte"):
            runner = PteRunner(path)
            seconds = measure_latency(runner, one, runs=5, warmup=2)["latency_ms_median"] / 1000.0
            batch = eval_batch_size or (1 if seconds * len(images) <= EVAL_BUDGET_S else 100)
            if batch == 1:
                eval_runner, how = runner, "the shipped file, batch 1"
            else:
                twin, _ = lower_to_pte(sources[fmt], wrapper.input_shape(batch), require_full_delegation=require_full_delegation)
                eval_runner, how = PteRunner(twin), f"a batch-{batch} twin program (same graph and weights)"
            row(fmt, runner, eval_runner, batch, how, path)
        elif fmt == "ptl":
            runner = PtlRunner(path)
            row(fmt, runner, runner, 100, "the file, batch 100", path)
        elif fmt == "onnx":
            runner = OnnxRunner(path)
            onnx_threads = runner.threads
            row(fmt, runner, runner, 100, "the file, batch 100", path)

    report: dict[str, Any] = {
        "dataset": info.name,
        "experiment": config.get("experiment"),
        "parity_samples": len(probe),
        "test_images": len(images),
        "latency_runs": latency_runs,
        "threads": _thread_counts(onnx_threads),
        "rows": rows,
        "failures": _nonfinite_failures(rows, len(probe), len(images)),
    }
    by_name = {r["artefact"]: r for r in rows}
    if "pte-int8" in by_name:
        fp32 = by_name.get("pte", by_name["eager"])
        drop = 100.0 * (fp32["test_accuracy"] - by_name["pte-int8"]["test_accuracy"])
        report["int8"] = {
            "reference": fp32["artefact"],
            "accuracy_drop_points": drop,
            "max_drop_points": INT8_MAX_DROP_POINTS,
            "within_budget": drop <= INT8_MAX_DROP_POINTS,
        }
        if drop > INT8_MAX_DROP_POINTS:
            say(f"  WARNING: int8 loses {drop:.2f} points of test accuracy (budget {INT8_MAX_DROP_POINTS:.1f}); "
                "try keeping more layers in fp32 (--int8-keep-fp32, e.g. first_block,model.features.0)")  # fmt: skip
    return report
