"""How the suites write numbers: rounded JSON values, console tables, and the notes on a
target's paired-ratio interval."""
from __future__ import annotations

import math
from typing import Any, Iterable, Sequence


def round_significant(value: Any, digits: int = 6) -> Any:
    """``value`` with every float rounded to ``digits`` significant digits, inside lists and dict
    values too (JSON stays readable, small differences survive); NaN and inf become None (JSON has
    neither). Other values come back as they are; a tuple is not descended into."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}") if math.isfinite(value) else None
    if isinstance(value, list):
        return [round_significant(v, digits) for v in value]
    if isinstance(value, dict):
        return {k: round_significant(v, digits) for k, v in value.items()}
    return value


def console_table(rows: Sequence[Sequence[str]]) -> str:
    """``rows`` (the header first; every row the same number of strings) as text for the console:
    columns padded to their widest cell, the first left-aligned and the rest right-aligned, each
    line indented by two spaces. Raises IndexError when ``rows`` is empty."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows)


def format_ms(value: float | None) -> str:
    """A time in milliseconds for a table: 3 decimals under 10 ms, 1 above; "-" for None, NaN or inf."""
    return "-" if value is None or not math.isfinite(value) else (f"{value:.3f}" if value < 10 else f"{value:.1f}")


def index_results(results: Iterable[dict[str, Any]], key: str = "contender") -> dict[tuple, dict[str, Any]]:
    """A suite's result records keyed by ``(setting, batch, record[key])``; a later duplicate wins.
    Raises KeyError when a record lacks one of those fields."""
    return {(r["setting"], r["batch"], r[key]): r for r in results}


def within_noise(ci: Sequence[float] | None, threshold: float) -> bool | None:
    """Whether the paired ratios' 95% interval ``ci`` ([low, high], ratios to the reference)
    contains ``threshold`` (a target's ratio); None when there is no interval (``ci`` empty or
    ``[None, None]``)."""
    if not ci or ci[0] is None:
        return None
    return ci[0] <= threshold <= ci[1]


def target_verdict(target: dict[str, Any]) -> str:
    """"met", "not met" or "undecided" for a target row of the suites' JSON (``met``: the value is
    on the right side of ``threshold``; ``within_noise``: the paired ratios' 95% interval contains
    the threshold). A ratio whose interval contains the threshold is undecided whichever side its
    median falls on: the run cannot tell the two apart."""
    if target.get("within_noise"):
        return "undecided"
    return "met" if target["met"] else "not met"


def target_line(target: dict[str, Any]) -> str:
    """The console line of a target row: its verdict, what was measured where, and the note."""
    where = f"{target['setting']}, batch {target['batch']}"
    note = f" ({target['note']})" if target.get("note") else ""
    return f"target {target_verdict(target).upper()}: {target['target']} [{where}] = {target['value']:.3f}{note}"


def ci_note(ci: Sequence[float] | None, threshold: float) -> str:
    """One sentence on the paired ratios' 95% interval ``ci`` ([low, high]) against a target's
    ``threshold``: whether it contains the threshold (the difference is within the machine's
    noise) or lies entirely below or above it; "" when there is no interval."""
    if not ci or ci[0] is None:
        return ""
    lo, hi = ci
    if lo <= threshold <= hi:
        where = f"which contains {threshold:g}: the difference is within this machine's noise"
    else:
        where = f"entirely {'below' if hi < threshold else 'above'} {threshold:g}"
    return f"paired per-round ratios: 95% interval [{lo:.3f}, {hi:.3f}], {where}"
