"""Where the time goes when our eager model is slower than torchvision's: an op-by-op
profile difference and the sentence that explains it."""
from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Sequence

from .formatting import round_significant


def eager_profile_diff(reference: Callable, ours: Callable, x: Any, *, calls: int = 2, top: int = 6) -> list[dict[str, Any]]:
    """Per op, our model's self CPU time and call count per call minus torchvision's.

    Returns the ``top`` ops by time difference plus every op whose count differs, as
    [{"op", "ours_ms", "torchvision_ms", "diff_ms", "ours_count", "torchvision_count"}]. Counts
    are exact where times are noisy: ``aten::clamp_min`` (ReLU) in one model against
    ``aten::clamp_min_`` (in place) in the other, for instance.
    """
    from torch.profiler import ProfilerActivity, profile

    os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # no profiler chatter on stderr
    per_op: dict[str, list[float]] = {}
    for i, run in enumerate((reference, ours)):
        run(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(calls):
                run(x)
        for event in prof.key_averages():
            entry = per_op.setdefault(event.key, [0.0, 0.0, 0.0, 0.0])
            entry[i] += event.self_cpu_time_total / 1000.0 / calls
            entry[2 + i] += event.count / calls
    rows = [{"op": op, "ours_ms": v[1], "torchvision_ms": v[0], "diff_ms": v[1] - v[0], "ours_count": v[3], "torchvision_count": v[2]}
            for op, v in per_op.items()]  # fmt: skip
    rows.sort(key=lambda r: -abs(r["diff_ms"]))
    keep = rows[:top] + [r for r in rows[top:] if r["ours_count"] != r["torchvision_count"]]
    return round_significant(keep, 4)


def profile_note(diff: Sequence[Mapping[str, Any]]) -> str:
    """One sentence from :func:`eager_profile_diff`: the ops only one model runs, then time differences."""
    only_ours = [d for d in diff if d.get("ours_count") and not d.get("torchvision_count")]
    only_tv = [d for d in diff if d.get("torchvision_count") and not d.get("ours_count")]
    parts = []
    if only_ours or only_tv:
        parts.append("ops only ours runs (per call): " + (", ".join(f"{d['op']} x{d['ours_count']:g}" for d in only_ours) or "none")
                     + "; only torchvision: " + (", ".join(f"{d['op']} x{d['torchvision_count']:g}" for d in only_tv) or "none"))  # fmt: skip
        names = {d["op"] for d in only_tv}
        if any(d["op"] + "_" in names for d in only_ours):
            parts.append("torchvision runs in place (op_) what ours runs out of place (op), allocating and touching a fresh output each time")
    timed = sorted(diff, key=lambda d: -abs(d["diff_ms"]))[:4]
    parts.append("largest self-CPU-time differences per call (ours - torchvision): " + ", ".join(f"{d['op']} {d['diff_ms']:+.1f} ms" for d in timed))
    return "; ".join(parts)
