"""The benchmark's arithmetic: percentiles, medians, ratios and PASS/MISS verdicts."""

from __future__ import annotations

import pytest

from lab.bench.stats import median_of, percentile, ratio, rotated, verdict


@pytest.mark.parametrize(
    ("q", "expected"),
    [(0, 1.0), (50, 2.5), (100, 4.0), (25, 1.75), (99, 3.97)],
)
def test_percentile_interpolates_between_closest_ranks(q: float, expected: float) -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], q) == pytest.approx(expected)


def test_percentile_of_one_value_and_of_none() -> None:
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match=r"0\.\.100"):
        percentile([1.0], 101)


def test_median_of_what_was_measured() -> None:
    assert median_of([3.0, None, 1.0, 2.0]) == 2.0
    assert median_of([1.0, 4.0]) == 2.5
    assert median_of([None, None]) is None
    assert median_of([]) is None


def test_ratio_and_a_zero_denominator() -> None:
    assert ratio(900, 1000) == pytest.approx(0.9)
    assert ratio(5, 0) is None


@pytest.mark.parametrize(
    ("value", "rule", "target", "expected"),
    [
        (0.9, ">=", 0.9, "PASS"),
        (0.8999, ">=", 0.9, "MISS"),
        (3.0, "<=", 3.0, "PASS"),
        (3.01, "<=", 3.0, "MISS"),
        (999.9, "<", 1000.0, "PASS"),
        (1000.0, "<", 1000.0, "MISS"),
        (0, "<=", 0, "PASS"),
        (None, ">=", 0.9, "MISS"),
    ],
)
def test_verdict(value: float | None, rule: str, target: float, expected: str) -> None:
    assert verdict(value, rule, target) == expected  # type: ignore[arg-type]


def test_rounds_rotate_the_order_of_the_variants() -> None:
    assert [rotated("abc", i) for i in range(4)] == [
        ["a", "b", "c"],
        ["b", "c", "a"],
        ["c", "a", "b"],
        ["a", "b", "c"],
    ]
    assert rotated([], 2) == []
