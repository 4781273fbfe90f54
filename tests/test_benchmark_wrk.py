"""The benchmark's wrk parts: the Lua hook, parsing its output, CPU per request, summaries.

No load runs here; `python -m lab.benchmark` is the script that runs it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from benchmark_fixtures import wrk_result

from lab.bench.config import Config
from lab.bench.cpu import CpuTimes
from lab.bench.wrk import DONE_HOOK, MARKER, POST_REQUEST, Wrk, WrkResult, parse_wrk, summarize

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
WRK_OUTPUT = f"""Running 8s test @ http://127.0.30.11/api/messages
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
        parse_wrk("Running 8s test @ http://127.0.30.11/\nRequests/sec: 1.0\n")
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
    assert wrk_result(100).cpu_us_per_request() is None  # not measured


def test_summarize_takes_medians_and_sums_errors() -> None:
    runs = [wrk_result(100, p99=30, errors=1), wrk_result(300, p99=10), wrk_result(200, p99=20)]
    summary = summarize(runs)
    assert (summary.rps, summary.p99_ms, summary.errors) == (200, 20, 1)
    assert summary.requests == 4800


def test_wrk_command_uses_the_settings_and_the_write_script(
    tmp_path: pytest.TempPathFactory,
) -> None:
    never = CpuTimes(0.0, 0.0, {}, {}, 0.0)
    wrk = Wrk(Config.quick(), tmp_path, lambda: never)  # type: ignore[arg-type]
    read = wrk.command("http://127.0.30.10/api/messages", 3, write=False)
    write = wrk.command("http://127.0.30.10/api/messages", 2.5, write=True)
    assert read[1:5] == ["-t2", "-c16", "-d3s", "--timeout"]
    assert write[3] == "-d2.5s"
    assert read[-1] == "http://127.0.30.10/api/messages"
    read_script, write_script = read[read.index("-s") + 1], write[write.index("-s") + 1]
    assert Path(read_script).read_text() == DONE_HOOK
    assert Path(write_script).read_text() == POST_REQUEST + DONE_HOOK
    assert 'wrk.method = "POST"' in Path(write_script).read_text()
