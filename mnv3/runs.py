"""The run folder: where a run lives, what it is called, who holds it, what it records, and every
reader of it.

A run of experiment E under profile P lands in ``OUT/P/NAME``. NAME is E for the profile's own
settings, and shows the overrides otherwise (``mnist_small-epochs5-lr0.05``), so that a run with
other settings never replaces the profile's result. ``--name`` chooses it explicitly. It holds:

- ``config.json``: the experiment's fields, the model config, seed, versions, git commit, device
  and machine (:func:`run_record`);
- ``metrics.csv``: one row per epoch (:data:`METRIC_FIELDS`);
- ``last.pt`` / ``best.pt``: checkpoints (best by validation accuracy; :mod:`mnv3.checkpoint`);
- ``test.json``: the final test-set evaluation, written last: a folder with it is finished.

Every reader here goes through :func:`mnv3.records.read_record`, which checks each field it reads
and raises RecordError naming the file, the field and the value. The index and ``python -m
mnv3.runs`` show a run whose records are damaged as unreadable, naming the file, and go on.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import re
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from .data import DATASET_NAMES
from .experiments import EXPERIMENTS, Experiment, get_experiment
from .files import os_error_line, write_json_atomic, write_text_atomic
from .paths import shown_path
from .records import METRIC_FIELDS, RecordError, read_record

__all__ = [
    "run_name",
    "overrides",
    "experiment_record",
    "describe_changes",
    "METRIC_FIELDS",
    "run_record",
    "write_record",
    "write_metrics",
    "write_test",
    "load_record",
    "load_metrics",
    "load_test",
    "run_state",
    "find_runs",
    "record_problem",
    "MissingRunError",
    "require_run",
    "train_hint",
    "train_command",
    "missing_runs_markdown",
    "format_accuracy",
    "dataset_label",
    "experiment_summary",
    "summary_rows",
    "runs_table",
    "plot_curves",
    "training_budget",
    "comparison_note",
    "plot_seconds_per_epoch",
    "ablation_rows",
    "ablation_table",
    "AUTO_AUGMENT_NOTE",
    "FLIP_TTA_FILE",
    "main",
]

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=-]*$")


def overrides(experiment: str, profile: str, exp: Experiment) -> dict[str, Any]:
    """The fields of ``exp`` that differ from the profile's own settings, in declaration order."""
    default = get_experiment(experiment, profile)
    return {f.name: getattr(exp, f.name) for f in dataclasses.fields(Experiment) if getattr(exp, f.name) != getattr(default, f.name)}


def run_name(experiment: str, profile: str, exp: Experiment, seed: int = 0, name: str | None = None) -> str:
    """The run folder's name: ``name`` when given, else the experiment plus its overrides and seed.

    Raises ValueError for a name that is not a plain folder name.
    """
    if name is not None:
        if not _SAFE_NAME.match(name):
            raise ValueError(f"--name {name!r}: use letters, digits and . _ + = - only (it becomes a folder name).")
        return name
    parts = [f"{key.replace('_', '-')}{value}" for key, value in overrides(experiment, profile, exp).items()]
    if seed:
        parts.append(f"seed{seed}")
    return "-".join([experiment, *(re.sub(r"[^A-Za-z0-9_.+=-]", "_", p) for p in parts)])


# ============================================================================ the record


# The record a training writes (train.py calls these, nothing else writes a run folder);
# METRIC_FIELDS, metrics.csv's columns, comes from mnv3.records, which reads them back.


def experiment_record(exp: Experiment, *, experiment: str, name: str, profile: str, seed: int) -> dict[str, Any]:
    """What a run's settings resolve to, as ``config.json`` records them (its first keys): experiment,
    name (the run folder's), profile, fields (every field after the profile and the overrides),
    overrides (those that differ from the profile's, :func:`overrides`), dataset and seed. ``python -m
    mnv3.train --print-config`` prints it."""
    return {"experiment": experiment, "name": name, "profile": profile, "fields": dataclasses.asdict(exp),
            "overrides": overrides(experiment, profile, exp), "dataset": exp.dataset, "seed": seed}


