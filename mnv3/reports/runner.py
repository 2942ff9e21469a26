"""The reports: notebooks executed with papermill, converted to HTML, and an index page.

    python -m mnv3.reports run --profile quick              # what `make reports` runs
    python -m mnv3.reports run --profile full               # reads the committed reports/full/runs
    python -m mnv3.reports run --only 05_evaluate -p max_samples=500
    python -m mnv3.reports list                             # the notebooks and their parameters

A run writes ``reports/<profile>/``:

- ``notebooks/<report>.ipynb``: each executed notebook, outputs included;
- ``<report>.html``: the same, converted by nbconvert (figures embedded as PNG data URIs);
- ``index.html``: links to every report and a summary table of the experiments (test accuracy,
  parameters, MACs, training time and device).

The notebooks are data (:data:`NOTEBOOKS`). To add one, save it in ``notebooks/`` without outputs,
with a cell tagged ``parameters``, and add an entry to the list, e.g.::

    Notebook(
        "08_robustness", "Robustness", "One line for the index.",
        per_experiment=True,                                   # run once per experiment
        profile_parameters={"quick": {"max_samples": 500}},    # only what it declares is passed
        requires=(RUN_REQUIREMENT, Requirement("{runs_dir}/{experiment}/export/parity.json", EXPORT_HINT)),
    )

Every notebook receives, when it declares them, the common parameters ``profile``, ``runs_dir``,
``reports_dir``, ``data_root`` and ``data_mirror``, and ``experiment`` when it is run once per
experiment. Paths are passed relative to the repository root (:func:`shown_path`), so that no page
shows a machine's folder layout, and the notebooks resolve them against the repository
(:func:`repo_path`), so that they run from the root and from ``notebooks/`` alike. A notebook whose
inputs (its :class:`Requirement` files) are missing is not executed and leaves no page: the index
says which ``make`` target produces them, and the run still succeeds. A cell that
raises fails the run, naming the notebook and the cell. ``tests/test_notebooks.py`` runs every entry
of the list (give new notebooks knobs that make them fast, and add them to its ``FAST``).

The second half of this module holds what the notebooks compute (curves, timings, tables), so the
notebooks keep only the narrative and the plots.
"""
from __future__ import annotations

import argparse
import html
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from .paths import REPO, repo_path, shown_path
from .experiments import EXPERIMENTS, PROFILES

__all__ = [
    "REPO",
    "NOTEBOOK_DIR",
    "repo_path",
    "shown_path",
    "run_state",
    "Requirement",
    "Notebook",
    "NOTEBOOKS",
    "ReportContext",
    "ReportResult",
    "make_context",
    "run_reports",
    "execute_report",
    "write_index",
    "experiment_summary",
    "summary_rows",
    "render_index",
    "format_accuracy",
    "train_hint",
    "main",
]

NOTEBOOK_DIR = REPO / "notebooks"
KERNEL_NAME = "python3"

# The original project's results (Keras, 2019), quoted by the notebooks and the index.
ORIGINAL_RESULTS = {
    "mnist_small": "95%",
    "cifar10_small": "59%",
    "cifar10_large": "never finished",
}
ORIGINAL_SUMMARY = "MNIST 95% (Small); CIFAR-10 59% (Small); CIFAR-10 Large never finished training."


# ============================================================================ the notebook list


@dataclass(frozen=True)
class Requirement:
    """A file a report needs, and the hint that says how to produce it when it is missing.

    ``path`` is a template formatted with the report's context: ``{profile}``, ``{runs_dir}``,
    ``{reports_dir}``, ``{data_root}``, ``{experiment}`` and ``{repo}`` (absolute paths). ``hint``
    is formatted with the same names as the pages show them (relative to the repository), plus
    ``{train_hint}`` (see :func:`train_hint`). Only the first missing file is reported.
    """

    path: str
    hint: str = "{train_hint}"


# A finished run: test.json is written last, after the final test evaluation. A stopped run (no
# test.json) is shown by the training pages as unfinished, and never evaluated or exported.
RUN_REQUIREMENT = Requirement("{runs_dir}/{experiment}/test.json")
# How RUN/export/ is made (a Requirement hint template; notebooks/06_export.ipynb says the same).
EXPORT_HINT = "`make export PROFILE={profile}` (this run alone: `python -m mnv3.export {runs_dir}/{experiment}`)"


@dataclass(frozen=True)
class Notebook:
    """One notebook of ``notebooks/`` and how the report runner executes it.

    Attributes:
        name: the file name without ``.ipynb``; also the report's name (``<name>.html``).
        title: shown on the index.
        description: one line for the index.
        per_experiment: execute once per experiment, passing ``experiment``; the reports are
            ``<name>-<experiment>.html``.
        experiments: which experiments, when ``per_experiment`` (default: all of them).
        parameters: passed to every execution (on top of the common ones).
        profile_parameters: passed for one profile only, e.g. ``{"quick": {"max_samples": 2000}}``.
        requires: files that must exist, else the page says which make target produces them.
        source: the notebook file, when it is not ``notebooks/<name>.ipynb``.
    """

    name: str
    title: str
    description: str = ""
    per_experiment: bool = False
    experiments: tuple[str, ...] = EXPERIMENTS
    parameters: Mapping[str, Any] = field(default_factory=dict)
    profile_parameters: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    requires: tuple[Requirement, ...] = ()
    source: Path | None = None

    @property
    def path(self) -> Path:
        return Path(self.source) if self.source else NOTEBOOK_DIR / f"{self.name}.ipynb"

    def report_name(self, experiment: str | None) -> str:
        return f"{self.name}-{experiment}" if experiment else self.name

    def executions(self) -> list[str | None]:
        return list(self.experiments) if self.per_experiment else [None]


