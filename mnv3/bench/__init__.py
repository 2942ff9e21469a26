"""Benchmarks: CPU inference latency, training throughput and the accuracy-latency frontier.

    python -m mnv3.bench                         # all three suites -> reports/bench/*.json
    python -m mnv3.bench --suite inference --threads 2 --repeats 100
    python -m mnv3.bench --suite training --device cuda      # -> reports/bench/training_gpu.json
    python -m mnv3.bench --tiny --out /tmp/bench             # the smoke test's configuration

Three suites, one JSON each (``inference.json``, ``training.json`` / ``training_gpu.json``,
``frontier.json``), all with the same ``environment`` block (CPU model, cores, the thread count
of every runtime, library versions, date, git commit, load average):

- **inference**: per setting (Small and Large at 224x224 with 1000 classes, and the experiments'
  models at their native resolution with 10 classes) and per batch size (1 and 32), the latency
  of six contenders that compute the same function with the same weights: torchvision's eager
  model, ours (``from_torchvision`` of it), the ExecuTorch fp32 and int8 programs, ONNX Runtime
  and the TorchScript lite interpreter. Every contender takes raw pixels (``RawPixelModel``) so
  the work is identical; the exports come from ``mnv3.export``.
- **training**: images per second of our model against torchvision's (``to_torchvision``, same
  architecture and initial weights) in the training step of ``mnv3.train``: ``prepare_batch``
  (augmentation), channels_last, forward, label-smoothed loss, backward, SGD with Nesterov.
- **frontier**: width multipliers 0.35 to 1.25 of Small and Large: parameters and MACs
  (``mnv3.summary``, 224x224, 1000 classes) against ExecuTorch fp32 batch-1 CPU latency, with
  the test accuracy of every trained run of the same arch and width found in ``--runs-dir``.

Method: contenders are timed round-robin, one call each per round, in orders from a Williams
design (each contender in each position, and after each other contender, equally often), so load
changes on a shared machine hit all of them alike and no one inherits a systematically lighter or
heavier predecessor; each result keeps its per-call times, median, p90 and the median of its
per-round ratios to the reference (with a bootstrap 95% interval). Threads are pinned (torch,
ExecuTorch's threadpool and onnxruntime get the same count, one by default) and recorded, and so
is the CPU time other processes took during every block.
Exports are cached by content (weights, architecture, shape, library versions) in ``--cache-dir``,
so a second run only measures. ``results`` and ``plots`` hold what notebook 07 computes
(tables, target verdicts, plots); ``make reports`` renders notebook 07 from the JSON files.

One job per module: ``config`` (suites, contenders, targets, :class:`BenchConfig`), ``cases``
(the models and inputs), ``artefacts`` (the export cache), ``machine`` (threads, load, the
environment record), ``inference``, ``training`` and ``frontier`` (the suites), ``runner`` (the
whole run), ``cli`` (``python -m mnv3.bench``), ``formatting`` (rounded JSON values, console
tables, interval notes), ``profiling`` (op-by-op differences when eager is slower), ``results``
and ``plots`` (notebook 07), ``gpu`` (``python -m mnv3.bench.gpu``, GPU training
throughput) and ``imagefolder`` (``python -m mnv3.bench.imagefolder``: training on an image folder
through our cache against torchvision's ImageFolder and DataLoader). The clock and its statistics are :mod:`mnv3.timing`'s, the machine's facts
:mod:`mnv3.environment`'s.
"""
from __future__ import annotations

from .artefacts import Artefact, ArtefactStore
from .cases import ModelCase, frontier_case, inference_case, make_models, random_pixels, tiny_spec_dict, training_case
from .cli import config_from_args, main
from .config import (
    CONTENDER_FORMATS,
    CONTENDER_LABELS,
    CONTENDERS,
    DEFAULT_OUT,
    DEFAULT_RUNS_DIR,
    REFERENCE,
    SCHEMA,
    SCHEMA_VERSION,
    SUITES,
    TARGETS,
    TRAIN_CONTENDERS,
    BenchConfig,
    default_cache_dir,
    quick_config,
    tiny_config,
)
from .frontier import PAPER_TABLE3, find_trained_runs, measure_frontier, prepare_frontier, run_frontier
from .inference import inference_targets, measure_inference, prepare_inference, run_inference
from .machine import CpuMeter, environment, set_threads
from .plots import label_frontier_accuracy_axis, plot_frontier, plot_inference, plot_latency_distributions, plot_training
from .profiling import eager_profile_diff, profile_note
from .results import (
    environment_frame,
    frontier_frame,
    frontier_paper_only,
    inference_frame,
    inference_pivot,
    load_results,
    target_checks,
    target_summary,
    trained_runs_at_widths,
    training_frame,
)
from .runner import run
from .training import run_training, training_targets


__all__ = [
    "Artefact",
    "ArtefactStore",
    "ModelCase",
    "frontier_case",
    "inference_case",
    "make_models",
    "random_pixels",
    "tiny_spec_dict",
    "training_case",
    "config_from_args",
    "main",
    "CONTENDER_FORMATS",
    "CONTENDER_LABELS",
    "CONTENDERS",
    "DEFAULT_OUT",
    "DEFAULT_RUNS_DIR",
    "REFERENCE",
    "SCHEMA",
    "SCHEMA_VERSION",
    "SUITES",
    "TARGETS",
    "TRAIN_CONTENDERS",
    "BenchConfig",
    "default_cache_dir",
    "quick_config",
    "tiny_config",
    "PAPER_TABLE3",
    "find_trained_runs",
    "measure_frontier",
    "prepare_frontier",
    "run_frontier",
    "inference_targets",
    "measure_inference",
    "prepare_inference",
    "run_inference",
    "CpuMeter",
    "environment",
    "set_threads",
    "label_frontier_accuracy_axis",
    "plot_frontier",
    "plot_inference",
    "plot_latency_distributions",
    "plot_training",
    "eager_profile_diff",
    "profile_note",
    "environment_frame",
    "frontier_frame",
    "frontier_paper_only",
    "inference_frame",
    "inference_pivot",
    "load_results",
    "target_checks",
    "target_summary",
    "trained_runs_at_widths",
    "training_frame",
    "run",
    "run_training",
    "training_targets",
]
