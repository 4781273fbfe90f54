"""The benchmark end to end, short: its own lab up, every measurement run once with tiny
durations (of the changes, a scale-out and back), the report rendered, the lab down.

It guards the seams the other benchmark tests fake: a lab or app change that breaks a
measurement (an API, a database that now requires TLS, an app without the function the
no-reuse line replaces). The numbers are not judged, only that each measurement produced its
results. It uses the benchmark's lab ("bench", 127.0.30.0/24), so it cannot run while
`make bench` does.
"""

from __future__ import annotations

import pytest
from system_tools import require

from lab.bench import changes, runner
from lab.bench.changes import Changes, Operation, run_one
from lab.bench.config import Config
from lab.bench.measurement import Context, Measurement
from lab.bench.report import as_json, render
from lab.bench.reuse import POOLED, WITHOUT
from lab.lab import REQUIRED, Lab

TINY = Config(
    threads=1,
    connections=4,
    read_seconds=1,
    write_seconds=1,
    rounds=1,
    failover_seconds=6,
    kill_at_seconds=1.0,
    lag_rate=50,
    lag_seconds=1.0,
)


def scale_out_and_back(context: Context) -> Changes:
    lab = context.lab
    return Changes(
        [
            run_one(context, Operation("scale 2 -> 3", lambda: lab.scale(3))),
            run_one(context, Operation("scale 3 -> 2", lambda: lab.scale(2))),
        ]
    )


def test_every_measurement_runs_on_the_benchmarks_own_lab(monkeypatch: pytest.MonkeyPatch) -> None:
    for tool in (*REQUIRED, "wrk"):
        require(tool)
    monkeypatch.setattr(changes, "LEAD_IN_S", 0.2)
    monkeypatch.setattr(changes, "TAIL_S", 0.2)
    measurements = [
        Measurement("changes", scale_out_and_back) if m.name == "changes" else m
        for m in runner.MEASUREMENTS
    ]
    report = runner.run(TINY, 2, lambda _: None, measurements)
    assert not Lab(runner.LAB_NAME).state_file.exists(), "the lab is torn down"
    assert list(report.results) == [m.name for m in runner.MEASUREMENTS]
    text = render(report)
    for start in (
        "read  (a) direct to web-1",
        "failover: LB read",
        "replication lag:",
        "tls   HTTPS",
    ):
        assert start in text
    data = as_json(report)
    assert data["lag"]["written"] == 50
    assert [c["operation"] for c in data["changes"]["changes"]] == ["scale 2 -> 3", "scale 3 -> 2"]
    assert all(c["error"] == "" and c["requests"] > 0 for c in data["changes"]["changes"])
    assert all(len(c["follow_s"]) == 1 for c in data["changes"]["changes"]), "one host each"
    runs = {(r["variant"], r["endpoint"]): r for r in data["connection_reuse"]["runs"]}
    assert len(runs) == 4
    without = runs[(WITHOUT, "read")]
    assert without["wrk"]["requests"] > 0
    assert sum(without["connections"].values()) > without["wrk"]["requests"] / 2, (
        "without reuse, a read opens a connection"
    )
    pooled = runs[(POOLED, "read")]
    assert sum(pooled["connections"].values()) < pooled["wrk"]["requests"] / 10, "reused"
    tls_rows = {row["key"]: row for row in data["tls"]["rows"]}
    assert set(tls_rows) == {
        "http",
        "https",
        "http-new",
        "https-new",
        "py-http",
        "py-full",
        "py-resumed",
    }
    assert all(row["rps"] and row["rps"][0] > 0 for row in tls_rows.values()), tls_rows
    assert tls_rows["py-full"]["resumed"] == [0.0], "a full handshake every time"
    assert tls_rows["py-resumed"]["resumed"][0] > 0.5, "the Python client resumes its sessions"
    assert "tls   https/http = " in text
