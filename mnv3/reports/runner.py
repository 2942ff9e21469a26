"""Execute one report page: papermill runs the notebook with its parameters, nbconvert turns it
into a self-contained HTML page, and :func:`run_reports` does every page and the index."""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from ..experiments import PROFILES
from ..files import write_text_atomic
from ..paths import REPO, shown_path
from ..records import RECORDS, RecordError, read_record
from ..runs import record_problem, run_state, train_hint
from .pages import RUN_REQUIREMENT, Notebook

__all__ = ["ReportContext", "ReportResult", "execute_report", "execute_notebook", "default_runs_dir", "make_context",
           "kernel_environment", "KERNEL_ARGUMENTS"]  # fmt: skip

KERNEL_NAME = "python3"
# The kernel warns on every start that it talks over TCP without encryption: it listens on
# 127.0.0.1 for the one notebook it runs, and nothing can be done about it. papermill's own
# command line cannot pass kernel arguments, hence `python -m mnv3.reports execute`.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]

@dataclass
class ReportContext:
    """Where one report run reads and writes. Paths are absolute."""

    profile: str
    runs_dir: Path
    reports_dir: Path
    data_root: Path
    data_mirror: str = ""  # "" = $MNV3_DATA_MIRROR or none

    def fields(self, experiment: str | None = None, *, shown: bool = False) -> dict[str, Any]:
        """The template fields; ``shown=True`` gives the paths relative to the repository, as the
        pages and the notebooks' parameters carry them."""
        path = shown_path if shown else str
        return {
            "profile": self.profile,
            "runs_dir": path(self.runs_dir),
            "reports_dir": path(self.reports_dir),
            "data_root": path(self.data_root),
            "data_mirror": path(self.data_mirror),
            "experiment": experiment or "",
            "train_hint": train_hint(self.profile, experiment),
            "repo": "." if shown else str(REPO),
        }


@dataclass
class ReportResult:
    notebook: Notebook
    experiment: str | None
    html: Path
    # "ok"; "missing" (not executed, no page: ``message`` names the make target or says the run is
    # unfinished, and the index shows it); "failed"; and, on the
    # index only, "earlier" (not run this time, the page of an earlier run) or "absent" (no page).
    status: str
    message: str = ""
    seconds: float = 0.0
    executed: Path | None = None  # the executed .ipynb

    @property
    def name(self) -> str:
        return self.notebook.report_name(self.experiment)


def _declared_parameters(path: Path) -> set[str]:
    import papermill

    return set(papermill.inspect_notebook(str(path)))


def _notebook_parameters(nb: Notebook, ctx: ReportContext, experiment: str | None, overrides: Mapping[str, Any]) -> dict[str, Any]:
    declared = _declared_parameters(nb.path)
    common = {k: v for k, v in ctx.fields(experiment, shown=True).items() if k in ("profile", "runs_dir", "reports_dir", "data_root", "data_mirror")}
    if experiment:
        common["experiment"] = experiment
    if nb.shows_own_runs:  # a training page: the experiments it shows (and the own runs based on them)
        common["experiments"] = list(nb.experiments)
    params = {**common, **nb.parameters, **nb.profile_parameters.get(ctx.profile, {}), **overrides}
    # Pass only what the notebook declares: overrides are shared by all notebooks (e.g. fast
    # test knobs), and papermill would inject undeclared names with a warning.
    params = {k: v for k, v in params.items() if k in declared}
    # Headless runs never train, whatever the overrides say.
    if "launch_training" in declared:
        params["launch_training"] = False
    return params


def _not_executable(nb: Notebook, ctx: ReportContext, experiment: str | None) -> str:
    """Why ``nb`` cannot run for ``experiment`` (one sentence naming the make target), or ""."""
    if experiment and RUN_REQUIREMENT in nb.requires:
        state = run_state(ctx.runs_dir / experiment)
        problem = record_problem(ctx.runs_dir / experiment) if state["status"] != "missing" else ""
        if problem:
            return f"the run {experiment} is unreadable: {problem}"
        if state["status"] == "unfinished":
            return (f"the run {experiment} is {state['label']}: it has no test.json, so it has no result to "
                    f"evaluate or export; its curves are on the training pages")
    fields, shown = ctx.fields(experiment), ctx.fields(experiment, shown=True)
    for req in nb.requires:
        path = Path(req.path.format(**fields))
        if not path.exists():
            return f"`{req.path.format(**shown)}` is missing; produce it with {req.hint.format(**shown)}"
        if path.name in RECORDS:  # e.g. an export's parity.json: a damaged one is named here, not in a failed cell
            try:
                read_record(path)
            except RecordError as err:
                return f"`{req.path.format(**shown)}` is unreadable: {str(err).split(': ', 1)[1]} Produce it again with {req.hint.format(**shown)}"
    return ""