def describe_changes(changed: Mapping[str, Any], seed: int | None = 0) -> str:
    """What a run changed from its experiment's profile settings, as the pages and ``python -m
    mnv3.runs`` print it: ``"epochs=5, lr=0.05"`` (``changed`` is config.json's ``overrides``; a seed
    other than 0 counts as a change), or ``"the profile's own"``. An absolute path in a value
    (``folder:/home/me/photos``, a spec file) is shown relative to the repository (:func:`mnv3.paths.shown_path`)."""
    def shown(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        prefix = "folder:" if value.startswith("folder:") else ""
        rest = value[len(prefix):]
        return prefix + shown_path(rest) if Path(rest).is_absolute() else value

    items = {**changed, **({"seed": seed} if seed else {})}
    return ", ".join(f"{key}={shown(value)}" for key, value in items.items()) or "the profile's own"


def run_record(exp: Experiment, *, experiment: str, name: str, profile: str, seed: int, split_seed: int, image_size: int,
               model_config: dict[str, Any], train_samples: int, val_samples: int, world_size: int, device: str, threads: int,
               data_root: str | Path, data_mirror: str | Path | None, command: str, dataset_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """``config.json``: the experiment's fields and their overrides, the model config, seeds, split
    sizes, the device and machine (:func:`mnv3.environment.machine_record`), versions, the git
    commit, the data paths and the command that (re)starts the run; ``dataset_info`` is the
    dataset's description (:func:`mnv3.imagefolder.dataset_record`: classes, channels, size,
    mean, std, and an image folder's details), which export, evaluation and prediction read back."""
    import torch

    from . import __version__
    from .environment import git_commit, machine_record, package_version, versions

    return {
        **experiment_record(exp, experiment=experiment, name=name, profile=profile, seed=seed),
        **({"dataset_info": dataset_info} if dataset_info is not None else {}), "image_size": image_size, "model": model_config,
        "split_seed": split_seed, "train_samples": train_samples, "val_samples": val_samples,
        "world_size": world_size, "device": device, "machine": machine_record(threads),
        "versions": {"mnv3": __version__, **versions(), "torch": torch.__version__, "torchvision": package_version("torchvision")},
        "git_commit": git_commit(),
        "data_root": str(data_root), "data_mirror": str(data_mirror) if data_mirror else None,
        "command": command,
    }  # fmt: skip


def write_record(run_dir: str | Path, record: dict[str, Any]) -> None:
    """Write ``config.json`` (atomically; the folder is created)."""
    write_json_atomic(Path(run_dir) / "config.json", record)


def write_metrics(run_dir: str | Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Rewrite ``metrics.csv`` with ``rows`` (one per epoch, keys :data:`METRIC_FIELDS`), atomically."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=METRIC_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(Path(run_dir) / "metrics.csv", text.getvalue())


def write_test(run_dir: str | Path, result: dict[str, Any]) -> None:
    """Write ``test.json``, last of all: a run folder with it is finished."""
    write_json_atomic(Path(run_dir) / "test.json", result)


def load_record(run_dir: str | Path) -> dict[str, Any]:
    """``config.json`` as a dict, checked (:func:`mnv3.records.read_record`). Raises RecordError
    naming the file when it is missing, damaged or holds a value outside its bounds."""
    return read_record(Path(run_dir) / "config.json")


# ============================================================================ readers


def load_metrics(run_dir: str | Path):
    """A run's ``metrics.csv`` as a DataFrame (one row per epoch, columns :data:`METRIC_FIELDS`),
    or None when there is none. Raises RecordError naming the line and column of a bad value."""
    import pandas as pd

    path = Path(run_dir) / "metrics.csv"
    if not path.exists():
        return None
    return pd.DataFrame(read_record(path), columns=METRIC_FIELDS).astype({"epoch": "int64"})


def load_test(run_dir: str | Path) -> dict[str, Any] | None:
    """A run's ``test.json`` (checked), or None when the run has none (it is not finished).
    Raises RecordError naming the file and the field when it is damaged."""
    path = Path(run_dir) / "test.json"
    return read_record(path) if path.exists() else None


def run_state(run_dir: str | Path) -> dict[str, Any]:
    """Whether a run folder holds a result: {"status", "epochs_done", "epochs_planned", "label"}.

    status is "ok" (test.json: finished), "unfinished" (config.json but no test.json: stopped, or
    still training), "missing" (no config.json) or "unreadable" (config.json or metrics.csv is
    damaged: the label names the file and the field; test.json's content is not read here). epochs_done counts the rows of metrics.csv,
    epochs_planned is config.json's ``fields.epochs`` (None when unknown). label is what the
    pages print: "finished", "no run folder", or for an unfinished run "unfinished (stopped at
    epoch 54 of 60)", the epoch it was in when it stopped (53 complete), or "validation only (...)"
    for a run trained to its end with ``--skip-test`` (a sweep candidate).
    """
    run_dir = Path(run_dir)
    state: dict[str, Any] = {"status": "missing", "epochs_done": 0, "epochs_planned": None, "label": "no run folder"}
    config_path = run_dir / "config.json"
    if not config_path.exists():
        return state
    try:
        config = load_record(run_dir)
        planned = config.get("fields", {}).get("epochs")
        metrics = load_metrics(run_dir)
    except RecordError as err:
        return {**state, "status": "unreadable", "label": f"unreadable: {err}"}
    done = 0 if metrics is None else len(metrics)
    state.update(epochs_done=done, epochs_planned=planned)
    if (run_dir / "test.json").is_file():
        return {**state, "status": "ok", "label": "finished"}
    if planned is None:
        label = f"unfinished (stopped after {done} epochs)"
    elif done >= planned and "--skip-test" in str(config.get("command", "")).split():
        label = f"validation only (all {planned} epochs trained; --skip-test, the test set not read)"
    elif done >= planned:
        label = f"unfinished (all {planned} epochs trained, no test evaluation)"
    else:
        label = f"unfinished (stopped at epoch {done + 1} of {planned})"
    return {**state, "status": "unfinished", "label": label}


def record_problem(run_dir: str | Path) -> str:
    """Why a run folder's records cannot be read (RecordError's one line, naming the file as the
    reports show paths, :func:`mnv3.paths.shown_path`), or ""."""
    try:
        load_record(run_dir), load_metrics(run_dir), load_test(run_dir)
    except RecordError as err:
        return str(err).replace(str(Path(run_dir)), shown_path(run_dir), 1)
    return ""


def find_runs(runs_dir: str | Path, experiments: Sequence[str]) -> tuple[dict[str, Path], list[str]]:
    """(run folders that have metrics, the experiments without them or with a damaged record,
    which :func:`missing_runs_markdown` names). Unfinished runs (metrics, no test.json) are among
    the first: the training pages draw their curves and label them."""
    present, missing = {}, []
    for name in experiments:
        run_dir = Path(runs_dir) / name
        ok = (run_dir / "metrics.csv").is_file() and not record_problem(run_dir)
        (present.__setitem__(name, run_dir) if ok else missing.append(name))
    return present, missing


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


def missing_runs_markdown(missing: Sequence[str], profile: str, runs_dir: str | Path) -> str:
    """A Markdown note naming the missing runs and the make target that produces them, and the
    runs whose records are damaged, with the file and the field."""
    if not missing:
        return ""
    problems = {name: record_problem(Path(runs_dir) / name) if (Path(runs_dir) / name / "config.json").exists() else "" for name in missing}
    lines = [f"**Missing{' or unreadable' if any(problems.values()) else ''} runs** in `{shown_path(runs_dir)}`:"]
    lines += [f"- `{name}`: " + (f"unreadable: {problems[name]}" if problems[name] else train_hint(profile, name)) for name in missing]
    return "\n".join(lines)


def format_accuracy(value: float | None) -> str:
    """Accuracies as the reports print them: 98.76%."""
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}%"


def dataset_label(config: Mapping[str, Any], data_root: str | Path | None = None) -> str:
    """"MNIST", or "CIFAR-10 (JPEG mirror)" for CIFAR-10 from the offline mirror's JPEG re-encodings.

    The mirror is recognised from the run's config, or from the source recorded in the dataset
    cache under ``data_root`` (read memory-mapped: milliseconds).
    """
    name = config.get("dataset", "?")
    label = DATASET_NAMES.get(name, (config.get("dataset_info") or {}).get("name", name))  # an image folder: folder:<its name>
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

    Keys: experiment, status ("ok", "missing": no run folder, "unfinished": no test.json,
    "unreadable": a damaged record, with only the label, which names the file), label
    (:func:`run_state`'s, e.g. "unfinished (stopped at epoch 54 of 60)"), dataset, arch,
    image_size, epochs (planned), train_images, test_accuracy (finished runs only), parameters,
    macs (per image, at the run's image size, see mnv3.summary), train_seconds,
    seconds_per_epoch, device, based_on (config.json's experiment) and changes (:func:`describe_changes`).
    """
    run_dir = Path(run_dir)
    row: dict[str, Any] = {"experiment": run_dir.name, "status": "missing"}
    if not (run_dir / "config.json").exists():
        return row
    try:
        return _summary(run_dir, row, data_root)
    except RecordError:
        return {**row, "status": "unreadable", "label": f"unreadable: {record_problem(run_dir)}"}


def _summary(run_dir: Path, row: dict[str, Any], data_root: str | Path | None) -> dict[str, Any]:
    from .model import model_from_config
    from .summary import summarize, totals

    config = load_record(run_dir)
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
        based_on=config.get("experiment"),
        changes=describe_changes(config.get("overrides", {}), config.get("seed", 0)),
    )
    row["train_images"] = config.get("train_samples")
    metrics = load_metrics(run_dir)
    if metrics is not None and len(metrics):
        row["train_seconds"] = float(metrics["epoch_seconds"].sum())
        row["seconds_per_epoch"] = float(metrics["epoch_seconds"].mean())
    state = run_state(run_dir)
    row.update(label=state["label"], epochs_done=state["epochs_done"])
    test = load_test(run_dir)
    if test is not None:
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


# ============================================================================ the training pages (notebooks 03 and 04)


def runs_table(runs: Mapping[str, Path], data_root: str | Path | None = None):
    """Per run: dataset, epochs, training images per epoch, best validation and test accuracy,
    seconds per epoch, device. An unfinished run's test accuracy is its :func:`run_state` label."""
    import pandas as pd

    rows = []
    for name, run_dir in runs.items():
        config = load_record(run_dir)
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
    config = load_record(run_dir)
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


# ============================================================================ the ablation table (python -m mnv3.runs)


FLIP_TTA_FILE = "flip_tta.json"  # python -m mnv3.evaluate flip-tta: a checkpoint's validation accuracy with flip TTA


def ablation_rows(folder: str | Path) -> list[dict[str, Any]]:
    """One row per run folder under ``folder`` (or for ``folder`` itself when it is one): its experiment, overrides, seed, best validation
    accuracy (and epoch), epochs done of planned, training seconds and :func:`run_state` label.
    A run with a ``flip_tta.json`` (:data:`FLIP_TTA_FILE`) adds a row for its best checkpoint evaluated with
    flip TTA, which is evaluation only: the same weights, no training of its own.
    The validation split chooses; the test set is not read. A run whose config.json or
    metrics.csv is damaged gets a row whose state says "unreadable", naming the file."""
    rows = []
    folder = Path(folder)
    configs = [folder / "config.json"] if (folder / "config.json").exists() else sorted(folder.glob("*/config.json"))
    for config_path in configs:
        try:
            config, metrics = load_record(config_path.parent), load_metrics(config_path.parent)
        except RecordError as err:
            rows.append({"name": config_path.parent.name, "experiment": None, "overrides": {}, "seed": None, "best_val_acc": None,
                         "best_epoch": None, "epochs_done": None, "epochs": None, "train_seconds": None, "state": f"unreadable: {err}"})
            continue
        best = None if metrics is None or metrics.empty else metrics.loc[metrics["val_acc"].idxmax()]
        rows.append({
            "name": config_path.parent.name,
            "experiment": config.get("experiment"),
            "overrides": config.get("overrides", {}),
            "seed": config.get("seed"),
            "best_val_acc": float(best["val_acc"]) if best is not None else None,
            "best_epoch": int(best["epoch"]) if best is not None else None,
            "epochs_done": 0 if metrics is None else len(metrics),
            "epochs": config.get("fields", {}).get("epochs"),
            "train_seconds": 0.0 if metrics is None else float(metrics["epoch_seconds"].sum()),
            "state": run_state(config_path.parent)["label"],
        })  # fmt: skip
        tta_path = config_path.parent / FLIP_TTA_FILE
        if tta_path.is_file():
            base = {**rows[-1], "name": f"{rows[-1]['name']} + flip TTA", "train_seconds": 0.0}
            try:
                tta = json.loads(tta_path.read_text())
                rows.append({**base, "overrides": {**base["overrides"], "tta_flip": True}, "best_val_acc": tta["val_acc_flip"],
                             "best_epoch": tta["epoch"],
                             "state": f"evaluation only: {tta['checkpoint']} of {rows[-1]['name']}, {100 * tta['val_acc']:.2f}% without flip"})  # fmt: skip
            except (OSError, ValueError, KeyError, TypeError) as err:  # damaged: a row that says so, not a traceback
                rows.append({**base, "best_val_acc": None, "best_epoch": None, "state": f"unreadable: {tta_path.name} ({err!r})"})
    return rows


# Beside every auto-augment candidate's time: what it includes that the others do not.
AUTO_AUGMENT_NOTE = ("these seconds include host waits: torchvision's transforms.v2 builds each geometric operation's affine "
                     "matrix on the host (torch.tensor(matrix, device=...)), a pageable host-to-device copy that makes the host "
                     "wait for the GPU, up to 8 a step (one draw per eighth of the batch).")


def ablation_table(rows: list[dict[str, Any]]) -> str:
    """``ablation_rows`` as a Markdown table: grouped by experiment, best validation accuracy first.
    A seed other than 0 counts as a change."""
    lines = ["| run | experiment | change | validation accuracy (epoch) | epochs | train seconds | state |",
             "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for r in sorted(rows, key=lambda r: (r["experiment"] or "", -(r["best_val_acc"] or 0))):
        unreadable = r["state"].startswith("unreadable")
        change = "-" if unreadable else describe_changes(r["overrides"], r["seed"])
        val = f"{100 * r['best_val_acc']:.2f}% ({r['best_epoch']})" if r["best_val_acc"] is not None else "-" if unreadable else "none yet"
        host_copies = (r["overrides"] or {}).get("auto_augment", "none") != "none"
        seconds = "-" if r["train_seconds"] is None else f"{r['train_seconds']:.0f}{' (a)' if host_copies else ''}"
        epochs = "-" if r["epochs_done"] is None else f"{r['epochs_done']} of {r['epochs'] or '?'}"
        lines.append(f"| {r['name']} | {r['experiment'] or '-'} | {change} | {val} | {epochs} | {seconds} | {r['state']} |")
    if any((r["overrides"] or {}).get("auto_augment", "none") != "none" for r in rows):
        lines.append("\n(a) " + AUTO_AUGMENT_NOTE)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m mnv3.runs",
        description="The ablation table of a folder of run folders: per run its experiment, the settings it changed, "
                    "its best validation accuracy (the test set is not read), epochs and training time, and whether it finished. "
                    "Runs are grouped by experiment, best first.")
    parser.add_argument("folder", help="e.g. runs/full: every <name>/config.json below it is one row")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a Markdown table")
    parser.add_argument("--save", metavar="PREFIX", help="also write PREFIX.md (the table) and PREFIX.json (the rows), each "
                        "atomically, e.g. --save gpu-out/sweep (scripts/gpu_sweep.sh rewrites them after every candidate)")
    args = parser.parse_args(argv)
    try:
        rows = ablation_rows(args.folder)
    except OSError as err:
        raise SystemExit(f"error: {os_error_line(err)}") from None
    if not rows:
        raise SystemExit(f"error: no run folders (NAME/config.json) in {args.folder}")
    if args.save:
        write_text_atomic(f"{args.save}.md", ablation_table(rows) + "\n")
        write_json_atomic(f"{args.save}.json", rows)
    print(json.dumps(rows, indent=2) if args.json else ablation_table(rows))


if __name__ == "__main__":
    main()
