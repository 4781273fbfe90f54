"""The replication lag measurement's pure parts: pairing writes with sightings, the verdict."""

from __future__ import annotations

import pytest

from lab.bench.lag import Lag, lag_samples


def lag(p: float, *, seen: int = 2000, write_errors: int = 0) -> Lag:
    return Lag(
        200,
        10.0,
        written=2000,
        write_errors=write_errors,
        seen=seen,
        achieved_rate=200.0,
        lags_ms=[p] * seen,
    )


def test_lag_pairs_each_acknowledged_row_with_its_first_sighting() -> None:
    acked = {1: 10.000, 2: 10.005, 3: 10.010}
    seen = {2: 10.007, 1: 10.001}  # row 3 never seen
    assert lag_samples(acked, seen) == pytest.approx([1.0, 2.0])


def test_a_low_p99_with_every_row_seen_passes() -> None:
    result = lag(2.0)
    (row,) = result.rows()
    assert row == [
        "replication lag: 200 writes/s to the primary (ms = lag)",
        "200",
        "2.00",
        "2.00",
        "0",
    ]
    (line,) = result.notes()
    assert line.startswith("lag:      2000 of 2000 rows seen on the replica")
    assert line.endswith("target p99 < 1000 ms  PASS")


def test_a_high_p99_misses() -> None:
    assert lag(1500.0).notes()[0].endswith("MISS")


def test_unseen_rows_or_failed_writes_miss_even_with_a_low_p99() -> None:
    unseen = lag(2.0, seen=1990)
    assert unseen.notes()[0].endswith("MISS")
    assert unseen.rows()[0][-1] == "10"
    assert lag(2.0, write_errors=1).notes()[0].endswith("MISS")


def test_json_carries_the_percentiles() -> None:
    data = lag(3.0).as_json()
    assert (data["p50_ms"], data["p99_ms"]) == (3.0, 3.0)
    assert Lag(200, 1.0).as_json()["p99_ms"] is None
