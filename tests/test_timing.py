"""The one clock (mnv3.timing): round-robin timing in balanced orders, and the statistics of
per-call times that every timing page reports."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from mnv3.timing import balanced_orders, interleaved_times, paired_ratio, summarize_times


def test_interleaving_balances_positions_and_predecessors():
    calls: list[str] = []
    times = interleaved_times({k: (lambda k=k: calls.append(k)) for k in "ABCD"}, warmup=1, max_rounds=4, min_rounds=4, budget_s=0)
    assert "".join(calls) == "ABCD" + "ABDC" + "BCAD" + "CDBA" + "DACB"  # warm-up, then a Williams design
    assert all(len(v) == 4 for v in times.values())
    for n in (2, 3, 5, 6, 10):
        rows = balanced_orders(n)
        positions = Counter((i, x) for row in rows for i, x in enumerate(row))
        pairs = Counter((a, b) for row in rows for a, b in zip(row, row[1:]))
        assert len(positions) == n * n and len(set(positions.values())) == 1
        assert len(pairs) == n * (n - 1) and len(set(pairs.values())) == 1
    # min_rounds reached but mid-cycle: it finishes the cycle
    times = interleaved_times({k: (lambda: None) for k in "ABC"}, warmup=0, max_rounds=60, min_rounds=2, budget_s=0)
    assert len(times["A"]) == 6


def test_statistics_of_per_call_times():
    stats = summarize_times([1.0, 2.0, 3.0, 4.0, 100.0])
    assert stats == {"median_ms": 3.0, "p90_ms": pytest.approx(61.6), "mean_ms": 22.0, "min_ms": 1.0, "n": 5}  # p90: 4 + 0.6 * 96
    empty = summarize_times([])
    assert empty["n"] == 0 and all(np.isnan(empty[k]) for k in ("median_ms", "p90_ms", "mean_ms", "min_ms"))
    pair = paired_ratio([2.0, 4.0, 6.0, 8.0], [1.0, 2.0, 3.0, 4.0])
    assert pair == {"median": 2.0, "ci95": [2.0, 2.0]}  # every round's ratio is 2
    spread = paired_ratio([1.0, 2.0, 3.0, 10.0], [1.0] * 4, resamples=500)
    assert 1.0 <= spread["ci95"][0] <= spread["median"] == 2.5 <= spread["ci95"][1] <= 10.0
