"""Round-robin timing of contenders and the statistics of per-call times."""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Mapping, Sequence

def interleaved_times(
    calls: Mapping[str, Callable[[], Any]],
    *,
    warmup: int = 3,
    max_rounds: int = 60,
    min_rounds: int = 10,
    budget_s: float = 15.0,
    sync: Callable[[], Any] | None = None,
) -> dict[str, list[float]]:
    """Per-call wall times (ms) of each call, measured round-robin.

    Every round calls each contender once, so a load change hits all of them alike; the orders
    cycle through a Williams design (:func:`balanced_orders`): over a cycle every contender sits in
    every position equally often and follows every other contender equally often, so neither
    position nor the previous contender's footprint (freed buffers, caches) favours anyone. Rounds
    continue until ``max_rounds``, or ``budget_s`` seconds once ``min_rounds`` are done. ``sync``
    (e.g. ``torch.cuda.synchronize``) runs inside each timed interval. Times of round r sit at
    index r of every list, so per-round ratios pair calls made moments apart.
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
            t0 = time.perf_counter()
            calls[name]()
            if sync:
                sync()
            times[name].append((time.perf_counter() - t0) * 1000.0)
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


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default) of already sorted values."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize_times(times: Sequence[float]) -> dict[str, float | int]:
    """median, p90, mean, min (ms) and n of per-call times."""
    values = sorted(times)
    return {
        "median_ms": _percentile(values, 50),
        "p90_ms": _percentile(values, 90),
        "mean_ms": sum(values) / len(values) if values else math.nan,
        "min_ms": values[0] if values else math.nan,
        "n": len(values),
    }


def paired_ratio(times: Sequence[float], reference: Sequence[float], *, seed: int = 0, resamples: int = 2000) -> dict[str, Any]:
    """Median of the per-round ratios times[r] / reference[r] and a bootstrap 95% interval of it."""
    import numpy as np

    ratios = np.asarray(times, dtype=float) / np.asarray(reference, dtype=float)
    if len(ratios) == 0:
        return {"median": math.nan, "ci95": [math.nan, math.nan]}
    rng = np.random.default_rng(seed)
    boot = np.median(ratios[rng.integers(0, len(ratios), size=(resamples, len(ratios)))], axis=1)
    return {"median": float(np.median(ratios)), "ci95": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))]}
