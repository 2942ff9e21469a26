"""The one clock: wall-clock timing of calls, and the statistics every timing page reports.

Benchmarks (:mod:`mnv3.bench`), export latency (:mod:`mnv3.export.parity`) and the nonlinearity
timings (:mod:`mnv3.nonlinearities`) all time here, so a "p90" means the same everywhere: numpy's
linear-interpolation percentile of per-call times in milliseconds.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

__all__ = ["time_calls", "percentile", "summarize_times", "interleaved_times", "balanced_orders", "paired_ratio"]


def time_calls(call: Callable[[], Any], *, runs: int, warmup: int = 0, sync: Callable[[], Any] | None = None) -> list[float]:
    """Wall times in milliseconds of ``runs`` calls of ``call``, after ``warmup`` untimed ones.

    ``sync`` (e.g. ``torch.cuda.synchronize``) runs inside each timed interval, so asynchronous
    work is counted. Raises ValueError when ``runs`` or ``warmup`` is negative.
    """
    if runs < 0 or warmup < 0:
        raise ValueError(f"runs and warmup must be >= 0, got runs={runs}, warmup={warmup}")
    for _ in range(warmup):
        call()
    if sync:
        sync()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        call()
        if sync:
            sync()
        times.append((time.perf_counter() - t0) * 1000.0)
    return times


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation (``numpy.percentile``'s default);
    NaN for no values."""
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else math.nan


def summarize_times(times: Sequence[float]) -> dict[str, float | int]:
    """median, p90, mean and min (ms) and the count n of per-call times in milliseconds."""
    values = np.asarray(times, dtype=float)
    empty = len(values) == 0
    return {
        "median_ms": percentile(values, 50),
        "p90_ms": percentile(values, 90),
        "mean_ms": math.nan if empty else float(values.mean()),
        "min_ms": math.nan if empty else float(values.min()),
        "n": len(values),
    }


def interleaved_times(
    calls: Mapping[str, Callable[[], Any]],
    *,
    warmup: int = 3,
    max_rounds: int = 60,
    min_rounds: int = 10,
    budget_s: float = 15.0,
    sync: Callable[[], Any] | None = None,
    turn_warmup: int = 0,
) -> dict[str, list[float]]:
    """Per-call wall times (ms) of each call, measured round-robin.

    Every round calls each contender once, so a load change hits all of them alike; the orders
    cycle through a Williams design (:func:`balanced_orders`): over a cycle every contender sits in
    every position equally often and follows every other contender equally often, so neither
    position nor the previous contender's footprint (freed buffers, caches) favours anyone. Rounds
    continue until ``max_rounds``, or ``budget_s`` seconds once ``min_rounds`` are done. ``sync``
    (e.g. ``torch.cuda.synchronize``) runs inside each timed interval. Times of round r sit at
    index r of every list, so per-round ratios pair calls made moments apart.

    ``turn_warmup`` untimed calls precede each timed one in a contender's turn. Contenders that
    each touch megabytes (a model's weights) evict one another from the CPU's caches, so without
    it every timed call starts cold, and a contender's time depends on how many others it is
    timed with; with it, each is timed warm, as a program running alone is.
    """
    names = list(calls)
    orders = balanced_orders(len(names))
    for _ in range(warmup):
        for name in names:
            calls[name]()
        if sync:
            sync()
    times: dict[str, list[float]] = {name: [] for name in names}
    start = time.perf_counter()
    rounds = 0
    while rounds < max_rounds:
        for name in (names[i] for i in orders[rounds % len(orders)]):
            times[name] += time_calls(calls[name], runs=1, warmup=turn_warmup, sync=sync)
        rounds += 1
        # Stop at the end of a cycle of orders, so the design stays balanced.
        if rounds >= min_rounds and rounds % len(orders) == 0 and time.perf_counter() - start >= budget_s:
            break
    return times


def balanced_orders(n: int) -> list[list[int]]:
    """A Williams design for ``n`` contenders: n orders (2n when n is odd) in which every
    contender takes every position equally often and directly follows every other one equally
    often. n = 2: AB, BA; n = 4: ABDC, BCAD, CDBA, DACB."""
    if n < 1:
        return [[]]
    first, lo, hi = [0], 1, n - 1
    while len(first) < n:
        if len(first) % 2:
            first.append(lo)
            lo += 1
        else:
            first.append(hi)
            hi -= 1
    rows = [[(x + r) % n for x in first] for r in range(n)]
    return rows + [row[::-1] for row in rows] if n % 2 else rows


def paired_ratio(times: Sequence[float], reference: Sequence[float], *, seed: int = 0, resamples: int = 2000) -> dict[str, Any]:
    """Median of the per-round ratios times[r] / reference[r] and a bootstrap 95% interval of it."""
    ratios = np.asarray(times, dtype=float) / np.asarray(reference, dtype=float)
    if len(ratios) == 0:
        return {"median": math.nan, "ci95": [math.nan, math.nan]}
    rng = np.random.default_rng(seed)
    boot = np.median(ratios[rng.integers(0, len(ratios), size=(resamples, len(ratios)))], axis=1)
    return {"median": float(np.median(ratios)), "ci95": [percentile(boot, 2.5), percentile(boot, 97.5)]}
