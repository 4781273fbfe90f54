"""The throughput measurement's pure parts: the round order, its rows, ratios and verdicts."""

from __future__ import annotations

from benchmark_fixtures import line_with, wrk_result

from lab.bench.throughput import Throughput, cpu_line
from lab.bench.wrk import WrkResult

LABELS = {"a": "(a) direct to web-1", "b": "(b) LB, only web-1 in rotation", "c": "(c) LB, all 2"}


def throughput(b_read: float, *, a_read: float = 2000) -> Throughput:
    def runs(a: float, b: float, c: float) -> dict[str, list[WrkResult]]:
        return {"a": [wrk_result(a)] * 3, "b": [wrk_result(b)] * 3, "c": [wrk_result(c)] * 3}

    return Throughput(
        LABELS, 2, {"read": runs(a_read, b_read, 2100), "write": runs(1000, 950, 1000)}
    )


def test_rows_are_medians_per_endpoint_and_scenario_reads_first() -> None:
    rows = throughput(1900).rows()
    assert [row[0] for row in rows] == [
        "read  (a) direct to web-1  [GET /api/messages]",
        "read  (b) LB, only web-1 in rotation  [GET /api/messages]",
        "read  (c) LB, all 2  [GET /api/messages]",
        "write (a) direct to web-1  [POST /api/messages]",
        "write (b) LB, only web-1 in rotation  [POST /api/messages]",
        "write (c) LB, all 2  [POST /api/messages]",
    ]
    assert rows[1][1:] == ["1900", "5.00", "20.00", "0"]


def test_the_load_balancers_cost_gets_its_verdict() -> None:
    good = "\n".join(throughput(1900).notes())
    assert line_with(good, "read  b/a").startswith("read  b/a = 0.950 of the medians")
    assert "(per round: 0.950 0.950 0.950)" in line_with(good, "read  b/a")
    assert line_with(good, "read  b/a").endswith("target >= 0.9  PASS")
    assert "no target" in line_with(good, "read  c/b")
    assert "what 1 more node(s) buy here" in line_with(good, "read  c/b")
    assert line_with(good, "write b/a").endswith("PASS")

    bad = "\n".join(throughput(1700).notes())
    assert line_with(bad, "read  b/a").endswith("MISS")
    nothing_direct = "\n".join(throughput(1700, a_read=0).notes())
    assert line_with(nothing_direct, "read  b/a").startswith("read  b/a = - of the medians")
    assert line_with(nothing_direct, "read  b/a").endswith("MISS")


def test_cpu_line_bounds_the_ratio_by_haproxys_share() -> None:
    a = WrkResult(1000, 1.0, 1000.0, 1, 1, 1, 1, 1, 0, 0, 0.0, {"web-1/app": 0.9, "x": 0.1})
    b = WrkResult(1000, 1.0, 1000.0, 1, 1, 1, 1, 1, 0, 0, 0.0, {"load-balancer-1/haproxy": 0.1})
    line = cpu_line("read", {"a": [a], "b": [b]})
    assert line.startswith("read  CPU per request: 1000 us in (a)")
    assert "HAProxy adds 100 us in (b): b/a ~ 0.909" in line
    assert cpu_line("write", {"a": [wrk_result(1)], "b": [b]}).endswith("not measured")


def test_noise_is_every_run_that_measured_it() -> None:
    result = throughput(1900)
    assert result.noise() == []
    result.runs["read"]["a"] = [wrk_result(1, other_cores=0.25), wrk_result(1)]
    assert result.noise() == [0.25]
