"""The failover measurement's pure parts: state changes, its row, its verdicts."""

from __future__ import annotations

import pytest
from benchmark_fixtures import line_with, wrk_result

from lab.bench.failover import Failover, first_change_to


def failover(*, errors: int, detection: float | None) -> Failover:
    return Failover(
        "web-2",
        12,
        wrk_result(1800, errors=errors),
        killed_at_s=3.0,
        detection_s=detection,
        started_at_s=6.0,
        start_call_s=0.4,
        return_s=2.1,
        states=[(0.0, "UP"), (4.5, "DOWN"), (8.1, "UP")],
    )


def test_first_change_to_a_state_after_a_moment() -> None:
    states = [(0.0, "UP"), (3.2, "DOWN"), (6.0, "UP"), (9.1, "DOWN"), (10.0, "UP")]
    assert first_change_to(states, "DOWN", 2.0) == pytest.approx(1.2)
    assert first_change_to(states, "UP", 7.0) == pytest.approx(3.0)
    assert first_change_to(states, "MAINT", 0.0) is None


def test_a_clean_failover_passes() -> None:
    result = failover(errors=0, detection=1.5)
    (row,) = result.rows()
    assert row == ["failover: LB read, web-2 killed at 3.0 s of 12 s", "1800", "5.00", "20.00", "0"]
    text = "\n".join(result.notes())
    assert line_with(text, "failover: 0 failed of 14400").endswith("PASS")
    assert line_with(text, "failover: web-2 DOWN 1.50 s after the kill").endswith("PASS")
    assert line_with(text, "failover: web-2 UP 2.10 s").endswith("PASS")
    assert (
        "timeline in s since wrk started: kill 3.00, DOWN 4.50, start 6.00, UP 8.10, end 12" in text
    )


def test_failed_requests_and_a_node_never_down_miss() -> None:
    text = "\n".join(failover(errors=4, detection=None).notes())
    assert line_with(text, "failover: 4 failed").endswith("MISS")
    assert "DOWN never after the kill" in text
    assert line_with(text, "failover: web-2 DOWN").endswith("MISS")


def test_without_a_wrk_result_there_is_no_row() -> None:
    result = Failover("web-2", 12)
    assert result.rows() == []
    assert not any(line.startswith("failover: 0 failed") for line in result.notes())
    assert result.noise() == []