def _failed_cell(err: Exception, executed: Path) -> str:
    """'cell N, In [k] ("first line of its source")', N counting the source notebook's cells from 1.

    The executed notebook also holds papermill's injected-parameters cell and the error cells it
    adds; those are skipped so N is the position in the notebook as it is stored and edited.
    """
    import nbformat

    source = getattr(err, "source", "") or ""
    count = getattr(err, "exec_count", None)
    position = None
    try:
        cells = nbformat.read(str(executed), as_version=4).cells
        skip = ("injected-parameters", "papermill-error-cell-tag")
        own = [c for c in cells if not any(t in c.get("metadata", {}).get("tags", []) for t in skip)]
        for i, cell in enumerate(own):
            if cell.cell_type == "code" and cell.get("execution_count") == count and cell.source == source:
                position = i + 1
                break
    except Exception:  # noqa: BLE001 - the error message must still be produced
        pass
    first = next((line.strip() for line in source.splitlines() if line.strip()), "")
    if len(first) > 70:
        first = first[:67] + "..."
    where = f"cell {position}" if position else "a cell"
    prompt = f", In [{count}]" if count else ""
    return f'{where}{prompt} ("{first}")'


def _relative_papermill_paths(executed: Path) -> None:
    """papermill records the notebooks' absolute paths in the executed notebook's metadata; keep
    them relative to the repository, as everything the reports show."""
    import nbformat

    nb = nbformat.read(str(executed), as_version=4)
    meta = nb.metadata.get("papermill", {})
    for key in ("input_path", "output_path"):
        if meta.get(key):
            meta[key] = shown_path(meta[key])
    write_text_atomic(executed, nbformat.writes(nb))


# nbconvert's templates load MathJax from a CDN between these comments; the pages carry MathML
# instead (see mnv3.mathml), so that formulas show without internet.
_MATHJAX_BLOCK = re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", flags=re.S)


def _to_html(executed: Path, title: str, destination: Path) -> None:
    import nbconvert
    import nbformat

    from ..mathml import markdown_with_mathml

    nb = nbformat.read(str(executed), as_version=4)
    nb.metadata["title"] = title
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = markdown_with_mathml(cell.source)
    # The lab template embeds PNG outputs as base64 data URIs: each page is self-contained.
    body, _ = nbconvert.HTMLExporter().from_notebook_node(nb)
    write_text_atomic(destination, _MATHJAX_BLOCK.sub("", body))


def execute_report(
    nb: Notebook,
    ctx: ReportContext,
    experiment: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    log: Callable[[str], None] = print,
) -> ReportResult:
    """Execute one notebook (for one experiment) into ``reports_dir`` and convert it to HTML.

    Returns the result; a failing cell gives status "failed" with a message naming the notebook
    and the cell (the executed notebook, with the traceback, is converted as well).
    """
    import papermill

    name = nb.report_name(experiment)
    title = f"{nb.title}: {experiment}" if experiment else nb.title
    out_html = ctx.reports_dir / f"{name}.html"
    out_ipynb = ctx.reports_dir / "notebooks" / f"{name}.ipynb"
    out_ipynb.parent.mkdir(parents=True, exist_ok=True)
    reason = _not_executable(nb, ctx, experiment)
    if reason:
        # No placeholder page: the index says why, so nothing is left for git to track or ignore,
        # and a page from an earlier run is removed rather than shown as current.
        out_html.unlink(missing_ok=True)
        out_ipynb.unlink(missing_ok=True)
        log(f"[reports] {name}: not executed ({reason.replace('`', '')})")
        return ReportResult(nb, experiment, out_html, "missing", reason)

    params = _notebook_parameters(nb, ctx, experiment, overrides or {})
    rel = nb.path.relative_to(REPO) if nb.path.is_relative_to(REPO) else nb.path
    log(f"[reports] {name}: executing {rel} with {json.dumps(params, default=str)}")
    start = time.perf_counter()
    out_ipynb.unlink(missing_ok=True)  # never convert a stale notebook of an earlier run
    try:
        papermill.execute_notebook(
            str(nb.path),
            str(out_ipynb),
            parameters=params,
            kernel_name=KERNEL_NAME,
            cwd=str(nb.path.parent),
            progress_bar=False,
            log_output=False,
            extra_arguments=KERNEL_ARGUMENTS,
        )
        _relative_papermill_paths(out_ipynb)
    except Exception as err:  # PapermillExecutionError, or the kernel dying
        seconds = time.perf_counter() - start
        log(str(err).rstrip())  # papermill's own report: the cell and its traceback
        in_cell = getattr(err, "cell_index", None) is not None and out_ipynb.exists()
        where = f"failed in {_failed_cell(err, out_ipynb)}" if in_cell else "failed outside its cells"
        what = f"{getattr(err, 'ename', type(err).__name__)}: {getattr(err, 'evalue', str(err)).strip()}"
        what = what.splitlines()[0] if what else what
        message = f"notebook {rel}{f' (experiment {experiment})' if experiment else ''} {where}: {what}"
        if out_ipynb.exists():
            message += f"; the executed notebook with the traceback is {out_ipynb}"
            try:
                _to_html(out_ipynb, title, out_html)
            except Exception:  # noqa: BLE001 - the failure itself is what must be reported
                pass
        return ReportResult(nb, experiment, out_html, "failed", message, seconds, out_ipynb if out_ipynb.exists() else None)
    _to_html(out_ipynb, title, out_html)
    seconds = time.perf_counter() - start
    log(f"[reports] {name}: {out_html} ({seconds:.1f} s)")
    return ReportResult(nb, experiment, out_html, "ok", "", seconds, out_ipynb)


