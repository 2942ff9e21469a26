"""The frontier suite: parameters and MACs of each width multiplier against its ExecuTorch
fp32 batch-1 latency, with the test accuracy of the trained runs of the same arch and width."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from ..environment import load_average
from ..records import RecordError
from ..runs import load_record, load_test
from ..timing import interleaved_times, summarize_times
from .artefacts import Artefact, ArtefactStore
from .cases import frontier_case, make_models, wrap_raw_pixels
from .config import BenchConfig
from .formatting import console_table, format_ms, round_significant
from .machine import CpuMeter, busy_note


# Howard et al. 2019, Table 3 (ImageNet, 224x224): top-1 %, millions of MAdds and parameters,
# Pixel-1 latency (ms, one big core, TFLite). Only these multipliers are published there.
PAPER_TABLE3 = {
    ("large", 1.0): {"top1": 75.2, "madds_m": 219, "params_m": 5.4, "pixel1_ms": 51},
    ("large", 0.75): {"top1": 73.3, "madds_m": 155, "params_m": 4.0, "pixel1_ms": 39},
    ("small", 1.0): {"top1": 67.4, "madds_m": 56, "params_m": 2.5, "pixel1_ms": 15.8},
    ("small", 0.75): {"top1": 65.4, "madds_m": 44, "params_m": 2.0, "pixel1_ms": 12.8},
}


def find_trained_runs(runs_dir: str | Path | None) -> list[dict[str, Any]]:
    """Every finished run under ``runs_dir`` (config.json + test.json): arch, width, accuracy. A run
    whose records are damaged (mnv3.records) is left out with a line on stderr naming the file."""
    if runs_dir is None or not Path(runs_dir).is_dir():
        return []
    found = []
    for config_path in sorted(Path(runs_dir).glob("*/config.json")):
        try:
            test = load_test(config_path.parent)
            if test is None:  # unfinished: no result
                continue
            config = load_record(config_path.parent)
            model = config["model"]
            arch = str(model["spec"]["name"]).removeprefix("mobilenet_v3_")
            found.append({
                "experiment": config.get("experiment", config_path.parent.name), "run_dir": str(config_path.parent),
                "arch": arch, "width": float(model.get("width_mult", 1.0)), "dataset": config.get("dataset"),
                "image_size": config.get("image_size"), "drop_first_strides": model.get("drop_first_strides", 0),
                "test_accuracy": float(test["test_accuracy"]), "epochs": test.get("epochs"),
                "profile": config.get("profile"),
            })  # fmt: skip
        except RecordError as err:  # named, not dropped in silence
            print(f"[bench] a run not on the frontier: {err}", file=sys.stderr)
        except (KeyError, ValueError, TypeError):
            continue
    return found


def run_frontier(cfg: BenchConfig, store: ArtefactStore, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Width multipliers of each arch: params and MACs against ExecuTorch fp32 batch-1 latency."""
    points = prepare_frontier(cfg, store)
    return measure_frontier(cfg, points, store.build(), log)


def prepare_frontier(cfg: BenchConfig, store: ArtefactStore) -> list[dict[str, Any]]:
    """Each (arch, width): parameters and MACs, and a request for its batch-1 fp32 program."""
    from ..summary import summarize, totals

    points = []
    for arch in cfg.frontier_archs:
        for width in cfg.widths:
            case = frontier_case(arch, width, cfg.frontier_resolution, cfg.frontier_classes)
            _, ours = make_models(case)
            wrapper = wrap_raw_pixels(ours, case)
            at = totals(summarize(ours, cfg.mac_resolution))
            at_latency = at if cfg.frontier_resolution == cfg.mac_resolution else totals(summarize(ours, cfg.frontier_resolution))
            key = store.request("pte", wrapper, case, 1)
            points.append({"case": case, "key": key, "params": at["params"], "macs": at["macs"], "macs_at_latency_resolution": at_latency["macs"]})
    return points


def measure_frontier(cfg: BenchConfig, points: list[dict[str, Any]], artefacts: Mapping[str, Artefact], log: Callable[[str], None] = print) -> dict[str, Any]:
    """Time every point's batch-1 program round-robin on one random input; the frontier JSON's body:
    {"results": a row per point (params, MACs, latency ms, accuracies), "runs_dir", "trained_runs"}."""
    from ..export import PteRunner

    runs = find_trained_runs(cfg.runs_dir)
    calls, errors = {}, {}
    channels = points[0]["case"].in_channels if points else 3
    x = torch.rand(1, channels, cfg.frontier_resolution, cfg.frontier_resolution, generator=torch.Generator().manual_seed(2))
    for p in points:
        art = artefacts[p["key"]]
        if art.error:
            errors[p["case"].name] = art.error.splitlines()[0]
            continue
        runner = PteRunner(art.path)
        calls[p["case"].name] = lambda r=runner: r(x)
    load_before = load_average()
    start = time.perf_counter()
    with CpuMeter() as meter:
        times = interleaved_times(calls, warmup=cfg.warmup, max_rounds=cfg.frontier_repeats, min_rounds=cfg.min_rounds,
                                  budget_s=cfg.frontier_budget_s) if calls else {}  # fmt: skip
    seconds = time.perf_counter() - start
    rows = []
    lines = [("model", "params", "MACs (M)", "median ms", "p90 ms", "accuracy (runs)")]
    for p in points:
        case, art = p["case"], artefacts[p["key"]]
        stats = summarize_times(times[case.name]) if case.name in times else {"median_ms": None, "p90_ms": None, "mean_ms": None, "min_ms": None, "n": 0}
        accuracy = [r for r in runs if r["arch"] == case.arch and abs(r["width"] - case.width) < 1e-9]
        paper = PAPER_TABLE3.get((case.arch, case.width)) if cfg.frontier_classes == 1000 and cfg.mac_resolution == 224 else None
        row = {
            "contender": "executorch_fp32", **case.describe(), "batch": 1, "params": p["params"], "macs": p["macs"],
            "mac_resolution": cfg.mac_resolution, "macs_at_latency_resolution": p["macs_at_latency_resolution"],
            **stats, "times_ms": times.get(case.name, []), "accuracy": accuracy, "paper": paper,
            "export": art.to_json(case.name), "error": errors.get(case.name),
            "block_seconds": seconds, "load_average": [load_before, load_average()],
            "cpu_other_cores": meter.result["other_cores"], "cpu_steal_cores": meter.result["steal_cores"],
        }  # fmt: skip
        rows.append(round_significant(row))
        acc = ", ".join(f"{a['experiment']} {100 * a['test_accuracy']:.1f}%" for a in accuracy) or "-"
        lines.append((case.name, f"{p['params']:,}", f"{p['macs'] / 1e6:.1f}", format_ms(stats["median_ms"]), format_ms(stats["p90_ms"]), acc))
    log(f"[bench] frontier: ExecuTorch fp32, batch 1, {cfg.frontier_resolution}x{cfg.frontier_resolution}, "
        f"{len(next(iter(times.values()), []))} rounds in {seconds:.1f} s; {busy_note(meter, log)}")  # fmt: skip
    log(console_table(lines))
    return {"results": rows, "runs_dir": str(cfg.runs_dir) if cfg.runs_dir else None, "trained_runs": runs}