NOTEBOOKS: list[Notebook] = [
    Notebook(
        "01_nonlinearities",
        "Nonlinearities: h-sigmoid and h-swish",
        "Sigmoid against h-sigmoid and swish against h-swish, their errors, and their CPU cost (Figure 1).",
    ),
    Notebook(
        "02_architecture",
        "Architecture: MobileNetV3 Small and Large",
        "The Small and Large tables from the JSON specs, per-row parameters and MACs, totals against "
        "the paper and torchvision, and the torchvision equivalence check (Figure 2).",
    ),
    # 03 and 04 cope with missing runs themselves (they plot what exists and name the make target).
    Notebook(
        "03_train_mnist",
        "Training on MNIST",
        "Accuracy and loss curves of MobileNetV3-Small on MNIST, and seconds per epoch (Figures 5 and 6).",
        # The notebook never trains unless asked to interactively.
        parameters={"launch_training": False},
    ),
    Notebook(
        "04_train_cifar10",
        "Training on CIFAR-10",
        "CIFAR-10 curves: Small with stride 2 against stride 1, Small against Large, seconds per epoch "
        "(Figures 9 to 12).",
        parameters={"launch_training": False},
    ),
    Notebook(
        "05_evaluate",
        "Evaluation",
        "Test accuracy, precision, recall and F1, the classification report, the confusion matrix, "
        "the most-confused pairs and misclassified images (Figures 7, 8, 13 and 14).",
        per_experiment=True,
        # On a 2-core CPU, Large at stride 1 needs about a minute for the whole CIFAR-10 test split;
        # the quick reports evaluate the first 2000 images (test.json holds the whole split's).
        profile_parameters={"quick": {"max_samples": 2000}},
        requires=(RUN_REQUIREMENT,),
    ),
    Notebook(
        "06_export",
        "Export to ExecuTorch",
        "Each exported file (ExecuTorch fp32 and int8, TorchScript lite, ONNX) against eager PyTorch: logit "
        "difference, top-1 agreement, test accuracy and size (CPU latency only when asked; make bench times "
        "these programs); the int8 accuracy budget, the XNNPACK delegation and model.json.",
        per_experiment=True,
        # Reads RUN/export/parity.json and model.json; never exports headlessly (`make export` does).
        parameters={"launch_export": False},
        requires=(RUN_REQUIREMENT, Requirement("{runs_dir}/{experiment}/export/parity.json", EXPORT_HINT)),
    ),
    Notebook(
        "07_benchmarks",
        "Benchmarks",
        "CPU latency against torchvision and the mobile runtimes, training throughput, and the "
        "accuracy-latency frontier over width multipliers.",
        # Reads reports/bench/*.json, written by `make bench` (python -m mnv3.bench).
        parameters={"bench_dir": "reports/bench"},
        requires=(Requirement("{repo}/reports/bench/inference.json", "`make bench`"),),
    ),
]


def notebook_by_name(name: str, notebooks: Sequence[Notebook] | None = None) -> Notebook:
    notebooks = NOTEBOOKS if notebooks is None else notebooks
    for nb in notebooks:
        if nb.name == name:
            return nb
    raise ValueError(f"unknown notebook {name!r}; the notebooks are: {', '.join(nb.name for nb in notebooks)}.")


# ============================================================================ running


def train_hint(profile: str, experiment: str | None = None) -> str:
    """The make command that produces a run folder (or all of them) for ``profile``."""
    if profile == "full":
        what = f"runs/full/{experiment}/" if experiment else "runs/full/<experiment>/"
        return (
            f"`make train PROFILE=full` on a GPU machine writes {what}; the full-profile reports read "
            f"the copies committed under reports/full/runs/"
        )
    if experiment:
        return f"`make train PROFILE={profile}` (this run alone: `make runs/{profile}/{experiment}/test.json`)"
    return f"`make train PROFILE={profile}`"


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
        if state["status"] == "unfinished":
            return (f"the run {experiment} is {state['label']}: it has no test.json, so it has no result to "
                    f"evaluate or export; its curves are on the training pages")
    fields, shown = ctx.fields(experiment), ctx.fields(experiment, shown=True)
    for req in nb.requires:
        if not Path(req.path.format(**fields)).exists():
            return f"`{req.path.format(**shown)}` is missing; produce it with {req.hint.format(**shown)}"
    return ""


def _markdown_code(text: str) -> str:
    """Escape ``text`` for HTML and turn `backticks` into <code>."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:72em;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}"
    "th{background:#f3f3f3}td.text,th.text{text-align:left}.missing{color:#a40}.failed{color:#b00;font-weight:bold}"
    "code{background:#f4f4f4;padding:0 .2em}"
    ".note{background:#fff8e1;border-left:4px solid #e0a800;padding:.5em 1em}"
)


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
    nbformat.write(nb, str(executed))


# nbconvert's templates load MathJax from a CDN between these comments; the pages carry MathML
# instead (see mnv3.mathml), so that formulas show without internet.
_MATHJAX_BLOCK = re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", flags=re.S)


def _to_html(executed: Path, title: str, destination: Path) -> None:
    import nbconvert
    import nbformat

    from .mathml import markdown_with_mathml

    nb = nbformat.read(str(executed), as_version=4)
    nb.metadata["title"] = title
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = markdown_with_mathml(cell.source)
    # The lab template embeds PNG outputs as base64 data URIs: each page is self-contained.
    body, _ = nbconvert.HTMLExporter().from_notebook_node(nb)
    destination.write_text(_MATHJAX_BLOCK.sub("", body), encoding="utf-8")


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
            # The kernel warns on every start that it talks over TCP without encryption: it
            # listens on 127.0.0.1 for the one notebook it runs, and nothing can be done about it.
            extra_arguments=["--IPKernelApp.log_level=ERROR"],
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


def run_reports(
    profile: str = "quick",
    *,
    runs_dir: str | Path | None = None,
    reports_dir: str | Path | None = None,
    data_root: str | Path | None = None,
    data_mirror: str | Path | None = None,
    notebooks: Sequence[Notebook] | None = None,
    only: Iterable[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> list[ReportResult]:
    """Execute the notebooks, convert them to HTML and write ``index.html``; return the results.

    Relative paths are taken from the current directory. A failing notebook does not stop the
    others; check the results' ``status`` (the CLI exits with 1 when one failed).
    ``overrides`` are parameters for every notebook that declares them (e.g. fast test knobs).
    """
    ctx = make_context(profile, runs_dir=runs_dir, reports_dir=reports_dir, data_root=data_root, data_mirror=data_mirror)
    _kernel_environment()
    notebooks = list(NOTEBOOKS if notebooks is None else notebooks)
    selected = [notebook_by_name(n, notebooks) for n in only] if only else notebooks
    results = []
    for nb in selected:
        for experiment in nb.executions():
            result = execute_report(nb, ctx, experiment, overrides, log=log)
            if result.status == "failed":
                log(f"[reports] FAILED: {result.message}")
            results.append(result)
    index = write_index(ctx, results, notebooks)
    log(f"[reports] index: {index}")
    return results


def write_index(ctx: ReportContext, results: Sequence[ReportResult] = (), notebooks: Sequence[Notebook] | None = None) -> Path:
    """Write ``index.html``: every notebook's report (pages from earlier runs included) and the summary table."""
    done = {(r.notebook.name, r.experiment): r for r in results}
    entries = []
    for nb in NOTEBOOKS if notebooks is None else notebooks:
        for experiment in nb.executions():
            result = done.get((nb.name, experiment))
            if result is None:
                page = ctx.reports_dir / f"{nb.report_name(experiment)}.html"
                result = ReportResult(nb, experiment, page, "earlier" if page.is_file() else "absent")
            entries.append(result)
    index = ctx.reports_dir / "index.html"
    index.write_text(render_index(ctx, entries, summary_rows(ctx.runs_dir, data_root=ctx.data_root)), encoding="utf-8")
    return index