def execute_notebook(notebook: str | Path, out: str | Path, parameters: Mapping[str, Any] | None = None) -> Path:
    """Execute one notebook as papermill's command line does, with the report runner's kernel
    (this checkout's mnv3, headless, no TCP warning): ``notebook`` is a name from
    :data:`mnv3.reports.pages.NOTEBOOKS` (``05_evaluate``) or a path to an ``.ipynb``; the executed
    copy goes to ``out``, the notebook runs from its own folder. Returns ``out``.

    Raises ValueError for an unknown notebook, a parameter the notebook does not declare (naming
    the ones it does), or an ``out`` that is not an ``.ipynb`` path, is the source notebook or lies
    in the repository's notebooks/ (the tracked sources); RuntimeError naming the cell, the error
    and ``out`` when a cell fails.
    """
    import papermill

    from .pages import NOTEBOOK_DIR, notebook_by_name

    path = Path(notebook)
    if path.suffix != ".ipynb":
        path = notebook_by_name(str(notebook)).path
    if not path.is_file():
        raise ValueError(f"{notebook}: no such notebook; give a name from `python -m mnv3.reports list` or an .ipynb file.")
    target = Path(out).resolve()
    if target.suffix != ".ipynb":
        raise ValueError(f"output {out}: the executed notebook is written as .ipynb; give a path ending in .ipynb, e.g. /tmp/{path.name}")
    if target == path.resolve() or NOTEBOOK_DIR.resolve() in target.parents:
        raise ValueError(f"output {out} would overwrite {'the source notebook' if target == path.resolve() else 'a tracked notebook in notebooks/'}"
                         f"; write the executed copy elsewhere, e.g. /tmp/{path.name}")  # fmt: skip
    declared = _declared_parameters(path)
    unknown = sorted(set(parameters or {}) - declared)
    if unknown:
        raise ValueError(f"{shown_path(path)} declares no parameter {', '.join(unknown)}; it declares: {', '.join(sorted(declared))}.")
    params = dict(parameters or {})
    if "launch_training" in declared:  # headless runs never train
        params["launch_training"] = False
    kernel_environment()
    try:
        papermill.execute_notebook(str(path), str(out), parameters=params, kernel_name=KERNEL_NAME, cwd=str(path.parent),
                                   progress_bar=True, log_output=False, extra_arguments=KERNEL_ARGUMENTS)  # fmt: skip
    except papermill.PapermillExecutionError as err:
        what = f"{err.ename}: {err.evalue.strip()}".splitlines()[0]
        raise RuntimeError(f"{shown_path(path)} failed in {_failed_cell(err, Path(out))}: {what}; "
                           f"the executed notebook with the traceback is {out}") from None  # fmt: skip
    return Path(out)


def _guard_output(profile: str, reports_dir: Path) -> None:
    """Only the full profile may write into reports/full (the committed reports)."""
    full = (REPO / "reports" / "full").resolve()
    target = reports_dir.resolve()
    if profile != "full" and (target == full or full in target.parents):
        raise ValueError(
            f"the {profile} profile must not write into {full} (the committed full-profile reports); "
            f"use reports/{profile}/ or another folder."
        )


def default_runs_dir(profile: str) -> Path:
    """runs/quick for the quick profile; the committed reports/full/runs for the full profile."""
    return REPO / "reports" / "full" / "runs" if profile == "full" else REPO / "runs" / profile


def make_context(
    profile: str = "quick",
    *,
    runs_dir: str | Path | None = None,
    reports_dir: str | Path | None = None,
    data_root: str | Path | None = None,
    data_mirror: str | Path | None = None,
) -> ReportContext:
    """Resolve the paths of a report run (defaults: runs/<profile> or reports/full/runs, reports/<profile>,
    data/) and create the reports folder; refuses to let a non-full profile write into reports/full."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}.")
    ctx = ReportContext(
        profile=profile,
        runs_dir=Path(runs_dir).resolve() if runs_dir else default_runs_dir(profile),
        reports_dir=Path(reports_dir).resolve() if reports_dir else REPO / "reports" / profile,
        data_root=Path(data_root).resolve() if data_root else REPO / "data",
        data_mirror=str(Path(data_mirror).expanduser().resolve()) if data_mirror else "",
    )
    _guard_output(profile, ctx.reports_dir)
    ctx.reports_dir.mkdir(parents=True, exist_ok=True)
    return ctx


def kernel_environment() -> None:
    """Make the kernels import this checkout's mnv3 (they inherit our environment), headless."""
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(REPO) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), *paths])
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    os.environ.setdefault("TQDM_DISABLE", "1")
