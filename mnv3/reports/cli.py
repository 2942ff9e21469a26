"""``python -m mnv3.reports``: run the report pages, rewrite the index, or list the notebooks."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..experiments import PROFILES
from ..files import os_error_line
from . import pages
from .index import write_index
from .pages import Notebook, notebook_by_name
from .runner import ReportResult, execute_notebook, execute_report, kernel_environment, make_context

__all__ = ["run_reports", "main"]

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
    kernel_environment()
    notebooks = list(pages.NOTEBOOKS if notebooks is None else notebooks)
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
    run = sub.add_parser("run", help="execute the notebooks and write the HTML reports and the index",
                         description="Execute every notebook (or --only some) with papermill, convert each to HTML and write "
                                     "index.html. A notebook whose inputs are missing is skipped, and the index says which make "
                                     "target makes them; a failing cell fails the run, naming the notebook and the cell.")
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
    index.add_argument("--profile", default="quick", choices=PROFILES, help="quick (default) or full")
    index.add_argument("--runs-dir", default=None, help="run folders (default runs/quick, or reports/full/runs for full)")
    index.add_argument("--out", default=None, help="the reports folder whose index.html is rewritten (default reports/<profile>)")
    sub.add_parser("list", help="list the notebooks and their parameters")
    execute = sub.add_parser(
        "execute", help="execute one notebook into a file of your choice, as papermill does, without the kernel's TCP warning",
        description="Execute one notebook with papermill, as `papermill NOTEBOOK OUT -p NAME VALUE` does, with the report "
                    "runner's kernel: this checkout's mnv3, headless (it never trains), and without the kernel's 'running over "
                    "TCP without encryption' warning, which papermill's own command line cannot pass the kernel the setting "
                    "to silence. Nothing else is written: no HTML page, no index.",
        epilog="example: python -m mnv3.reports execute 05_evaluate /tmp/05.ipynb -p experiment=cifar10_small_s2",
    )  # fmt: skip
    execute.add_argument("notebook", help="a notebook's name (python -m mnv3.reports list) or the path of an .ipynb")
    execute.add_argument("out", help="the executed notebook, outputs included (an .ipynb path)")
    execute.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                         help="a parameter the notebook declares (VALUE is JSON, else a string), e.g. -p experiment=mnist_small")  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status: 0, 1 when a notebook failed, 2 for a bad argument
    or a path that cannot be read or written (one line naming it)."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except OSError as err:
        print(f"python -m mnv3.reports: error: {os_error_line(err)}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.command == "list":
        import papermill

        for nb in pages.NOTEBOOKS:
            params = papermill.inspect_notebook(str(nb.path))
            per = " (once per experiment)" if nb.per_experiment else ""
            print(f"{nb.name}{per}: {nb.title}")
            for name, p in params.items():
                print(f"    {name} = {p['default']}")
        return 0
    if args.command == "execute":
        return _execute(args)
    if args.command == "index":
        try:
            ctx = make_context(args.profile, runs_dir=args.runs_dir, reports_dir=args.out)
        except ValueError as err:
            print(f"python -m mnv3.reports: error: {err}", file=sys.stderr)
            return 2
        print(write_index(ctx))
        return 0
    overrides = _parameters(args.param)
    if overrides is None:
        return 2
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
        print(f"[reports] {len(missing)} report(s) not executed (missing inputs or unfinished runs); the index says why for each.")
    if failed:
        for r in failed:
            print(f"error: {r.message}", file=sys.stderr)
        return 1
    return 0


def _parameters(items: Sequence[str]) -> dict[str, Any] | None:
    """``-p NAME=VALUE`` options as a dict; None (after one line on stderr) when one has no ``=``."""
    parameters = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            print(f"python -m mnv3.reports: error: --param expects NAME=VALUE, got {item!r}", file=sys.stderr)
            return None
        parameters[name] = _parse_value(value)
    return parameters


def _execute(args: argparse.Namespace) -> int:
    parameters = _parameters(args.param)
    if parameters is None:
        return 2
    try:
        out = execute_notebook(args.notebook, args.out, parameters)
    except ValueError as err:
        print(f"python -m mnv3.reports: error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:  # a cell failed
        print(f"python -m mnv3.reports: error: {err}", file=sys.stderr)
        return 1
    print(out)
    return 0