def _kernel_environment() -> None:
    """Make the kernels import this checkout's mnv3 (they inherit our environment), headless."""
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(REPO) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), *paths])
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    os.environ.setdefault("TQDM_DISABLE", "1")


# ============================================================================ the index


DATASET_NAMES = {"mnist": "MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "fashion_mnist": "Fashion-MNIST", "kmnist": "KMNIST", "synthetic": "synthetic"}


def format_accuracy(value: float | None) -> str:
    """Accuracies as the reports print them: 98.76%."""
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}%"


def dataset_label(config: Mapping[str, Any], data_root: str | Path | None = None) -> str:
    """"MNIST", or "CIFAR-10 (JPEG mirror)" for CIFAR-10 from the offline mirror's JPEG re-encodings.

    The mirror is recognised from the run's config, or from the source recorded in the dataset
    cache under ``data_root`` (read memory-mapped: milliseconds).
    """
    name = config.get("dataset", "?")
    label = DATASET_NAMES.get(name, name)
    if name == "cifar10" and (config.get("data_mirror") or _cache_source(data_root, name).startswith("mirror")):
        label += " (JPEG mirror)"
    return label


def _cache_source(data_root: str | Path | None, name: str) -> str:
    if data_root is None:
        return ""
    import torch

    for split in ("test", "train"):
        path = Path(data_root) / "cache" / f"{name}-{split}.pt"
        if path.is_file():
            try:
                return str(torch.load(path, map_location="cpu", mmap=True, weights_only=True).get("source", ""))
            except Exception:  # noqa: BLE001 - a label is not worth failing a report
                return ""
    return ""


def experiment_summary(run_dir: str | Path, data_root: str | Path | None = None) -> dict[str, Any]:
    """One row of the index's table, read from a run folder.

    Keys: experiment, status ("ok", "missing": no run folder, "unfinished": no test.json), label
    (:func:`run_state`'s, e.g. "unfinished (stopped at epoch 54 of 60)"), dataset, arch,
    image_size, epochs (planned), train_images, test_accuracy (finished runs only), parameters,
    macs (per image, at the run's image size, see mnv3.summary), train_seconds,
    seconds_per_epoch, device.
    """
    from .model import model_from_config
    from .summary import summarize, totals

    run_dir = Path(run_dir)
    row: dict[str, Any] = {"experiment": run_dir.name, "status": "missing"}
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        return row
    config = json.loads(config_path.read_text())
    model_config = config["model"]
    model = model_from_config(model_config)
    table = totals(summarize(model, int(config["image_size"])))
    row.update(
        status="unfinished",
        dataset=dataset_label(config, data_root),
        arch=model_config["spec"]["name"],
        drop_first_strides=model_config.get("drop_first_strides", 0),
        image_size=config["image_size"],
        epochs=config.get("fields", {}).get("epochs"),
        parameters=table["params"],
        macs=table["macs"],
        device=config.get("device", "?"),
    )
    row["train_images"] = config.get("train_samples")
    metrics = load_metrics(run_dir)
    if metrics is not None and len(metrics):
        row["train_seconds"] = float(metrics["epoch_seconds"].sum())
        row["seconds_per_epoch"] = float(metrics["epoch_seconds"].mean())
    state = run_state(run_dir)
    row.update(label=state["label"], epochs_done=state["epochs_done"])
    test_path = run_dir / "test.json"
    if test_path.is_file():
        test = json.loads(test_path.read_text())
        row.update(
            status="ok",
            test_accuracy=test["test_accuracy"],
            train_seconds=test.get("train_seconds", row.get("train_seconds")),
            device=test.get("device", row["device"]),
            epochs=test.get("epochs", row["epochs"]),
        )
    return row


def summary_rows(runs_dir: str | Path, experiments: Sequence[str] = EXPERIMENTS, data_root: str | Path | None = None) -> list[dict[str, Any]]:
    """:func:`experiment_summary` for every experiment, in the order of ``mnv3.experiments``."""
    return [experiment_summary(Path(runs_dir) / name, data_root) for name in experiments]


