"""Argument values the commands share: each parser checks one and names what was expected in one line."""

from __future__ import annotations

import argparse
from typing import Callable

from sdxl_breeder.spec import LIMITS


def size(value: str) -> int:
    try:
        v = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of pixels") from None
    problem = LIMITS.check_size(f"{v} pixels", v)
    if problem is not None:  # the same limits the server enforces, checked before connecting
        raise argparse.ArgumentTypeError(problem.replace(f", got {v}", ""))
    return v


def unit(value: str) -> float:
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"{v} must be within [0, 1]")
    return v


def number(value: str) -> float:
    try:
        return float(value)  # the caller checks ranges (a walk: fps within (0, 120], seconds > 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None


def point(value: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a point; write x,y (e.g. 0.5,0.25)") from None
    return x, y  # the walk checks the range and names the point


def whole(name: str, lo: int, hi: int, shown_hi: str | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number within [lo, hi], else one line naming the range."""
    def parse(value: str) -> int:
        try:
            v = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{name} {v} must be within [{lo}, {shown_hi or hi}]")
        return v

    parse.__name__ = name  # argparse names the type in some messages
    return parse


seed = whole("seed", 0, LIMITS.max_seed)
port = whole("port", 0, 65535)
quality = whole("quality", LIMITS.min_quality, LIMITS.max_quality)
