"""The reports: notebooks executed with papermill, converted to HTML, and an index page.

    python -m mnv3.reports run --profile quick              # what `make reports` runs
    python -m mnv3.reports run --profile full               # reads the committed reports/full/runs
    python -m mnv3.reports run --only 05_evaluate -p max_samples=500
    python -m mnv3.reports list                             # the notebooks and their parameters
    python -m mnv3.reports execute 05_evaluate /tmp/05.ipynb -p experiment=mnist_small   # one notebook, as papermill

A run writes ``reports/<profile>/``:

- ``notebooks/<report>.ipynb``: each executed notebook, outputs included;
- ``<report>.html``: the same, converted by nbconvert (figures embedded as PNG data URIs);
- ``index.html``: links to every report and a summary table of the experiments (test accuracy,
  parameters, MACs, training time and device).

The notebooks are data (:data:`mnv3.reports.pages.NOTEBOOKS`). To add one, save it in ``notebooks/``
without outputs, with a cell tagged ``parameters``, and add an entry to that list, e.g.::

    Notebook(
        "08_robustness", "Robustness", "One line for the index.",
        per_experiment=True,                                   # run once per experiment
        profile_parameters={"quick": {"max_samples": 500}},    # only what it declares is passed
        requires=(RUN_REQUIREMENT, Requirement("{runs_dir}/{experiment}/export/parity.json", EXPORT_HINT)),
    )

Every notebook receives, when it declares them, the common parameters ``profile``, ``runs_dir``,
``reports_dir``, ``data_root`` and ``data_mirror``, and ``experiment`` when it is run once per
experiment. Paths are passed relative to the repository root (:func:`mnv3.paths.shown_path`), so that no page
shows a machine's folder layout, and the notebooks resolve them against the repository
(:func:`mnv3.paths.repo_path`), so that they run from the root and from ``notebooks/`` alike. A notebook whose
inputs (its :class:`Requirement` files) are missing is not executed and leaves no page: the index
says which ``make`` target produces them, and the run still succeeds. A cell that
raises fails the run, naming the notebook and the cell. ``tests/test_notebooks.py`` runs every entry
of the list (give new notebooks knobs that make them fast, and add them to its ``FAST``).

The package only runs: ``pages.py`` (which notebooks, with what), ``runner.py`` (papermill and
nbconvert), ``index.py`` with ``index.html.j2`` (the index) and ``cli.py``. What a notebook shows
comes from the module that wrote its data: :mod:`mnv3.nonlinearities` (01), :mod:`mnv3.summary`
(02), :mod:`mnv3.runs` and :mod:`mnv3.own_runs` (03, 04), :mod:`mnv3.evaluate` (05), :mod:`mnv3.export` (06) and
:mod:`mnv3.bench` (07).
"""
from __future__ import annotations

from .cli import main
from .index import profile_note, render_index, write_index
from .pages import (EXPORT_HINT, NOTEBOOK_DIR, NOTEBOOKS, RUN_REQUIREMENT, Notebook,
                    Requirement, notebook_by_name)
from .runner import ReportContext, ReportResult, default_runs_dir, execute_notebook, execute_report, make_context
from .cli import run_reports

__all__ = ["NOTEBOOK_DIR", "Requirement", "RUN_REQUIREMENT", "EXPORT_HINT", "Notebook",
           "NOTEBOOKS", "notebook_by_name", "ReportContext", "ReportResult", "default_runs_dir", "make_context", "execute_report", "execute_notebook",
           "run_reports", "write_index", "render_index", "profile_note", "main"]  # fmt: skip
