"""The connection reuse measurement: the release whose pool a file switches off, reading the
databases' counters and the kernel's TIME_WAIT sockets, and its table."""

from __future__ import annotations

import importlib
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from benchmark_fixtures import line_with, wrk_result

from lab.bench.reuse import (
    APP_CONNECTIONS,
    POOL_MODULE,
    POOLED,
    STATUS_QUERY,
    WITHOUT,
    Reuse,
    ReuseRun,
    new_since,
    parse_status,
    summarize,
    switchable_release,
    time_waits,
)
from lab.localize import LabError
from userdata import web_node_config

APP = web_node_config.app_files()


def load_app(app: Mapping[str, bytes], folder: Path) -> Any:
    """The pool's module of `app`, imported as gunicorn imports the shipped package: from a
    folder of its own, under a new name (no module of an earlier test is reused)."""
    package = folder / f"web_app_{uuid.uuid4().hex}"
    package.mkdir()
    for name, content in app.items():
        (package / name).write_bytes(content)
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(f"{package.name}.{POOL_MODULE.removesuffix('.py')}")
    finally:
        sys.path.remove(str(folder))


class Connection:
    def __init__(self) -> None:
        self.closed = False
        self.open = True

    def close(self) -> None:
        self.closed = True


def test_the_shipped_app_keeps_a_given_back_connection_for_the_next_call(tmp_path: Path) -> None:
    app = load_app(APP, tmp_path)
    host = app.Host("db-primary", 2, lambda: 1.0)
    connection = Connection()
    host.give_back(connection)
    assert host.take() == (connection, 1.0)
    assert not connection.closed


def test_the_switch_file_turns_the_pool_off_and_on(tmp_path: Path) -> None:
    switch = tmp_path / "no-connection-reuse"
    app = load_app(switchable_release(APP, switch), tmp_path)
    host = app.Host("db-primary", 2, lambda: 1.0)

    pooled = Connection()
    host.give_back(pooled)
    assert not pooled.closed
    assert host.take() == (pooled, 1.0), "switch off: the shipped pool"

    switch.touch()
    closed = Connection()
    host.give_back(closed)
    assert closed.closed
    assert host.take() == (None, 0.0), "switch on: nothing kept, the next call opens anew"

    switch.unlink()
    again = Connection()
    host.give_back(again)
    assert host.take() == (again, 1.0)


def test_the_wrapper_is_refused_when_the_app_no_longer_fits_it(tmp_path: Path) -> None:
    pool = APP[POOL_MODULE]
    changed = {
        **APP,
        POOL_MODULE: pool.replace(b"def give_back(self, connection):", b"def put(c):"),
    }
    with pytest.raises(LabError, match=r"def give_back\(self, connection\).*lab/bench/reuse.py"):
        switchable_release(changed, tmp_path / "switch")
    moved = {name: content for name, content in APP.items() if name != POOL_MODULE}
    with pytest.raises(LabError, match=rf"{POOL_MODULE} no longer has class Host:"):
        switchable_release(moved, tmp_path / "switch")
    released = switchable_release(APP, tmp_path / "switch")
    assert released[POOL_MODULE].startswith(pool)
    assert {name: released[name] for name in APP if name != POOL_MODULE} == moved, "shipped as is"


def test_the_status_query_reads_the_app_users_connections() -> None:
    assert "USER_STATISTICS WHERE USER = 'webapp_app'" in STATUS_QUERY
    assert parse_status("Connections\t9\nSsl_accepts\t0\nApp_connections\t4\n") == {
        "Connections": 9,
        "Ssl_accepts": 0,
        APP_CONNECTIONS: 4,
    }
    assert parse_status("") == {}
    assert parse_status("Ssl_cipher\t\n") == {}


def test_new_connections_leave_out_the_status_querys_own() -> None:
    before = {"db-primary": {"Connections": 100, "Ssl_accepts": 5}, "db-replica": {}}
    after = {"db-primary": {"Connections": 151, "Ssl_accepts": 55}, "db-replica": {}}
    before["db-replica"]["Connections"], after["db-replica"]["Connections"] = 7, 8
    assert new_since(before, after, "Connections") == {"db-primary": 50, "db-replica": 0}
    assert new_since(before, after, "Ssl_accepts") == {"db-primary": 50, "db-replica": 0}


# 127.0.30.51:3306 is 331E007F:0CEA; 127.0.30.101 is 651E007F; ticks are 100 per second.
PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 331E007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000   102        0 1 1
   1: 651E007F:9C40 331E007F:0CEA 06 00000000:00000000 03:00001700 00000000     0        0 0 3
   2: 651E007F:9C41 331E007F:0CEA 06 00000000:00000000 03:00000BB8 00000000     0        0 0 3
   3: 331E007F:0CEA 651E007F:9C42 06 00000000:00000000 03:00001702 00000000     0        0 0 3
   4: 651E007F:9C43 341E007F:0CEA 06 00000000:00000000 03:00001720 00000000     0        0 0 3
   5: 651E007F:9C44 331E007F:0CEA 01 00000000:00000000 00:00000000 00000000     0        0 9 1
   6: 651E007F:9C45 0A1E007F:0050 06 00000000:00000000 03:00001760 00000000     0        0 0 3
