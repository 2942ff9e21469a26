"""Is the latency model good enough to steer the search? Measured on specs it was not fitted on.

Two questions, two numbers (:func:`validate_latency`), with the issue's goals:

* **absolute error** on held-out random specs of the seed's structure: the mean absolute
  percentage error of predicted against measured latency, goal at most 3%;
* **ranking of cuts**: a search step ranks proposals by accuracy lost per millisecond saved, so
  the model must order latency *cuts* right. The held-out cuts are the seed's single-layer
  proposals (each block's expansion and each bottleneck group cut to 3/4 and to 1/2 of its width);
  Spearman's rank correlation of predicted against measured cuts, goal at least 0.9.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..imagefolder import run_dataset_info
from ..files import write_json_atomic
from ..paths import shown_path
from ..runs import load_record
from ..spec import ModelSpec, SpecError, spec_from_dict
from .latency import LatencyModel, LatencyStore, Setting, random_specs
from .surgery import CHANNEL_STEP, MIN_CHANNELS, Proposal, apply_proposal, bottleneck_groups, structure

__all__ = ["mape", "spearman", "validate", "cut_proposals", "validate_latency", "MAPE_GOAL_PERCENT", "SPEARMAN_GOAL"]

MAPE_GOAL_PERCENT = 3.0
SPEARMAN_GOAL = 0.9


def mape(predicted: Sequence[float], measured: Sequence[float]) -> float:
    """Mean absolute percentage error of ``predicted`` against ``measured``, in percent."""
    p, m = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    return float(np.mean(np.abs(p - m) / m) * 100)


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (scipy.stats.spearmanr)."""
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def validate(model: LatencyModel, held_out: Mapping[str, tuple[ModelSpec, float]], cuts: Mapping[str, tuple[ModelSpec, float]],
             parent: ModelSpec, parent_ms: float) -> dict[str, Any]:  # fmt: skip
    """How well ``model`` predicts specs it was not fitted on.

    ``held_out`` maps names to (spec, measured ms); ``cuts`` maps proposals of ``parent`` (measured
    at ``parent_ms``) to (child spec, measured ms), compared as cuts (parent minus child). Returns
    {"mape_percent", "spearman_cuts", "held_out": rows, "cuts": rows}, each row a spec's predicted
    and measured value.
    """
    rows = [{"name": n, "predicted_ms": model.predict(s), "measured_ms": ms} for n, (s, ms) in held_out.items()]
    parent_predicted = model.predict(parent)
    cut_rows = [{"name": n, "predicted_cut_ms": parent_predicted - model.predict(s), "measured_cut_ms": parent_ms - ms}
                for n, (s, ms) in cuts.items()]  # fmt: skip
    return {
        "mape_percent": mape([r["predicted_ms"] for r in rows], [r["measured_ms"] for r in rows]) if rows else None,
        "spearman_cuts": spearman([r["predicted_cut_ms"] for r in cut_rows], [r["measured_cut_ms"] for r in cut_rows])
        if len(cut_rows) > 2 else None,
        "held_out": rows,
        "cuts": cut_rows,
    }


def cut_proposals(spec: ModelSpec, drop_first_strides: int, fractions: Sequence[float] = (0.75, 0.5)) -> dict[str, ModelSpec]:
    """The single-layer cuts of ``spec`` a search step would weigh: each expansion (blocks with an
    expansion conv) and each bottleneck group at each fraction of its width, rounded to a
    multiple of 8; cuts that would change the structure are left out. Keys are the labels."""
    found: dict[str, ModelSpec] = {}
    s = structure(spec, drop_first_strides)
    candidates = [("E", (i,), b.exp_size) for i, b in enumerate(spec.blocks) if s.expand[i]]
    candidates += [("B", g, spec.blocks[g[0]].out) for g in bottleneck_groups(spec, drop_first_strides)]
    for kind, blocks, width in candidates:
        for fraction in fractions:
            channels = max(MIN_CHANNELS, round(width * fraction / CHANNEL_STEP) * CHANNEL_STEP)
            if channels >= width:
                continue
            proposal = Proposal(kind, blocks, channels)
            try:
                found[proposal.label()] = apply_proposal(spec, proposal, drop_first_strides=drop_first_strides)
            except SpecError:
                continue
    return found


def validate_latency(run_dir: str | Path, out_dir: str | Path, *, fit: int = 24, held_out: int = 8, budget_s: float = 30.0,
                     seed: int = 0, fractions: Sequence[float] = (0.75, 0.5), log=print) -> dict[str, Any]:  # fmt: skip
    """Measure and validate the latency model of ``run_dir``'s spec (module docstring); writes and
    returns ``out_dir/latency-validation.json``. Only the run's config.json is read (latency does
    not depend on the weights), so a run still training will do. The timings stay in
    ``out_dir/latency/``, where the search finds them; programs are lowered once and cached, and
    running the command again times everything afresh (the latest timing of a spec counts)."""
    config = load_record(run_dir)  # the spec and setting only: latency does not depend on the weights
    spec = spec_from_dict(config["model"]["spec"], source=f"{run_dir}/config.json")
    drop = config["model"].get("drop_first_strides", 0)
    setting = Setting.from_run(config, run_dataset_info(config))
    store = LatencyStore(Path(out_dir) / "latency", setting, spec, log=log)
    fit_specs = {f"fit{i}": s for i, s in enumerate(random_specs(spec, fit, seed=seed, drop_first_strides=drop))}
    held = {f"held-out {i}": s for i, s in enumerate(random_specs(spec, held_out, seed=seed + 1000, drop_first_strides=drop))}
    cuts = cut_proposals(spec, drop, fractions)
    measured: dict[str, float] = {}
    batches = [("fit", {"seed": spec, **fit_specs}), ("held-out", held), ("cuts", cuts)]
    for why, specs in batches:
        names = list(specs)
        for start in range(0, len(names), 12):  # sessions of 12 programs and the reference
            chunk = {n: specs[n] for n in names[start : start + 12]}
            log(f"latency: timing {why} {start + 1}-{start + len(chunk)} of {len(names)}")
            measured.update(store.measure(chunk, why=why, budget_s=budget_s))
    # Every latency again through the store: the anchor may have dropped in a later session.
    ms = {name: store.latency_ms(spec) for _, specs in batches for name, spec in specs.items()}
    fitted = store.model(exclude=("held-out", "cuts"))
    report = validate(fitted, {n: (s, ms[n]) for n, s in held.items()}, {n: (s, ms[n]) for n, s in cuts.items()},
                      spec, ms["seed"])  # fmt: skip
    report.update({
        "format": "mnv3-latency-validation", "seed_run": shown_path(run_dir), "setting": setting.to_dict(),
        "key": store.data["key"], "seed_ms": ms["seed"], "anchor_ms": store.data["anchor_ms"],
        "fit_specs": fit, "goals": {"mape_percent": MAPE_GOAL_PERCENT, "spearman_cuts": SPEARMAN_GOAL},
        "model": fitted.to_dict() | {"points": len(fitted.points)}, "sessions": store.data["sessions"],
    })  # fmt: skip
    write_json_atomic(Path(out_dir) / "latency-validation.json", report)
    return report
