"""The benchmark's pure parts: wrk output, percentiles, ratios and verdicts, CPU accounting.

No load runs here; `python -m lab.benchmark` is the script that runs it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lab.benchmark import (
    BENCHMARK_CPU,
    DONE_HOOK,
    MARKER,
    Config,
    CpuTimes,
    Failover,
    Lag,
    Report,
    Throughput,
    WrkResult,
    cpu_used,
    daemon_of,
    extract_version,
    first_change_to,
    format_table,
    lag_samples,
    other_cores,
    parse_cpu_line,
    parse_pid_stat,
    parse_wrk,
    percentile,
    ratio,
    render,
    rotated,
    summarize,
    verdict,
)

HOOK_FIELDS = {
    "duration_us": 8004123,
    "requests": 16008,
    "bytes": 33612345,
    "connect": 0,
    "read": 2,
    "write": 0,
    "status": 3,
    "timeout": 1,
    "p50_us": 7301,
    "p90_us": 12610,
    "p99_us": 19450,
    "mean_us": 8120.5,
    "max_us": 30460,
}
WRK_OUTPUT = f"""Running 8s test @ http://127.0.10.11/api/messages
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     8.12ms    3.48ms  30.46ms   75.86%
  Latency Distribution
     50%    7.30ms
     99%   19.45ms
  16008 requests in 8.00s, 32.06MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 3
