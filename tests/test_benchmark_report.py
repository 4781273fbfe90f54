"""The printed report: its tables, how it assembles each measurement's rows and lines, its JSON,
and the runner's list of measurements and command line (no lab)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import pytest
from benchmark_fixtures import wrk_result

from lab.bench import runner
from lab.bench.config import Config
from lab.bench.failover import Failover
from lab.bench.lag import Lag
from lab.bench.measurement import Result, Row
from lab.bench.report import Report, as_json, render
from lab.bench.table import format_table
from lab.bench.throughput import Throughput

MACHINE = dict.fromkeys(
    [
        "cpu",
        "cores",
        "memory",
        "kernel",
        "python",
        "pymysql",
        "haproxy",
        "nginx",
        "mariadb",
        "gunicorn",
        "wrk",
    ],
    "x",
)


def test_format_table_aligns_the_columns() -> None:
    table = format_table(["scenario", "req/s"], [["read (a)", "2000"], ["write (c) long", "95"]])
    assert table.splitlines() == [
        "scenario        req/s",
        "read (a)         2000",
        "write (c) long     95",
    ]


@dataclass
class Extra:
    """A measurement of another kind, as a new module would add one."""

    extra_rows: list[Row] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    cores: list[float] = field(default_factory=list)

    def rows(self) -> list[Row]:
        return self.extra_rows

    def notes(self) -> list[str]:
        return self.lines

    def noise(self) -> list[float]:
        return self.cores

    def as_json(self) -> dict[str, Any]:
        return {"lines": self.lines}


def report(results: dict[str, Result]) -> Report:
    return Report(Config.full(), MACHINE, "http://127.0.30.10/", ["web-1", "web-2"], results, 99.4)


def test_every_measurement_adds_its_rows_to_one_table_and_its_lines_below() -> None:
    runs = {key: [wrk_result(1000, other_cores=0.2)] for key in "abc"}
    throughput = Throughput({"a": "(a)", "b": "(b)", "c": "(c)"}, 2, {"read": runs, "write": runs})
    failover = Failover("web-2", 12, wrk_result(900), detection_s=1.0, return_s=1.0)
    lag = Lag(200, 10.0, written=10, seen=10, achieved_rate=200.0, lags_ms=[1.0] * 10)
    extra = Extra([["https: LB read", "700", "1.00", "2.00", "0"]], ["", "https: fine"], [0.6])
    text = render(
        report({"throughput": throughput, "failover": failover, "lag": lag, "https": extra})
    )
    lines = text.splitlines()
    assert lines[0] == "web-infra lab benchmark: 2 web nodes, 99 s"
    assert lines[3].startswith("wrk:      -t2 -c16 --timeout 2s; reads 8 s, writes 4 s per run")
    header = lines.index(next(line for line in lines if line.startswith("scenario")))
    table = lines[header + 1 : header + 10]
    starts = [
        "read  (a)",
        "read  (b)",
        "read  (c)",
        "write (a)",
        "write (b)",
        "write (c)",
        "failover: LB read, web-2 killed at 0.0 s of 12 s",
        "replication lag: 200 writes/s to the primary (ms = lag)",
        "https: LB read",
    ]
    assert all(row.startswith(start) for row, start in zip(table, starts, strict=True)), table
    noise = lines[header + 10]
    assert noise.startswith("noise:    other processes on this machine used 0.20 cores")
    assert "(median; max 0.60) of x during the measurements" in noise
    assert lines[header + 11] == ""
    notes = lines[header + 12 :]
    assert notes[0].startswith("read  b/a = 1.000")
    assert [n.split(":")[0] for n in notes[6:10]] == ["failover"] * 4
    assert notes[10].startswith("lag:")
    assert notes[11:] == ["", "https: fine"]


def test_a_report_without_rows_or_noise_has_neither_line() -> None:
    text = render(report({"quiet": Extra(lines=["only a line"])}))
    assert "scenario" not in text
    assert "noise:" not in text
    assert text.endswith("\n\nonly a line")


def test_json_holds_every_result_under_its_measurements_name() -> None:
    data = as_json(report({"lag": Lag(200, 1.0), "https": Extra(lines=["x"])}))
    assert list(data) == [
        "config",
        "machine",
        "topology_url",
        "web_nodes",
        "lag",
        "https",
        "seconds",
    ]
    assert data["config"]["rounds"] == 3
    assert data["https"] == {"lines": ["x"]}
    json.dumps(data)  # serialisable as it is


def test_the_runner_runs_each_measurement_once_under_its_own_name() -> None:
    names = [m.name for m in runner.MEASUREMENTS]
    assert names == ["throughput", "failover", "lag", "changes", "connection_reuse", "tls"]
    assert all(callable(m.measure) for m in runner.MEASUREMENTS)


def test_the_command_line_keeps_its_options() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lab.benchmark", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for option in ("--quick", "--json PATH", "--web-nodes"):
        assert option in result.stdout
    assert "what the architecture does on this machine" in result.stdout


def test_without_wrk_it_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("lab.bench.runner.shutil.which", lambda name: None)
    assert runner.main([]) == 1
    assert "wrk is not installed (apt-get install wrk)" in capsys.readouterr().err
