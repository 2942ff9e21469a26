"""The report pages: which notebooks the reports execute, with what parameters, and what each needs.

To add a page, save the notebook in ``notebooks/`` without outputs, with a cell tagged
``parameters``, and add a :class:`Notebook` to :data:`NOTEBOOKS` (see :mod:`mnv3.reports`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..experiments import EXPERIMENTS
from ..export.readers import EXPORT_HINT
from ..paths import REPO

__all__ = ["NOTEBOOK_DIR", "Requirement", "RUN_REQUIREMENT", "EXPORT_HINT", "Notebook",
           "NOTEBOOKS", "notebook_by_name"]  # fmt: skip

NOTEBOOK_DIR = REPO / "notebooks"

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




@dataclass(frozen=True)
class Notebook:
    """One notebook of ``notebooks/`` and how the report runner executes it.

    Attributes:
        name: the file name without ``.ipynb``; also the report's name (``<name>.html``).
        title: shown on the index.
        description: one line for the index.
        per_experiment: execute once per experiment, passing ``experiment``; the reports are
            ``<name>-<experiment>.html``.
        experiments: which experiments, when ``per_experiment`` or ``shows_own_runs`` (default: all of them).
        shows_own_runs: a training page: it draws the runs of ``experiments`` and your own runs based
            on them (:mod:`mnv3.own_runs`); the runner passes it ``experiments``, and the index links
            those own runs' rows to it.
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
    shows_own_runs: bool = False
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
    # 03 and 04 cope with missing runs themselves (they plot what exists and name the make target),
    # and draw your own runs (any other run folder) based on their experiments.
    Notebook(
        "03_train_mnist",
        "Training on MNIST",
        "Accuracy and loss curves of MobileNetV3-Small on MNIST, and seconds per epoch (Figures 5 and 6); "
        "your own runs based on mnist_small beside it.",
        experiments=("mnist_small",),
        shows_own_runs=True,
        # The notebook never trains unless asked to interactively.
        parameters={"launch_training": False},
    ),
    Notebook(
        "04_train_cifar10",
        "Training on CIFAR-10",
        "CIFAR-10 curves: Small with stride 2 against stride 1, Small against Large, seconds per epoch "
        "(Figures 9 to 12); your own runs based on these experiments beside them.",
        experiments=("cifar10_small_s2", "cifar10_small_s1", "cifar10_large_s1"),
        shows_own_runs=True,
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
    Notebook(
        "08_search",
        "Search: NetAdapt with ExecuTorch latency",
        "The paper's layer-wise search (section 4.2) over cifar10_small_s1's spec: the latency model and its errors, "
        "the trajectory, the spec found against Table 2, and that spec against the width multipliers, trained from scratch.",
        # Reads the committed reports/search/, written by `make search` (python -m mnv3.search publish).
        parameters={"search_dir": "reports/search"},
        requires=(Requirement("{repo}/reports/search/search.jsonl", "`make search`"),),
    ),
]


def notebook_by_name(name: str, notebooks: Sequence[Notebook] | None = None) -> Notebook:
    notebooks = NOTEBOOKS if notebooks is None else notebooks
    for nb in notebooks:
        if nb.name == name:
            return nb
    raise ValueError(f"unknown notebook {name!r}; the notebooks are: {', '.join(nb.name for nb in notebooks)}.")
