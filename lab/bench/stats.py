"""Arithmetic the measurements share: percentiles, medians, ratios, PASS/MISS verdicts, and the
order of interleaved runs."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Literal


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), interpolating between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be within 0..100, not {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median_of(values: Sequence[float | None]) -> float | None:
    """The median of the values that were measured (None: not measured), or None."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


Rule = Literal[">=", "<=", "<"]


def verdict(value: float | None, rule: Rule, target: float) -> str:
    """PASS when `value rule target` holds; MISS otherwise, or when there is no value."""
    if value is None:
        return "MISS"
    met = {">=": value >= target, "<=": value <= target, "<": value < target}[rule]
    return "PASS" if met else "MISS"


def rotated(items: Sequence[str], by: int) -> list[str]:
    """abc, bca, cab, ...: the order of round `by`, so that no variant always runs first."""
    shift = by % len(items) if items else 0
    return [*items[shift:], *items[:shift]]
