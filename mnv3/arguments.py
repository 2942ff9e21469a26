"""argparse types for numbers, shared by the command lines (export, evaluate, search): each refuses
a bad value with a message naming what was expected and what was given, which argparse prints as
one line beside the option's name (exit status 2)."""
from __future__ import annotations

import argparse
import math
from typing import Callable

__all__ = ["int_at_least", "positive_float"]


def int_at_least(low: int, high: int | None = None, *, hint: str = "") -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` (to ``high``, inclusive), else
    argparse.ArgumentTypeError "expected a positive integer [up to HIGH], got VALUE" (``hint``,
    when given, is added in parentheses: what to do instead)."""
    what = ("a positive integer" if low == 1 else f"an integer >= {low}") + (f" up to {high}" if high is not None else "")
    extra = f" ({hint})" if hint else ""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}{extra}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}{extra}")
        return value

    return parse


def positive_float(text: str) -> float:
    """An argparse type: a finite number above 0 (seconds, a learning rate), else
    argparse.ArgumentTypeError naming the text given."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value