Requests/sec:   2000.00
Transfer/sec:      4.01MB
{MARKER}{json.dumps(HOOK_FIELDS)}
"""


def result(rps: float, *, p50: float = 5.0, p99: float = 20.0, errors: int = 0) -> WrkResult:
    return WrkResult(
        requests=int(rps * 8),
        seconds=8.0,
        rps=rps,
        p50_ms=p50,
        p90_ms=p50 * 2,
        p99_ms=p99,
        mean_ms=p50,
        max_ms=p99 * 2,
        non_2xx=errors,
        socket_errors=0,
    )


# --- wrk ----------------------------------------------------------------------------------------


def test_parse_wrk_reads_the_done_hook_line_among_wrks_own_text() -> None:
    parsed = parse_wrk(WRK_OUTPUT)
    assert parsed.requests == 16008
    assert parsed.seconds == pytest.approx(8.004123)
    assert parsed.rps == pytest.approx(16008 / 8.004123)
    assert (parsed.p50_ms, parsed.p90_ms, parsed.p99_ms) == (7.301, 12.61, 19.45)
    assert parsed.mean_ms == pytest.approx(8.1205)
    assert parsed.max_ms == 30.46
    assert parsed.non_2xx == 3
    assert parsed.socket_errors == 3  # connect + read + write + timeout
    assert parsed.errors == 6


def test_parse_wrk_refuses_output_without_exactly_one_result_line() -> None:
    with pytest.raises(ValueError, match="found 0"):
        parse_wrk("Running 8s test @ http://127.0.10.11/\nRequests/sec: 1.0\n")
    with pytest.raises(ValueError, match="found 2"):
        parse_wrk(WRK_OUTPUT + WRK_OUTPUT)


def test_parse_wrk_with_no_duration_reports_zero_rate_not_a_crash() -> None:
    fields = {**HOOK_FIELDS, "duration_us": 0, "requests": 0}
    assert parse_wrk(f"{MARKER}{json.dumps(fields)}\n").rps == 0.0


def test_the_lua_hook_prints_every_field_the_parser_reads() -> None:
    printed = set(re.findall(r'"(\w+)":%', DONE_HOOK))
    assert printed == set(HOOK_FIELDS)
    assert MARKER in DONE_HOOK


def test_cpu_per_request_sums_the_named_parts() -> None:
    run = WrkResult(1000, 1.0, 1000.0, 1, 1, 1, 1, 1, 0, 0, 0.0, {"a/x": 0.5, "b/y": 0.25})
    assert run.cpu_us_per_request() == pytest.approx(750.0)
    assert run.cpu_us_per_request("b/y") == pytest.approx(250.0)
    assert result(100).cpu_us_per_request() is None  # not measured


# --- statistics and verdicts --------------------------------------------------------------------


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


def test_rounds_rotate_the_order_of_the_scenarios() -> None:
    assert [rotated("abc", i) for i in range(4)] == [
        ["a", "b", "c"],
        ["b", "c", "a"],
        ["c", "a", "b"],
        ["a", "b", "c"],
    ]
    assert rotated([], 2) == []


def test_summarize_takes_medians_and_sums_errors() -> None:
    summary = summarize([result(100, p99=30, errors=1), result(300, p99=10), result(200, p99=20)])
    assert (summary.rps, summary.p99_ms, summary.errors) == (200, 20, 1)
    assert summary.requests == 4800


def test_lag_pairs_each_acknowledged_row_with_its_first_sighting() -> None:
    acked = {1: 10.000, 2: 10.005, 3: 10.010}
    seen = {2: 10.007, 1: 10.001}  # row 3 never seen
    assert lag_samples(acked, seen) == pytest.approx([1.0, 2.0])


def test_first_change_to_a_state_after_a_moment() -> None:
    states = [(0.0, "UP"), (3.2, "DOWN"), (6.0, "UP"), (9.1, "DOWN"), (10.0, "UP")]
    assert first_change_to(states, "DOWN", 2.0) == pytest.approx(1.2)
    assert first_change_to(states, "UP", 7.0) == pytest.approx(3.0)
    assert first_change_to(states, "MAINT", 0.0) is None


# --- machine facts and CPU ------------------------------------------------------------------


HAPROXY_V = "HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/"
MARIADB_V = "mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for debian-linux-gnu on x86_64"


@pytest.mark.parametrize(
    ("text", "pattern", "expected"),
    [
        (HAPROXY_V, r"version (\S+)", "2.6.12-1+deb12u4"),
        ("nginx version: nginx/1.22.1\n", r"nginx/(\S+)", "1.22.1"),
        (MARIADB_V, r"Ver (\S+)", "10.11.19-MariaDB-0+deb12u1"),
        ("gunicorn (version 20.1.0)", r"version ([^)\s]+)", "20.1.0"),
        ("wrk debian/4.1.0-3+b2 [epoll] Copyright (C) 2012", r"wrk (\S+)", "debian/4.1.0-3+b2"),
        ("", r"wrk (\S+)", "?"),
    ],
)
def test_extract_version(text: str, pattern: str, expected: str) -> None:
    assert extract_version(text, pattern) == expected


def test_proc_stat_parsing() -> None:
    assert parse_cpu_line("cpu  76239 10 20798 222303 784 0 2246 48 0 0", 100) == pytest.approx(
        970.47
    )
    # The command name is in parentheses and may itself hold ") ".
    line = "4242 (odd) name) S 1 4242 4240 0 -1 4194560 100 0 0 0 150 25 0 0 20 0 9 0 1 2 3"
    assert parse_pid_stat(line) == (4240, 175)


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("/usr/sbin/haproxy -db -f /s/b/load-balancer/haproxy.cfg", "load-balancer/haproxy"),
        (
            "nginx: master process /usr/sbin/nginx -c /s/b/web-1/nginx.conf -e /s/b/web-1/e",
            "web-1/nginx",
        ),
        (
            "/usr/bin/python3 /usr/bin/gunicorn --config /s/b/web-2/etc/gunicorn.conf.py",
            "web-2/app",
        ),
        ("/usr/sbin/mariadbd --no-defaults --datadir=/s/b/db-replica/data", "db-replica/mariadbd"),
        ("nginx: worker process", None),  # a worker: counted by its master's session
        ("/usr/sbin/haproxy -f /s/lab/load-balancer/haproxy.cfg", None),  # another lab's
    ],
)
def test_daemon_of_a_command_line(command: str, expected: str | None) -> None:
    assert daemon_of(command, Path("/s/b")) == expected


def test_cpu_used_and_what_other_processes_took() -> None:
    before = CpuTimes(100.0, 50.0, {"web-1/app": 10.0, BENCHMARK_CPU: 1.0})
    after = CpuTimes(
        104.0, 57.0, {"web-1/app": 13.0, "load-balancer/haproxy": 0.5, BENCHMARK_CPU: 1.5}
    )
    assert cpu_used(before, after) == {
        "load-balancer/haproxy": 0.5,
        "web-1/app": 3.0,
        BENCHMARK_CPU: 0.5,
    }
    # The machine was busy 7 s in 4 s of wall time; 4 s of it ours: 3 s / 4 s elsewhere.
    assert other_cores(before, after) == pytest.approx(0.75)
    assert other_cores(after, after) == 0.0


# --- the printed report ---------------------------------------------------------------------


def test_format_table_aligns_the_columns() -> None:
    table = format_table(["scenario", "req/s"], [["read (a)", "2000"], ["write (c) long", "95"]])
    assert table.splitlines() == [
        "scenario        req/s",
        "read (a)         2000",
        "write (c) long     95",
    ]


def report(*, b_read: float, failover_errors: int, detection: float | None, lag_p: float) -> Report:
    def runs(a: float, b: float, c: float) -> dict[str, list[WrkResult]]:
        return {"a": [result(a)] * 3, "b": [result(b)] * 3, "c": [result(c)] * 3}

    throughput = Throughput({"read": runs(2000, b_read, 2100), "write": runs(1000, 950, 1000)})
    failover = Failover(
        "web-2",
        result(1800, errors=failover_errors),
        killed_at_s=3.0,
        detection_s=detection,
        started_at_s=6.0,
        start_call_s=0.4,
        return_s=2.1,
    )
    lag = Lag(200, 10.0, written=2000, seen=2000, achieved_rate=200.0, lags_ms=[lag_p] * 2000)
    facts = "cpu cores memory kernel python pymysql haproxy nginx mariadb gunicorn wrk"
    machine = dict.fromkeys(facts.split(), "x")
    nodes = ["web-1", "web-2"]
    return Report(Config.full(), machine, "http://127.0.10.10/", nodes, throughput, failover, lag)


def line_with(text: str, start: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(start))


def test_render_gives_each_target_its_verdict() -> None:
    good = render(report(b_read=1900, failover_errors=0, detection=1.5, lag_p=2.0))
    assert line_with(good, "read  b/a").startswith("read  b/a = 0.950 of the medians")
    assert line_with(good, "read  b/a").endswith("target >= 0.9  PASS")
    assert "no target" in line_with(good, "read  c/b")
    assert line_with(good, "write b/a").endswith("PASS")
    assert line_with(good, "failover: 0 failed").endswith("PASS")
    assert "DOWN 1.50 s" in good
    assert "timeline in s since wrk started: kill 3.00, start 6.00, end 12" in good
    assert line_with(good, "lag:").endswith("PASS")

    bad = render(report(b_read=1700, failover_errors=4, detection=None, lag_p=1500.0))
    assert line_with(bad, "read  b/a").endswith("MISS")
    assert line_with(bad, "failover: 4 failed").endswith("MISS")
    assert "DOWN never after the kill" in bad
    assert line_with(bad, "failover: web-2 DOWN").endswith("MISS")
    assert line_with(bad, "lag:").endswith("MISS")


def test_unseen_lag_rows_are_a_miss_even_with_a_low_p99() -> None:
    text = render(report(b_read=1900, failover_errors=0, detection=1.5, lag_p=2.0))
    assert line_with(text, "lag:").endswith("PASS")
    partial = report(b_read=1900, failover_errors=0, detection=1.5, lag_p=2.0)
    partial.lag.seen = 1990
    assert line_with(render(partial), "lag:").endswith("MISS")