def _fmt_int(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "-"


def _fmt_macs(value: Any) -> str:
    return f"{value / 1e6:.2f}M" if isinstance(value, (int, float)) else "-"


def _fmt_seconds(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, (int, float)) else "-"


def _report_link(r: ReportResult, label: str) -> str:
    if r.status == "absent":
        return f"{html.escape(label)} <span class='missing'>(not generated yet: run <code>make reports</code>)</span>"
    if r.status == "missing":  # no page: the reason is here
        return f"{html.escape(label)} <span class='missing'>(not executed: {_markdown_code(r.message)})</span>"
    link = f"<a href='{html.escape(r.html.name)}'>{html.escape(label)}</a>"
    if r.status == "failed":
        link += f" <span class='failed'>(FAILED: {html.escape(r.message)})</span>"
    elif r.status == "earlier":
        link += " <small>(from an earlier run)</small>"
    return link


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


def render_index(ctx: ReportContext, results: Sequence[ReportResult], rows: Sequence[Mapping[str, Any]]) -> str:
    """The index page: links to every report (with its status) and the experiments' summary table."""
    links, seen = [], []
    per_run_pages: dict[str, list[ReportResult]] = {}
    for r in results:
        if r.notebook.name not in seen:
            seen.append(r.notebook.name)
        if r.experiment:
            per_run_pages.setdefault(r.experiment, []).append(r)
    for name in seen:
        group = [r for r in results if r.notebook.name == name]
        nb = group[0].notebook
        desc = f"<br><small>{html.escape(nb.description)}</small>" if nb.description else ""
        if nb.per_experiment:
            items = "".join(f"<li>{_report_link(r, r.experiment)}</li>" for r in group)
            links.append(f"<li>{html.escape(nb.title)} (one page per experiment){desc}<ul>{items}</ul></li>")
        else:
            links.append(f"<li>{_report_link(group[0], nb.title)}{desc}</li>")
    accuracy_header = "Test accuracy (pipeline check)" if ctx.profile == "quick" else "Test accuracy"
    header = ["Experiment", "Dataset", "Model", "Image size", "Epochs", "Training images", accuracy_header, "Parameters", "MACs",
              "Training time (s)", "Device", "Reports"]
    text_columns = {0, 1, 2, 6, 10, 11}
    body = []
    for row in rows:
        pages = ", ".join(
            f"<a href='{html.escape(r.html.name)}'>{html.escape(r.notebook.name)}</a>"
            for r in per_run_pages.get(row["experiment"], []) if r.status not in ("absent", "missing")  # no page to link
        )
        if row["status"] == "missing":
            cells = [f"<td class='text'>{html.escape(row['experiment'])}</td>",
                     f"<td class='text missing' colspan='{len(header) - 2}'>no run folder: {_markdown_code(train_hint(ctx.profile, row['experiment']))}</td>"]
        else:
            model = f"{row['arch']}" + (f", first {row['drop_first_strides']} strides 1" if row.get("drop_first_strides") else "")
            # An unfinished run is never counted as a result: its label takes the accuracy's place.
            accuracy = format_accuracy(row.get("test_accuracy")) if row["status"] == "ok" else row.get("label", "unfinished")
            cells = [
                f"<td class='text'>{html.escape(row['experiment'])}</td>",
                f"<td class='text'>{html.escape(row['dataset'])}</td>",
                f"<td class='text'>{html.escape(model)}</td>",
                f"<td>{row['image_size']}</td>",
                f"<td>{_epochs_cell(row)}</td>",
                f"<td>{_fmt_int(row.get('train_images'))}</td>",
                f"<td class='{'text' if row['status'] == 'ok' else 'text missing'}'>{html.escape(accuracy)}</td>",
                f"<td>{_fmt_int(row.get('parameters'))}</td>",
                f"<td>{_fmt_macs(row.get('macs'))}</td>",
                f"<td>{_fmt_seconds(row.get('train_seconds'))}</td>",
                f"<td class='text'>{html.escape(str(row.get('device', '-')))}</td>",
            ]
        cells.append(f"<td class='text'>{pages or '-'}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    head = "".join(f"<th class='text'>{h}</th>" if i in text_columns else f"<th>{h}</th>" for i, h in enumerate(header))
    failed = [r for r in results if r.status == "failed"]
    banner = f"<p class='failed'>{len(failed)} report(s) failed; see below.</p>" if failed else ""
    body_html = f"""<h1>mnv3 reports: {html.escape(ctx.profile)} profile</h1>
{banner}
<p>MobileNetV3 (Howard et al. 2019) from JSON specs, trained on MNIST and CIFAR-10. Runs read from
<code>{html.escape(shown_path(ctx.runs_dir))}</code>; generated {time.strftime('%Y-%m-%d %H:%M')} by
<code>python -m mnv3.reports run --profile {html.escape(ctx.profile)}</code> (<code>make reports PROFILE={html.escape(ctx.profile)}</code>).</p>
<h2>Experiments</h2>
{profile_note(ctx.profile, rows)}
<table class='summary'>
<thead><tr>{head}</tr></thead>
<tbody>
{chr(10).join(body)}
</tbody>
</table>
<p><small>Test accuracy: the whole test split, with the best checkpoint by validation accuracy.
An unfinished run (no test.json) shows its state instead, and its curves on the training pages.
Epochs: planned (an unfinished run: recorded of planned). Training images: per epoch, after the
validation split. Parameters and MACs (multiply-adds per image, see <code>python -m mnv3.summary --help</code>) at the
run's image size. Training time: the sum of the epochs' seconds, on the device shown.
The original project{' (full trainings: compare them with the full profile)' if ctx.profile == 'quick' else ''}: {html.escape(ORIGINAL_SUMMARY)}</small></p>
<h2>Reports</h2>
<ul>
{chr(10).join(links)}
</ul>
"""
    return _page(f"mnv3 reports ({ctx.profile})", body_html)


# ============================================================================ the CLI


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mnv3.reports",
        description="Execute the notebooks with papermill into reports/<profile>/, convert them to HTML and write index.html.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute the notebooks and write the HTML reports and the index")
    run.add_argument("--profile", default="quick", choices=PROFILES, help="quick (default) or full")
    run.add_argument("--runs-dir", default=None, help="run folders (default runs/quick, or reports/full/runs for full)")
    run.add_argument("--out", default=None, help="where the reports go (default reports/<profile>)")
    run.add_argument("--data-root", default=None, help="dataset root (default data/)")
    run.add_argument("--data-mirror", default=None, help="offline dataset mirror (default $MNV3_DATA_MIRROR)")
    run.add_argument("--only", nargs="+", metavar="NOTEBOOK", help="run only these notebooks, e.g. 05_evaluate")
    run.add_argument(
        "-p", "--param", action="append", default=[], metavar="NAME=VALUE",
        help="a parameter for every notebook that declares it (VALUE is JSON, else a string), e.g. -p max_samples=500",
    )
    index = sub.add_parser("index", help="rewrite index.html only, from the run folders and the pages already there")
    index.add_argument("--profile", default="quick", choices=PROFILES)
    index.add_argument("--runs-dir", default=None)
    index.add_argument("--out", default=None)
    sub.add_parser("list", help="list the notebooks and their parameters")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "list":
        import papermill

        for nb in NOTEBOOKS:
            params = papermill.inspect_notebook(str(nb.path))
            per = " (once per experiment)" if nb.per_experiment else ""
            print(f"{nb.name}{per}: {nb.title}")
            for name, p in params.items():
                print(f"    {name} = {p['default']}")
        return 0
    if args.command == "index":
        try:
            ctx = make_context(args.profile, runs_dir=args.runs_dir, reports_dir=args.out)
        except ValueError as err:
            print(f"python -m mnv3.reports: error: {err}", file=sys.stderr)
            return 2
        print(write_index(ctx))
        return 0
    overrides = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep:
            print(f"python -m mnv3.reports: error: --param expects NAME=VALUE, got {item!r}", file=sys.stderr)
            return 2
        overrides[name] = _parse_value(value)
    try:
        results = run_reports(
            args.profile,
            runs_dir=args.runs_dir,
            reports_dir=args.out,
            data_root=args.data_root,
            data_mirror=args.data_mirror,
            only=args.only,
            overrides=overrides,
        )
    except ValueError as err:
        print(f"python -m mnv3.reports: error: {err}", file=sys.stderr)
        return 2
    failed = [r for r in results if r.status == "failed"]
    missing = [r for r in results if r.status == "missing"]
    if missing:
        print(f"[reports] {len(missing)} report(s) not executed for missing inputs; their pages name the make target.")
    if failed:
        for r in failed:
            print(f"error: {r.message}", file=sys.stderr)
        return 1
    return 0


# ============================================================================ what the notebooks compute


def load_metrics(run_dir: str | Path):
    """A run's ``metrics.csv`` as a DataFrame (one row per epoch), or None when there is none."""
    import pandas as pd

    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return None
    return pd.read_csv(path)


def load_test(run_dir: str | Path) -> dict[str, Any] | None:
    path = Path(run_dir) / "test.json"
    return json.loads(path.read_text()) if path.is_file() else None


def run_state(run_dir: str | Path) -> dict[str, Any]:
    """Whether a run folder holds a result: {"status", "epochs_done", "epochs_planned", "label"}.

    status is "ok" (test.json: finished), "unfinished" (config.json but no test.json: stopped, or
    still training) or "missing" (no config.json). epochs_done counts the rows of metrics.csv,
    epochs_planned is config.json's ``fields.epochs`` (None when unknown). label is what the
    pages print: "finished", "no run folder", or for an unfinished run "unfinished (stopped at
    epoch 54 of 60)", the epoch it was in when it stopped (53 complete).
    """
    run_dir = Path(run_dir)
    state: dict[str, Any] = {"status": "missing", "epochs_done": 0, "epochs_planned": None, "label": "no run folder"}
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        return state
    planned = json.loads(config_path.read_text()).get("fields", {}).get("epochs")
    metrics = load_metrics(run_dir)
    done = 0 if metrics is None else len(metrics)
    state.update(epochs_done=done, epochs_planned=planned)
    if (run_dir / "test.json").is_file():
        return {**state, "status": "ok", "label": "finished"}
    if planned is None:
        label = f"unfinished (stopped after {done} epochs)"
    elif done >= planned:
        label = f"unfinished (all {planned} epochs trained, no test evaluation)"
    else:
        label = f"unfinished (stopped at epoch {done + 1} of {planned})"
    return {**state, "status": "unfinished", "label": label}


def find_runs(runs_dir: str | Path, experiments: Sequence[str]) -> tuple[dict[str, Path], list[str]]:
    """(run folders that have metrics, the experiments without them). Unfinished runs (metrics, no
    test.json) are among the first: the training pages draw their curves and label them."""
    present, missing = {}, []
    for name in experiments:
        run_dir = Path(runs_dir) / name
        (present.__setitem__(name, run_dir) if (run_dir / "metrics.csv").is_file() else missing.append(name))
    return present, missing


def missing_runs_markdown(missing: Sequence[str], profile: str, runs_dir: str | Path) -> str:
    """A Markdown note naming the missing runs and the make target that produces them."""
    if not missing:
        return ""
    lines = [f"**Missing runs** in `{shown_path(runs_dir)}`:"]
    lines += [f"- `{name}`: {train_hint(profile, name)}" for name in missing]
    return "\n".join(lines)


class MissingRunError(FileNotFoundError):
    """A notebook's run folder does not exist; the message says which make target makes it."""


def require_run(runs_dir: str | Path, experiment: str, profile: str, *, finished: bool = False) -> Path:
    """The run folder; MissingRunError naming the make target when it has no config.json, or, with
    ``finished``, when it has no test.json (the error gives its :func:`run_state` label)."""
    run_dir = Path(runs_dir) / experiment
    if not (run_dir / "config.json").is_file():
        raise MissingRunError(f"no run folder {shown_path(run_dir)} (no config.json). Produce it with {train_hint(profile, experiment)}.")
    if finished and not (run_dir / "test.json").is_file():
        raise MissingRunError(f"{shown_path(run_dir)} is {run_state(run_dir)['label']}: it has no test.json, so no result "
                              f"to evaluate. Finish it with {train_hint(profile, experiment)}.")
    return run_dir


def train_command(experiment: str, profile: str, runs_dir: str | Path, *, data_root: str | Path = "data", data_mirror: str = "") -> list[str]:
    """The command that trains one experiment into ``runs_dir/<experiment>`` (for the notebooks'
    optional interactive cell). Paths are made absolute, so it runs from any folder.

    ``mnv3.train`` writes OUT/<profile>/<experiment>, so ``runs_dir`` must be a folder named after
    the profile (runs/quick); the committed full-profile runs (reports/full/runs) come from the GPU.
    """
    runs_dir = Path(runs_dir).resolve()
    if runs_dir.name != profile:
        raise ValueError(
            f"runs_dir {runs_dir} does not end in the profile name {profile!r}: mnv3.train writes "
            f"OUT/<profile>/<experiment>. Train into a folder like runs/{profile} instead."
        )
    cmd = [sys.executable, "-m", "mnv3.train", "--experiment", experiment, "--profile", profile,
           "--out", str(runs_dir.parent), "--data-root", str(Path(data_root).resolve())]  # fmt: skip
    return cmd + (["--data-mirror", str(Path(data_mirror).resolve())] if data_mirror else [])


def runs_table(runs: Mapping[str, Path], data_root: str | Path | None = None):
    """Per run: dataset, epochs, training images per epoch, best validation and test accuracy,
    seconds per epoch, device. An unfinished run's test accuracy is its :func:`run_state` label."""
    import pandas as pd

    rows = []
    for name, run_dir in runs.items():
        config = json.loads((run_dir / "config.json").read_text())
        metrics = load_metrics(run_dir)
        test = load_test(run_dir)
        state = run_state(run_dir)
        rows.append(
            {
                "experiment": name,
                "dataset": dataset_label(config, data_root),
                "epochs": len(metrics) if test else f"{state['epochs_done']} of {state['epochs_planned'] or '?'}",
                "train images": config.get("train_samples"),
                "best val accuracy": format_accuracy(metrics["val_acc"].max()),
                "test accuracy": format_accuracy(test["test_accuracy"]) if test else state["label"],
                "seconds per epoch": round(float(metrics["epoch_seconds"].mean()), 1),
                "images per second": round(float(metrics["images_per_sec"].mean())),
                "device": (test or {}).get("device", config.get("device")),
            }
        )
    return pd.DataFrame(rows).set_index("experiment") if rows else pd.DataFrame()


def plot_curves(runs: Mapping[str, Path], *, title: str = "", labels: Mapping[str, str] | None = None,
                colors: Mapping[str, str] | None = None):
    """Accuracy (left) and loss (right) per epoch: solid lines train, dashed validation.

    ``labels`` and ``colors`` map experiment names to legend labels and matplotlib colours, so one
    run keeps its colour across figures. An unfinished run's legend says so (:func:`run_state`).
    A run of one epoch has no curve: its values are drawn as large markers with the value written
    beside them. The epoch axis always spans 0.5 to the last epoch + 0.5, in whole epochs.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(12, 4))
    last_epoch = 1
    for i, (name, run_dir) in enumerate(runs.items()):
        m = load_metrics(run_dir)
        color = (colors or {}).get(name, f"C{i}")
        label = (labels or {}).get(name, name)
        state = run_state(run_dir)
        if state["status"] == "unfinished":
            label += f", {state['label']}"
        last_epoch = max(last_epoch, int(m["epoch"].max()))
        single = len(m) == 1
        for ax, column, style, part in ((ax_acc, "train_acc", "-o", "train"), (ax_acc, "val_acc", "--s", "val"),
                                        (ax_loss, "train_loss", "-o", "train"), (ax_loss, "val_loss", "--s", "val")):
            ax.plot(m["epoch"], m[column], style, color=color, ms=9 if single else 5, mfc="none" if part == "val" else color,
                    label=f"{label} {part}" + (" (1 epoch)" if single else ""))
            if single:  # one point: write its value, the only thing a one-epoch run tells
                value = float(m[column].iloc[0])
                ax.annotate(f"{part} {value:.3f}", (float(m["epoch"].iloc[0]), value), textcoords="offset points",
                            xytext=(10, -4 if part == "train" else 6), fontsize=8, color=color)
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    ax_loss.set(xlabel="epoch", ylabel="loss (train: label-smoothed)", title="loss")
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_xlim(0.5, last_epoch + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # whole epochs, even for one
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def training_budget(run_dir: str | Path) -> dict[str, Any]:
    """What a run trained on: {"epochs", "train_images", "images_seen"}; epochs counts the rows of
    metrics.csv (the epochs actually trained), train_images is per epoch (config.json)."""
    config = json.loads((Path(run_dir) / "config.json").read_text())
    metrics = load_metrics(run_dir)
    epochs = 0 if metrics is None else len(metrics)
    images = config.get("train_samples")
    return {"epochs": epochs, "train_images": images, "images_seen": epochs * images if images else None}


def comparison_note(runs: Mapping[str, Path], labels: Mapping[str, str] | None = None) -> str:
    """One Markdown sentence for an ablation figure: whether the compared runs trained alike.

    Like with like (same epochs, same training images per epoch, all finished): says so.
    Otherwise it says plainly that the runs differ, and how, so the curves are not read as the
    effect of the one setting the figure is about.
    """
    budgets = {name: training_budget(run_dir) for name, run_dir in runs.items()}
    states = {name: run_state(run_dir) for name, run_dir in runs.items()}

    def describe(name: str) -> str:
        b = budgets[name]
        images = f"{b['train_images']:,}" if b["train_images"] else "?"
        unfinished = f", {states[name]['label']}" if states[name]["status"] == "unfinished" else ""
        return f"{(labels or {}).get(name, name)}: {b['epochs']} epoch(s) of {images} images{unfinished}"

    same = len({(b["epochs"], b["train_images"]) for b in budgets.values()}) == 1
    finished = all(s["status"] == "ok" for s in states.values())
    if same and finished:
        return f"Like with like: every run here trained for {describe(next(iter(runs))).split(': ', 1)[1]}."
    return ("**These runs did not train alike**, so the difference between their curves is not the effect of this "
            "setting alone: " + "; ".join(describe(n) for n in runs) + ".")


def plot_seconds_per_epoch(runs: Mapping[str, Path], *, labels: Mapping[str, str] | None = None,
                           colors: Mapping[str, str] | None = None):
    """Mean seconds per epoch and training throughput of each run, as bars."""
    import matplotlib.pyplot as plt

    names = list(runs)
    metrics = [load_metrics(runs[n]) for n in names]
    fig, (ax_s, ax_i) = plt.subplots(1, 2, figsize=(12, 3.2))
    shown = [(labels or {}).get(n, n) for n in names]
    palette = [(colors or {}).get(n, f"C{i}") for i, n in enumerate(names)]
    ax_s.barh(shown, [float(m["epoch_seconds"].mean()) for m in metrics], color=palette)
    ax_s.set(xlabel="seconds per epoch (mean)", title="time per epoch")
    ax_i.barh(shown, [float(m["images_per_sec"].mean()) for m in metrics], color=palette)
    ax_i.set(xlabel="training images per second", title="throughput")
    for ax in (ax_s, ax_i):
        ax.grid(axis="x", alpha=0.3)
        ax.invert_yaxis()
    fig.tight_layout()
    return fig


# --- 01: nonlinearities


def nonlinearity_curves(lo: float = -6.0, hi: float = 6.0, points: int = 1201):
    """sigmoid, h-sigmoid, swish and h-swish on [lo, hi], and the hard-minus-smooth differences."""
    import pandas as pd
    import torch
    import torch.nn.functional as F

    x = torch.linspace(lo, hi, points, dtype=torch.float64)
    frame = pd.DataFrame(
        {
            "x": x.numpy(),
            "sigmoid": torch.sigmoid(x).numpy(),
            "h-sigmoid": F.hardsigmoid(x).numpy(),
            "swish": (x * torch.sigmoid(x)).numpy(),
            "h-swish": F.hardswish(x).numpy(),
        }
    )
    frame["h-sigmoid - sigmoid"] = frame["h-sigmoid"] - frame["sigmoid"]
    frame["h-swish - swish"] = frame["h-swish"] - frame["swish"]
    return frame


def nonlinearity_errors(curves) -> Any:
    """Maximum absolute error of each hard function against its smooth original, and where."""
    import pandas as pd

    rows = []
    for hard, smooth in (("h-sigmoid", "sigmoid"), ("h-swish", "swish")):
        diff = (curves[hard] - curves[smooth]).abs()
        i = int(diff.idxmax())
        rows.append({"function": hard, "approximates": smooth, "max |error|": float(diff[i]), "at x": float(curves["x"][i]),
                     "mean |error|": float(diff.mean())})
    return pd.DataFrame(rows).set_index("function")


def time_nonlinearities(elements: int = 10_000_000, repeats: int = 7, *, threads: int | None = None, seed: int = 0):
    """Median CPU time of each nonlinearity on a float32 tensor of ``elements`` values.

    Each function is timed out of place (it allocates its output, as in inference). The hard
    functions are timed twice: PyTorch's fused kernels (what mnv3.layers uses) and the paper's
    formula written as separate tensor ops. ``threads`` sets torch's CPU threads for the
    measurement (default: unchanged).
    """
    import pandas as pd
    import torch
    import torch.nn.functional as F

    functions: dict[str, Callable[[Any], Any]] = {
        "ReLU (reference)": torch.relu,
        "sigmoid": torch.sigmoid,
        "h-sigmoid (fused)": F.hardsigmoid,
        "h-sigmoid (formula: relu6(x+3)/6)": lambda x: F.relu6(x + 3) / 6,
        "swish (x * sigmoid(x))": lambda x: x * torch.sigmoid(x),
        "swish (fused silu)": F.silu,
        "h-swish (fused)": F.hardswish,
        "h-swish (formula: x*relu6(x+3)/6)": lambda x: x * F.relu6(x + 3) / 6,
    }
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        x = torch.randn(elements, generator=torch.Generator().manual_seed(seed)) * 4
        rows = []
        with torch.inference_mode():
            for name, fn in functions.items():
                fn(x)  # warm-up: allocator and dispatch
                times = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    fn(x)
                    times.append(time.perf_counter() - t0)
                times.sort()
                median = times[len(times) // 2]
                rows.append({"function": name, "median ms": 1e3 * median, "ns per element": 1e9 * median / elements})
    finally:
        torch.set_num_threads(previous)
    frame = pd.DataFrame(rows).set_index("function")
    frame["relative to ReLU"] = frame["median ms"] / frame.loc["ReLU (reference)", "median ms"]
    return frame


# --- 02: architecture

# Paper, Table 3 (224x224, 1000 classes, width 1.0): millions of parameters and multiply-adds.
PAPER_TOTALS = {"small": {"params": 2.5e6, "macs": 56e6}, "large": {"params": 5.4e6, "macs": 219e6}}


def architecture_table(arch: str, *, input_size: int = 224, num_classes: int = 1000, in_channels: int = 3, drop_first_strides: int = 0):
    """The paper's table for ``arch``, from its JSON spec: one row per layer with parameters and MACs."""
    import pandas as pd

    from .model import build_model
    from .summary import summarize

    model = build_model(arch, num_classes=num_classes, in_channels=in_channels, drop_first_strides=drop_first_strides)
    rows = summarize(model, input_size)
    frame = pd.DataFrame(rows)[["input", "operator", "exp_size", "out", "se", "nl", "stride", "params", "macs"]]
    frame = frame.rename(columns={"exp_size": "exp size", "out": "#out", "se": "SE", "nl": "NL", "stride": "s", "macs": "MACs"})
    frame["exp size"] = [("-" if v is None else str(v)) for v in (r["exp_size"] for r in rows)]
    frame["SE"] = ["✓" if r["se"] else "-" for r in rows]
    frame["NL"] = [r["nl"] or "-" for r in rows]
    frame.index = range(1, len(frame) + 1)
    frame.index.name = "row"
    return frame


def totals_against_references(input_size: int = 224, num_classes: int = 1000):
    """Parameters and MACs of mnv3's Small and Large against the paper and torchvision.

    The paper and the model cards give totals at 224x224 with 1000 classes only; their columns are
    None for other settings. Parameters are counts, MACs millions.
    """
    import pandas as pd
    import torchvision
    from torchvision.models import MobileNet_V3_Large_Weights, MobileNet_V3_Small_Weights

    from .model import build_model
    from .summary import summarize, totals

    weights = {"small": MobileNet_V3_Small_Weights.IMAGENET1K_V1, "large": MobileNet_V3_Large_Weights.IMAGENET1K_V1}
    builders = {"small": torchvision.models.mobilenet_v3_small, "large": torchvision.models.mobilenet_v3_large}
    rows = []
    for arch in ("small", "large"):
        t = totals(summarize(build_model(arch, num_classes=num_classes), input_size))
        tv = builders[arch](num_classes=num_classes)  # no weights: nothing is downloaded
        meta = weights[arch].meta
        rows.append(
            {
                "model": f"MobileNetV3-{arch.capitalize()} 1.0",
                "mnv3 parameters": t["params"],
                "torchvision parameters (built)": sum(p.numel() for p in tv.parameters()),
                "torchvision parameters (model card)": meta["num_params"] if num_classes == 1000 else None,
                "paper parameters": f"{PAPER_TOTALS[arch]['params'] / 1e6:.1f}M" if num_classes == 1000 else None,
                "mnv3 MACs (M)": round(t["macs"] / 1e6, 2),
                "torchvision MACs (M, model card)": round(meta["_ops"] * 1e3, 1) if num_classes == 1000 and input_size == 224 else None,
                "paper MACs (M)": round(PAPER_TOTALS[arch]["macs"] / 1e6) if num_classes == 1000 and input_size == 224 else None,
            }
        )
    return pd.DataFrame(rows).set_index("model")


def experiment_architectures(profile: str = "quick"):
    """Parameters and MACs of each experiment's model at its image size (10 classes)."""
    import pandas as pd

    from .data import dataset_info
    from .experiments import get_experiment
    from .model import build_model
    from .summary import summarize, totals

    rows = []
    for name in EXPERIMENTS:
        exp = get_experiment(name, profile)
        info = dataset_info(exp.dataset)
        size = exp.image_size or info.image_size
        model = build_model(exp.arch, num_classes=info.num_classes, in_channels=info.in_channels,
                            width_mult=exp.width_mult, drop_first_strides=exp.drop_first_strides)
        t = totals(summarize(model, size))
        rows.append({"experiment": name, "dataset": DATASET_NAMES.get(exp.dataset, exp.dataset), "arch": exp.arch,
                     "input": f"{size}x{size}x{info.in_channels}", "drop_first_strides": exp.drop_first_strides,
                     "parameters": t["params"], "MACs": t["macs"]})
    return pd.DataFrame(rows).set_index("experiment")


def torchvision_equivalence(arch: str, *, num_classes: int = 1000, input_size: int = 224, batch: int = 2, seed: int = 0) -> dict[str, Any]:
    """Check, live, that mnv3 and torchvision build the same network.

    A torchvision model with random weights (and BatchNorm statistics) is converted with
    ``from_torchvision``; both run the same random batch in eval mode. Also checks the state-dict
    keys and shapes, the parameter counts, and the way back through ``to_torchvision``.
    """
    import torch
    import torchvision

    from .model import build_model
    from .torchvision_compat import from_torchvision, randomize_weights_, to_torchvision

    builders = {"small": torchvision.models.mobilenet_v3_small, "large": torchvision.models.mobilenet_v3_large}
    torch.manual_seed(seed)
    tv = builders[arch](num_classes=num_classes).eval()
    randomize_weights_(tv, seed)
    ours = from_torchvision(tv).eval()
    fresh = build_model(arch, num_classes=num_classes)
    x = torch.randn(batch, 3, input_size, input_size, generator=torch.Generator().manual_seed(seed + 1))
    with torch.inference_mode():
        y_tv, y_ours = tv(x), ours(x)
        y_back = to_torchvision(ours).eval()(x)
    tv_shapes = {k: tuple(v.shape) for k, v in tv.state_dict().items()}
    fresh_shapes = {k: tuple(v.shape) for k, v in fresh.state_dict().items()}
    return {
        "arch": arch,
        "same state-dict keys and shapes": tv_shapes == fresh_shapes,
        "parameters (mnv3)": sum(p.numel() for p in fresh.parameters()),
        "parameters (torchvision)": sum(p.numel() for p in tv.parameters()),
        "max |output difference|": float((y_tv - y_ours).abs().max()),
        "max |difference| after to_torchvision": float((y_tv - y_back).abs().max()),
        "output scale (max |logit|)": float(y_tv.abs().max()),
    }



# --- 05: evaluation

# A pair of classes stands out when it holds at least this many mistakes and at least STANDOUT_SHARE
# times its even share (all mistakes spread evenly over the n(n-1) ordered pairs). Fewer than 3 is
# within what chance gives a classifier with a handful of mistakes.
STANDOUT_MIN_COUNT = 3
STANDOUT_SHARE = 2.0


def standout_pairs(cm: Any, class_names: Sequence[str], k: int = 10) -> tuple[list[dict[str, Any]], str]:
    """The confused pairs that stand out, largest first, and one Markdown sentence about them.

    ``cm``: the confusion matrix (rows true, columns predicted), as mnv3.evaluate.confusion gives.
    A pair stands out with at least :data:`STANDOUT_MIN_COUNT` mistakes and at least
    :data:`STANDOUT_SHARE` times the even share. At most ``k`` pairs, but a tie is never cut: all
    pairs tied with the k-th are kept. The rows are mnv3.evaluate.most_confused_pairs's. When none
    stands out the list is empty and the sentence says how the mistakes are spread.
    """
    import numpy as np

    from .evaluate import most_confused_pairs

    matrix = np.asarray(cm)
    n = len(class_names)
    mistakes = int(matrix.sum() - np.trace(matrix))
    if mistakes == 0:
        return [], "No test image was misclassified."
    pairs = most_confused_pairs(matrix, class_names, k=n * n)
    share = mistakes / (n * (n - 1))
    threshold = max(STANDOUT_MIN_COUNT, STANDOUT_SHARE * share)
    standing = [p for p in pairs if p["count"] >= threshold]
    if len(standing) > k:
        standing = [p for p in standing if p["count"] >= standing[k - 1]["count"]]
    rule = (f"a pair stands out with at least {STANDOUT_MIN_COUNT} mistakes and at least {STANDOUT_SHARE:g}x its even share "
            f"({share:.2f} of the {mistakes:,} mistakes over the {n * (n - 1)} ordered pairs)")
    if not standing:
        return [], (f"**No pair stands out**: the {mistakes:,} mistakes are spread over {len(pairs)} pairs, at most "
                    f"{pairs[0]['count']} in any one ({rule}).")
    covered = sum(p["count"] for p in standing)
    return standing, (f"{len(standing)} pair(s) stand out, holding {covered:,} of the {mistakes:,} mistakes ({rule}).")


# --- 07: benchmarks


def frontier_paper_only(frontier: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of frontier.json (mnv3.bench) without the trained runs' accuracies, so that its plot's
    accuracy axis holds one dataset, the paper's ImageNet top-1. The page lists the runs' own
    accuracies from the run folders instead (:func:`trained_runs_at_widths`)."""
    import copy

    data = copy.deepcopy(dict(frontier))
    for row in data.get("results", []):
        row["accuracy"] = []
    return data


def label_frontier_accuracy_axis(fig) -> None:
    """Name the dataset of the frontier figure's accuracy panel (its third axes, when drawn)."""
    if len(fig.axes) >= 3:
        ax = fig.axes[2]
        ax.set_ylabel("ImageNet top-1 accuracy (%), the paper's Table 3")
        ax.set_title("the paper's ImageNet accuracy against latency here")


def trained_runs_at_widths(runs_dir: str | Path, frontier: Mapping[str, Any] | None = None, experiments: Sequence[str] = EXPERIMENTS):
    """The finished runs of ``runs_dir`` (the index's source), one row each: dataset, arch, width,
    input size, test accuracy and, from ``frontier`` (frontier.json), the ExecuTorch fp32 batch-1
    latency in ms of the 224x224, 1000-class model of the same arch and width (None when not
    measured). Unfinished and missing runs are left out: they have no test accuracy."""
    import pandas as pd

    latency = {(r["arch"], float(r["width"])): r.get("median_ms") for r in (frontier or {}).get("results", [])}
    rows = []
    for name in experiments:
        run_dir = Path(runs_dir) / name
        test = load_test(run_dir)
        if test is None or not (run_dir / "config.json").is_file():
            continue
        config = json.loads((run_dir / "config.json").read_text())
        arch = config.get("fields", {}).get("arch") or config["model"]["spec"]["name"].rsplit("_", 1)[-1]
        width = float(config.get("fields", {}).get("width_mult") or config["model"].get("width_mult", 1.0))
        rows.append({
            "experiment": name, "dataset": dataset_label(config), "arch": arch, "width": width,
            "input": f"{config['image_size']}x{config['image_size']}", "test accuracy": format_accuracy(test["test_accuracy"]),
            "ExecuTorch fp32 latency, 224x224 model (ms)": latency.get((arch, width)),
        })  # fmt: skip
    return pd.DataFrame(rows).set_index("experiment") if rows else pd.DataFrame()


# --- 06: export

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
    return EXPORT_HINT.format(profile=profile, runs_dir=runs_dir, experiment=experiment)


def require_export(runs_dir: str | Path, experiment: str, profile: str) -> Path:
    """RUN/export when its parity.json exists, else MissingExportError saying how to make it."""
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

    ``parity`` is parity.json and ``manifest`` model.json, each None when the file is absent.
    """
    path = Path(path)
    export_dir = path / "export" if (path / "export").is_dir() else path

    def read(name: str) -> dict[str, Any] | None:
        file = export_dir / name
        return json.loads(file.read_text()) if file.is_file() else None

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
        from .export import INT8_MAX_DROP_POINTS as budget  # noqa: N811
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


if __name__ == "__main__":
    sys.exit(main())
