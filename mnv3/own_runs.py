"""Your own runs: the run folders of a profile besides the named experiments' own, and how the
reports show them.

``python -m mnv3.train --experiment mnist_small --epochs 5 --lr 0.05`` trains into
``runs/quick/mnist_small-epochs5-lr0.05/`` (:func:`mnv3.runs.run_name`); ``--name`` chooses another
folder, and an image folder (``--dataset folder:PATH``) trains into one the same way. Such a folder
is one of *your own runs*. The reports show every one of them:

- the index gives each a row below the experiments (:func:`own_summary_rows`), naming the experiment
  it is based on and what it changed (config.json's ``overrides`` and seed,
  :func:`mnv3.runs.describe_changes`), with the same columns; an unfinished run is labelled as an
  unfinished experiment is, and a damaged one is shown as unreadable, naming the file;
- the training page of the experiment it is based on (notebook 03 for ``mnist_small``, 04 for the
  CIFAR-10 ones) tabulates it (:func:`own_runs_table`) and draws its curves beside that experiment's
  (:func:`beside_their_experiments`). An image-folder run is a run of the experiment it names, with
  ``dataset=folder:...`` among its changes: its curves are accuracy and loss per epoch like any other.

Own runs get no evaluation or export page (each would cost a notebook run per folder in ``make
reports``): ``python -m mnv3.evaluate RUN_DIR``, ``python -m mnv3.export RUN_DIR``, or notebook 05 with
``-p experiment NAME`` make them, and ``python -m mnv3.runs runs/quick`` tabulates every run of the
folder with what it changed. Everything here reads the folders through :mod:`mnv3.runs` (and so
:func:`mnv3.records.read_record`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from .experiments import EXPERIMENTS
from .paths import shown_path
from .runs import describe_changes, experiment_summary, load_record, record_problem, runs_table

__all__ = ["own_run_folders", "find_own_runs", "own_runs_markdown", "own_runs_table", "beside_their_experiments",
           "own_summary_rows"]  # fmt: skip


def own_run_folders(runs_dir: str | Path, experiments: Sequence[str] = EXPERIMENTS) -> list[Path]:
    """The folders of ``runs_dir`` that hold a run (a ``config.json``, written before the first
    epoch) and are not named after one of ``experiments``, sorted by name; [] when ``runs_dir``
    does not exist."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    return sorted(p.parent for p in runs_dir.glob("*/config.json") if p.parent.name not in experiments)


def find_own_runs(runs_dir: str | Path, based_on: Sequence[str]) -> tuple[dict[str, Path], dict[str, str]]:
    """(drawn, not drawn) for a training page that shows the experiments ``based_on``.

    drawn: {name: folder} of your own runs whose config.json names one of ``based_on`` and whose
    metrics.csv holds at least one epoch. not drawn: {name: why} for those based on them that have
    no epoch yet, and for every own run whose records cannot be read (one line naming the file and
    the field, as :func:`mnv3.runs.record_problem` gives it): its experiment is unknown, so each
    training page names it.
    """
    drawn: dict[str, Path] = {}
    not_drawn: dict[str, str] = {}
    for run_dir in own_run_folders(runs_dir):
        problem = record_problem(run_dir)
        if problem:
            not_drawn[run_dir.name] = f"unreadable: {problem}"
            continue
        if load_record(run_dir).get("experiment") not in based_on:
            continue
        if (run_dir / "metrics.csv").is_file():
            drawn[run_dir.name] = run_dir
        else:
            not_drawn[run_dir.name] = "no epoch recorded yet (it is starting, or stopped in its first epoch)"
    return drawn, not_drawn


def own_runs_markdown(drawn: Mapping[str, Path], not_drawn: Mapping[str, str], runs_dir: str | Path) -> str:
    """The Markdown a training page puts above your own runs: how many there are, where they come
    from, and each run that is not drawn with the reason; or, when there are none, how to make one."""
    where = shown_path(runs_dir)
    tabulate = f"`python -m mnv3.runs {where}` tabulates every run of the folder with what it changed."
    if not drawn and not not_drawn:
        return (f"No run of your own in `{where}` is based on these experiments. A run trained with overrides "
                f"(`python -m mnv3.train --experiment NAME --epochs 5 --lr 0.05` writes `runs/<profile>/NAME-epochs5-lr0.05`) "
                f"or with `--name` appears here, with what it changed, once it is in this folder. {tabulate}")
    lines = [f"**{len(drawn)} run(s) of your own** in `{where}` (trained with overrides or `--name`), drawn below beside the "
             f"experiments they are based on; the column *changes* names what each changed. {tabulate}"]
    lines += [f"- `{name}` is not drawn: {why}" for name, why in not_drawn.items()]
    return "\n".join(lines)


def own_runs_table(runs: Mapping[str, Path], data_root: str | Path | None = None):
    """:func:`mnv3.runs.runs_table` of your own runs, with two columns in front: *based on* (the
    experiment) and *changes* (:func:`mnv3.runs.describe_changes`)."""
    table = runs_table(runs, data_root)
    records = {name: load_record(run_dir) for name, run_dir in runs.items()}
    table.insert(0, "based on", [records[n].get("experiment") for n in table.index])
    table.insert(1, "changes", [describe_changes(records[n].get("overrides", {}), records[n].get("seed", 0)) for n in table.index])
    return table


def beside_their_experiments(own: Mapping[str, Path], experiment_runs: Mapping[str, Path]) -> dict[str, Path]:
    """The runs of ``experiment_runs`` (the page's named experiments) that an own run is based on,
    then the own runs: what :func:`mnv3.runs.plot_curves` draws, so a change is seen against its
    experiment."""
    bases = {load_record(run_dir).get("experiment") for run_dir in own.values()}
    return {**{name: path for name, path in experiment_runs.items() if name in bases}, **own}


def own_summary_rows(runs_dir: str | Path, data_root: str | Path | None = None) -> list[dict[str, Any]]:
    """The index's rows for your own runs: :func:`mnv3.runs.experiment_summary` of each folder of
    :func:`own_run_folders` ("experiment" is the folder's name; "based_on" and "changes" say what it
    is), in name order. A damaged record gives a row with status "unreadable" naming the file."""
    return [experiment_summary(run_dir, data_root) for run_dir in own_run_folders(runs_dir)]