"""


def test_time_waits_of_a_run_by_their_timers() -> None:
    databases = [("127.0.30.51", 3306), ("127.0.30.52", 3306)]
    # Row 1: 58.88 s left (entered 1.12 s ago); row 2: 30 s left (30 s ago, an earlier run);
    # row 3: the database's side, 1.1 s ago; row 4: 59.2 s left, towards .52; row 5:
    # established; row 6: towards the load balancer's port 80, not a database.
    assert time_waits(PROC_NET_TCP, databases, 5.0, 100) == (2, 1)
    assert time_waits(PROC_NET_TCP, databases, 31.0, 100) == (3, 1)
    assert time_waits(PROC_NET_TCP, databases, 1.0, 100) == (1, 0)
    assert time_waits(PROC_NET_TCP, [("127.0.30.53", 3306)], 60.0, 100) == (0, 0)


def run(
    variant: str, endpoint: str, round_: int, rps: float, connections: int, tls: int = 0
) -> ReuseRun:
    return ReuseRun(
        variant,
        endpoint,
        round_,
        wrk_result(rps, p99=1000 / rps, other_cores=0.1),
        {"db-primary": connections // 4, "db-replica": connections - connections // 4},
        {"db-primary": tls, "db-replica": 0},
        time_wait=connections,
        time_wait_on_databases=3,
        status_connections={"db-primary": connections // 4, "db-replica": connections + 20},
    )


def rounds() -> Reuse:
    runs = []
    for round_, (pooled_read, without_read) in enumerate([(1000, 500), (900, 600), (1100, 400)]):
        runs += [
            run(WITHOUT, "read", round_ + 1, without_read, 4000),
            run(WITHOUT, "write", round_ + 1, 400, 3200),
            run(POOLED, "read", round_ + 1, pooled_read, 4),
            run(POOLED, "write", round_ + 1, 800, 8),
        ]
    return Reuse(2, 3, runs)


def test_summaries_are_medians_of_wrk_and_sums_of_the_counts() -> None:
    summary = summarize([r for r in rounds().runs if (r.variant, r.endpoint) == (POOLED, "read")])
    assert (summary.rps, summary.p99_ms) == (1000, 1.0)
    assert summary.requests == 24000
    assert summary.connections == {"db-primary": 3, "db-replica": 9}
    assert (summary.time_wait, summary.time_wait_on_databases) == (12, 9)
    assert summary.per_thousand == "0"


def test_the_table_compares_the_pool_with_no_reuse() -> None:
    result = rounds()
    text = "\n".join(result.notes())
    words = " ".join(text.split())
    assert "no TLS to the databases (0 handshakes): the numbers exclude TLS" in words
    assert "give_back closes each database connection" in words
    assert "3 round(s), the order of the variants rotated per round" in words
    rows = [line for line in text.splitlines() if line.startswith(("read ", "write"))]
    expected = [f"read  {POOLED}", f"read  {WITHOUT}", f"write {POOLED}", f"write {WITHOUT}"]
    assert len(rows) == 4
    assert all(row.startswith(start) for row, start in zip(rows, expected, strict=True)), rows
    # req/s, p50, p99, errors, new connections on the primary and the replica, TLS, TIME_WAIT
    assert rows[1].split()[-8:] == ["500", "5.00", "2.00", "0", "3000", "9000", "0", "12000"]
    read = line_with(text, "reuse:    read  pooled/without")
    assert read.startswith("reuse:    read  pooled/without: req/s x 2.000 of the medians")
    assert "(per round: 2.000 1.500 2.750)" in read
    assert "p99 1.00 vs 2.00 ms" in read
    assert read.endswith("new connections per 1000 requests: 0 vs 1000")
    assert line_with(text, "reuse:    'Connections' status").startswith(
        "reuse:    'Connections' status, primary/replica: read pooled 3/72, read without reuse "
        "3000/12060, write pooled 6/84, write without reuse 2400/9660;"
    )
    assert (
        line_with(text, f"reuse:    {WITHOUT}")
        == f"reuse:    {WITHOUT}: 21600 sockets towards the databases entered TIME_WAIT during "
        "its 48 s of runs on the app's side, 18 on the databases' side"
    )
    assert result.noise() == [0.1] * 12
    assert result.rows() == []


def test_tls_handshakes_say_the_numbers_include_tls() -> None:
    result = Reuse(2, 1, [run(WITHOUT, "read", 1, 500, 4000, tls=4000)])
    words = " ".join(" ".join(result.notes()).split())
    assert "the databases accepted 4000 TLS handshakes: the numbers include TLS" in words
    assert "pooled/without" not in words, "no ratio without both variants"
