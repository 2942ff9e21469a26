"""The claim, measured: the searched spec against the width multipliers, trained from scratch.

The paper's search is worth something only if its network beats what the width multiplier gives
at the same latency. So (:func:`compare`):

1. **Latency, one interleaved run**: the seed (the reference), the searched spec and Small at a
   grid of widths (each as its equivalent spec, :func:`spec_at_width`) are timed side by side on
   ExecuTorch (:mod:`mnv3.search.latency`); the two widths whose measured latency brackets the
   searched spec's are the frontier's neighbours.
2. **Accuracy**: the searched spec and both neighbours are trained from scratch with the seed
   run's own recipe (its experiment, profile and overrides; ``epochs`` may be set lower to fit a
   CPU), with several seeds each; each run reads the test set once, at its end, as every run does.
3. **The comparison** (:func:`frontier_gap`): the searched spec's mean test accuracy against the
   width frontier interpolated linearly at its measured latency, with a 95% Welch interval from
   the seeds' spread; and the frontier's latency at the searched spec's accuracy, as a ratio.

Whatever comes out is the result: ``comparison.json`` holds it with every run and timing.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..imagefolder import run_dataset_info
from ..files import write_json_atomic
from ..layers import make_divisible
from ..paths import shown_path
from ..runs import load_record, load_test
from ..spec import ModelSpec, load_spec, spec_from_dict
from .latency import Setting, time_programs, ProgramCache

__all__ = ["CompareConfig", "spec_at_width", "frontier_gap", "compare", "WIDTH_GRID"]

WIDTH_GRID = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0)


@dataclass(frozen=True)
class CompareConfig:
    """``epochs`` of each from-scratch run (None: the seed run's), ``seeds`` per arm, the width grid
    searched for the bracketing pair, CPU ``threads`` per training, the timing budget, and how many
    runs train at once (``jobs``; each in a process of its own)."""

    epochs: int | None = 5
    seeds: tuple[int, ...] = (0, 1)
    grid: tuple[float, ...] = WIDTH_GRID
    threads: int = 1
    timing_budget_s: float = 60.0
    jobs: int = 1


def spec_at_width(spec: ModelSpec, width: float) -> ModelSpec:
    """The spec whose model at width 1.0 is ``build_model(spec, width_mult=width)``: every channel
    count rounded as the builder rounds it (multiples of 8, :func:`mnv3.layers.make_divisible`),
    the head conv keeping its ratio to the last block, the classifier's hidden layer scaled."""
    def scale(c: int) -> int:
        return make_divisible(c * width)

    blocks = tuple(dataclasses.replace(b, exp_size=scale(b.exp_size), out=scale(b.out)) for b in spec.blocks)
    last, last_scaled = spec.blocks[-1].out, blocks[-1].out
    head_out = last_scaled * (spec.head.out // last) if spec.head.out % last == 0 else scale(spec.head.out)
    return dataclasses.replace(spec, stem=dataclasses.replace(spec.stem, out=scale(spec.stem.out)), blocks=blocks,
                               head=dataclasses.replace(spec.head, out=head_out, hidden=scale(spec.head.hidden)),
                               source=f"{spec.source} at width {width:g}")  # fmt: skip


def _mean_var(values: Sequence[float]) -> tuple[float, float, int]:
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.var(ddof=1)) if len(a) > 1 else math.nan, len(a)


def frontier_gap(searched: Sequence[float], low: Sequence[float], high: Sequence[float], latency_ms: Mapping[str, float]) -> dict[str, Any]:
    """The searched spec against the width frontier between its two neighbours.

    ``searched``, ``low`` and ``high`` are test accuracies (fractions) of each arm's seeds;
    ``latency_ms`` has "searched", "low" and "high" (measured, ms). The frontier is the straight
    line through (latency, mean accuracy) of ``low`` and ``high``. Returns the gap in accuracy
    points at equal latency with a 95% Welch-Satterthwaite interval ("gap_points", "ci95_points",
    "df"), and the frontier's latency at the searched spec's mean accuracy over its own
    ("latency_ratio_at_equal_accuracy", > 1: the search is faster; "extrapolated" when that
    accuracy lies outside the two neighbours').
    """
    from scipy.stats import t as student_t

    (ms, vs, ns), (ml, vl, nl), (mh, vh, nh) = (_mean_var(v) for v in (searched, low, high))
    span = latency_ms["high"] - latency_ms["low"]
    w = (latency_ms["searched"] - latency_ms["low"]) / span
    frontier = ml + w * (mh - ml)
    terms = [vs / ns, (1 - w) ** 2 * vl / nl, w**2 * vh / nh]
    se = math.sqrt(sum(terms))
    df = se**4 / sum(t**2 / (n - 1) for t, n in zip(terms, (ns, nl, nh)) if t > 0) if se > 0 else math.inf
    half = float(student_t.ppf(0.975, df)) * se if se > 0 else 0.0
    gap = ms - frontier
    result = {"searched_mean": ms, "low_mean": ml, "high_mean": mh, "frontier_at_latency": frontier, "weight_high": w,
              "gap_points": 100 * gap, "ci95_points": [100 * (gap - half), 100 * (gap + half)], "df": df}  # fmt: skip
    if mh != ml:
        latency_at = latency_ms["low"] + (ms - ml) / (mh - ml) * span
        result["frontier_latency_at_accuracy_ms"] = latency_at
        result["latency_ratio_at_equal_accuracy"] = latency_at / latency_ms["searched"]
        result["extrapolated"] = not min(ml, mh) <= ms <= max(ml, mh)
    return result


def _train_argv(spec_arg: list[str], name: str, seed: int, recipe: Mapping[str, Any], out: Path, cfg: CompareConfig,
                data_root, data_mirror) -> tuple[Path, list[str]]:  # fmt: skip
    """The run folder and ``python -m mnv3.train`` arguments of one comparison run: the seed run's
    experiment, profile and overrides, this arm's spec or width, seed and epochs (resumed if cut)."""
    run_dir = out / recipe["profile"] / name
    argv = ["--experiment", recipe["experiment"], "--profile", recipe["profile"], "--name", name, "--seed", str(seed),
            "--out", str(out), "--threads", str(cfg.threads), "--data-root", str(data_root), *spec_arg]  # fmt: skip
    if data_mirror:
        argv += ["--data-mirror", str(data_mirror)]
    for key, value in recipe["overrides"].items():
        if key not in ("arch", "width_mult", "epochs"):
            argv += [f"--{key.replace('_', '-')}", str(value)]
    argv += ["--epochs", str(cfg.epochs or recipe["fields"]["epochs"])]
    if (run_dir / "last.pt").is_file():
        argv.append("--resume")
    return run_dir, argv


def _train_all(jobs: list[tuple[Path, list[str]]], parallel: int, log) -> None:
    """Train each (run folder, argv) not finished yet: in this process, or ``parallel`` at a time as
    subprocesses, each logging to ``<run folder>.log``. Raises RuntimeError naming a failed run's log."""
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    from ..train import main as train_main

    todo = [(run_dir, argv) for run_dir, argv in jobs if not (run_dir / "test.json").is_file()]
    if parallel <= 1:
        for run_dir, argv in todo:
            log(f"training {run_dir.name}")
            train_main(argv)
        return

    def run(job: tuple[Path, list[str]]) -> None:
        run_dir, argv = job
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        log_path = run_dir.with_name(run_dir.name + ".log")
        log(f"training {run_dir.name} (log: {shown_path(log_path)})")
        with open(log_path, "a") as f:
            code = subprocess.run([sys.executable, "-m", "mnv3.train", *argv], stdout=f, stderr=subprocess.STDOUT).returncode
        if code:
            raise RuntimeError(f"training {run_dir.name} failed (exit {code}); see {shown_path(log_path)}")

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        for future in [pool.submit(run, job) for job in todo]:
            future.result()


def compare(search_dir: str | Path, seed_run: str | Path, cfg: CompareConfig, *, data_root: str | Path = "data",
            data_mirror: str | Path | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:  # fmt: skip
    """Measure, train and compare (module docstring); writes and returns ``search_dir/comparison.json``.

    Raises FileNotFoundError when ``search_dir`` has no ``searched.json`` (run the search first),
    ValueError when no two widths of ``cfg.grid`` bracket the searched spec's latency.
    """
    search_dir, seed_run = Path(search_dir), Path(seed_run)
    spec_path = search_dir / "searched.json"
    if not spec_path.is_file():
        raise FileNotFoundError(f"{spec_path}: no searched spec; run python -m mnv3.search first")
    searched = load_spec(spec_path)
    recipe = load_record(seed_run)
    base = spec_from_dict(recipe["model"]["spec"], source=f"{seed_run}/config.json")
    setting = Setting.from_run(recipe, run_dataset_info(recipe))
    cache = ProgramCache(search_dir / "latency" / "programs", setting)
    programs = {"seed": cache.path(base), "searched": cache.path(searched)}
    programs.update({f"width {w:g}": cache.path(spec_at_width(base, w)) for w in cfg.grid})
    log(f"timing the searched spec beside {len(cfg.grid)} widths of the seed's spec ({cfg.timing_budget_s:g} s)")
    timing = time_programs(programs, "seed", threads=setting.threads, budget_s=cfg.timing_budget_s)
    ms = {name: t["median_ms"] for name, t in timing["programs"].items()}
    below = [w for w in cfg.grid if ms[f"width {w:g}"] < ms["searched"]]
    above = [w for w in cfg.grid if ms[f"width {w:g}"] > ms["searched"]]
    if not below or not above:
        measured = ", ".join(f"{w:g}: {ms['width ' + format(w, 'g')]:.3f}" for w in cfg.grid)
        raise ValueError(f"no two widths of {list(cfg.grid)} bracket the searched spec's {ms['searched']:.3f} ms "
                         f"(widths measured, ms: {measured}); widen the grid")
    low, high = max(below), min(above)
    seed_arch = ["--arch", str(recipe["fields"]["arch"])]  # the seed's own spec, at the other widths
    arms = {"searched": (["--arch", str(spec_path)], searched), f"width{low:g}": ([*seed_arch, "--width-mult", str(low)], None),
            f"width{high:g}": ([*seed_arch, "--width-mult", str(high)], None)}  # fmt: skip
    runs_out = search_dir / "runs"
    jobs = {(arm, seed): _train_argv(spec_arg, f"{arm}-seed{seed}", seed, recipe, runs_out, cfg, data_root, data_mirror)
            for arm, (spec_arg, _) in arms.items() for seed in cfg.seeds}  # fmt: skip
    _train_all(list(jobs.values()), cfg.jobs, log)
    accuracies: dict[str, list[float]] = {}
    runs: dict[str, list[str]] = {}
    for (arm, _), (run_dir, _) in jobs.items():
        accuracies.setdefault(arm, []).append(float(load_test(run_dir)["test_accuracy"]))
        runs.setdefault(arm, []).append(shown_path(run_dir))
    latency = {"searched": ms["searched"], "low": ms[f"width {low:g}"], "high": ms[f"width {high:g}"]}
    gap = frontier_gap(accuracies["searched"], accuracies[f"width{low:g}"], accuracies[f"width{high:g}"], latency)
    result = {
        "format": "mnv3-search-comparison",
        "seed_run": shown_path(seed_run),
        "searched_spec": shown_path(spec_path),
        "epochs": cfg.epochs or recipe["fields"]["epochs"],
        "seeds": list(cfg.seeds),
        "widths": {"low": low, "high": high},
        "timing": timing,
        "latency_ms": latency,
        "latency_ratio_searched_to_seed": timing["programs"]["searched"]["ratio"],
        "accuracies": accuracies,
        "runs": runs,
        "gap": gap,
    }
    write_json_atomic(search_dir / "comparison.json", result)
    return result
