"""The index page, ``reports/<profile>/index.html``: every page with its state, and the table of
experiments (:func:`mnv3.runs.summary_rows`) with your own runs below them
(:func:`mnv3.own_runs.own_summary_rows`), rendered from the Jinja2 template ``index.html.j2``."""
from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..experiments import ORIGINAL_SUMMARY
from ..files import write_text_atomic
from ..own_runs import own_summary_rows
from ..paths import shown_path
from ..runs import format_accuracy, summary_rows, train_hint
from . import pages
from .pages import Notebook
from .runner import ReportContext, ReportResult

__all__ = ["write_index", "render_index", "profile_note"]

_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:72em;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}"
    "th{background:#f3f3f3}td.text,th.text{text-align:left}.missing{color:#a40}.failed{color:#b00;font-weight:bold}"
    "code{background:#f4f4f4;padding:0 .2em}"
    # The experiments table has twelve columns: in a smaller type, with each report link on its own
    # line, it fits the page's width (72em, a 1300-pixel window) instead of losing its last column.
    "table.summary{font-size:.85em;width:100%}table.summary th,table.summary td{padding:.25em .4em}"
    ".note{background:#fff8e1;border-left:4px solid #e0a800;padding:.5em 1em}"
)


def _code(text: str) -> Any:
    """Escape ``text`` for HTML and turn `backticks` into <code> spans (a template filter)."""
    from markupsafe import Markup

    parts = html.escape(text).split("`")
    return Markup("".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts)))


def _fmt(value: Any, spec: str, kinds: tuple[type, ...] = (int, float)) -> str:
    return format(value, spec) if isinstance(value, kinds) and not isinstance(value, bool) else "-"


def profile_note(profile: str, rows: Sequence[Mapping[str, Any]]) -> str:
    """The sentence the index puts beside the accuracies: what a profile's runs can tell (HTML)."""
    if profile != "quick":
        return ""
    epochs = sorted({r["epochs"] for r in rows if r.get("epochs") is not None})
    span = f"{epochs[0]}" if len(epochs) == 1 else f"{epochs[0]}-{epochs[-1]}" if epochs else "a few"
    return (
        "<p class='note'><strong>Quick profile: these runs check the pipeline; their accuracies are not results.</strong> "
        f"Each quick run trains for {span} epoch(s) on part of the training set (columns Epochs and Training images), "
        "which shows that training, evaluation and reporting work end to end, not what the models can reach: the "
        "CIFAR-10 accuracies in particular are far below a full training. Compare the original project's numbers "
        "(below the table) with the full profile's results (<code>make reports PROFILE=full</code>), not with these.</p>"
    )


def _epochs_cell(row: Mapping[str, Any]) -> str:
    if row["status"] == "unfinished" and row.get("epochs") is not None:
        return f"{row.get('epochs_done', 0)} of {row['epochs']}"
    return str(row["epochs"]) if row.get("epochs") is not None else "-"


def write_index(ctx: ReportContext, results: Sequence[ReportResult] = (), notebooks: Sequence[Notebook] | None = None) -> Path:
    """Write ``index.html``: every notebook's report (pages from earlier runs included) and the summary table."""
    done = {(r.notebook.name, r.experiment): r for r in results}
    entries = []
    for nb in pages.NOTEBOOKS if notebooks is None else notebooks:
        for experiment in nb.executions():
            result = done.get((nb.name, experiment))
            if result is None:
                page = ctx.reports_dir / f"{nb.report_name(experiment)}.html"
                result = ReportResult(nb, experiment, page, "earlier" if page.is_file() else "absent")
            entries.append(result)
    index = ctx.reports_dir / "index.html"
    rows = summary_rows(ctx.runs_dir, data_root=ctx.data_root)
    write_text_atomic(index, render_index(ctx, entries, rows, own_summary_rows(ctx.runs_dir, ctx.data_root)))
    return index


def _row(row: Mapping[str, Any], profile: str, pages_of_run: Sequence[ReportResult]) -> dict[str, Any]:
    """One table row as the template prints it (strings; the template escapes them)."""
    shown = {"experiment": row["experiment"], "status": row["status"], "note": "",
             "pages": [(r.html.name, r.notebook.name) for r in pages_of_run if r.status not in ("absent", "missing")]}  # no page to link
    if row["status"] == "missing":
        return {**shown, "hint": train_hint(profile, row["experiment"])}
    if row["status"] == "unreadable":  # a damaged record: the label names the file and the field
        return {**shown, "label": row["label"]}
    model = f"{row['arch']}" + (f", first {row['drop_first_strides']} strides 1" if row.get("drop_first_strides") else "")
    # An unfinished run is never counted as a result: its label takes the accuracy's place.
    accuracy = format_accuracy(row.get("test_accuracy")) if row["status"] == "ok" else row.get("label", "unfinished")
    return {**shown, "dataset": row["dataset"], "model": model, "image_size": row["image_size"], "epochs": _epochs_cell(row),
            "train_images": _fmt(row.get("train_images"), ",", (int,)), "accuracy": accuracy,
            "parameters": _fmt(row.get("parameters"), ",", (int,)),
            "macs": f"{row['macs'] / 1e6:.2f}M" if isinstance(row.get("macs"), (int, float)) else "-",
            "train_seconds": _fmt(row.get("train_seconds"), ".1f"), "device": str(row.get("device", "-"))}  # fmt: skip


def _own_row(row: Mapping[str, Any], profile: str, results: Sequence[ReportResult]) -> dict[str, Any]:
    """A row of your own runs: the experiment's columns, what the run is based on and changed, and
    links to the training pages that draw its curves."""
    based_on = row.get("based_on")
    drawn_on = [r for r in results if r.notebook.shows_own_runs and based_on in r.notebook.experiments]
    shown = _row(row, profile, drawn_on)
    return {**shown, "note": f"based on {based_on}: {row['changes']}"} if based_on else shown


def render_index(ctx: ReportContext, results: Sequence[ReportResult], rows: Sequence[Mapping[str, Any]],
                 own_rows: Sequence[Mapping[str, Any]] = ()) -> str:
    """The index page (HTML): links to every report (with its status), the experiments' summary table
    and below it your own runs (``own_rows``, :func:`mnv3.own_runs.own_summary_rows`)."""
    import jinja2
    from markupsafe import Markup

    groups: dict[str, dict[str, Any]] = {}
    per_run: dict[str, list[ReportResult]] = {}
    for r in results:
        groups.setdefault(r.notebook.name, {"notebook": r.notebook, "results": []})["results"].append(r)
        if r.experiment:
            per_run.setdefault(r.experiment, []).append(r)
    header = ["Experiment", "Dataset", "Model", "Image size", "Epochs", "Training images",
              "Test accuracy (pipeline check)" if ctx.profile == "quick" else "Test accuracy", "Parameters", "MACs",
              "Training time (s)", "Device", "Reports"]  # fmt: skip
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent), autoescape=True,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)  # fmt: skip
    env.filters["code"] = _code
    return env.get_template("index.html.j2").render(
        profile=ctx.profile, css=Markup(_CSS), runs_dir=shown_path(ctx.runs_dir), generated=time.strftime("%Y-%m-%d %H:%M"),
        failed=sum(r.status == "failed" for r in results), note=Markup(profile_note(ctx.profile, rows)),
        header=header, text_columns={0, 1, 2, 6, 10, 11}, original=ORIGINAL_SUMMARY,
        rows=[_row(row, ctx.profile, per_run.get(row["experiment"], [])) for row in rows], groups=list(groups.values()),
        own_rows=[_own_row(row, ctx.profile, results) for row in own_rows],
    )
