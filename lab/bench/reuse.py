"""Connection reuse between the app and its databases: with the app's pool, and without it.

The app keeps idle database connections per worker process and server, and leases one per call
(userdata/app/web_app.py: `Host.take` and `Host.give_back`). Two variants of the app are
released to every web node through the lab (so both run on freshly started nodes), warmed up
for WARM_UP_S, then measured with wrk through the load balancer to every node (the throughput
runs' settings), one read run and one write run each:

- without reuse: the repository's app plus NO_REUSE, one line that makes `give_back` close the
  connection instead of keeping it, so every database call opens a new connection (a new TLS
  handshake too, when the databases speak TLS), as the app did before it had a pool;
- pooled: the repository's app as shipped, released second, so the lab ends as it began.

Per run: wrk's req/s, p50, p99 and errors; the new connections the app's database user opened
on the primary and on the replica (MariaDB's user statistics, `userstat`, on for the
measurement: `SHOW GLOBAL STATUS` 'Connections' counts more than clients on a replica, which
starts threads of its own while it applies replicated writes; its change is kept in `--json`);
the TLS handshakes the servers accepted ('Ssl_accepts': zero while the app does not use TLS);
and the sockets towards the databases' address and port that entered TIME_WAIT during the run
(the app's side), from /proc/net/tcp right after it. A socket stays in TIME_WAIT for 60 s,
longer than a run, and /proc/net/tcp shows how much of that each one has left, so a count of the
run's own is exact even with the previous runs' sockets still there.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import struct
import textwrap
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.web_infrastructure import MASTER_USERNAME
from lab import mariadb
from lab.bench.measurement import Context, Row
from lab.bench.stats import ratio
from lab.bench.table import HEADING_WIDTH, format_table, ms, ratio_text
from lab.bench.wrk import READ_PATH, WrkResult
from lab.localize import LabError

APP = Path(__file__).resolve().parents[2] / "userdata" / "app" / "web_app.py"
NO_REUSE = "\n\nHost.give_back = lambda self, connection: close(connection)  # no reuse\n"
"""Appended to the app: a connection given back is closed instead of kept for the next call."""
NO_REUSE_NEEDS = ("class Host:", "def give_back(self, connection):", "def close(connection):")
WARM_UP_S = 1.0
DATABASES = ("db-primary", "db-replica")
TIME_WAIT = "06"  # the state's number in /proc/net/tcp (include/net/tcp_states.h)
TIME_WAIT_TIMER = "03"  # /proc/net/tcp's `tr` of a socket in TIME_WAIT
TIME_WAIT_SECONDS = 60.0  # TCP_TIMEWAIT_LEN, fixed in Linux
VARIANTS = ("pooled (as shipped)", "without reuse")
ENDPOINTS = ("read", "write")


def no_reuse_release(source: str) -> str:
    """The app with its pool disabled by one line; refuses an app that no longer fits it."""
    missing = [needed for needed in NO_REUSE_NEEDS if needed not in source]
    if missing:
        raise LabError(
            f"the app no longer has {', '.join(missing)}: update NO_REUSE in "
            "lab/bench/reuse.py to turn its connection pool off"
        )
    return source + NO_REUSE


def parse_status(text: str) -> dict[str, int]:
    """`SHOW GLOBAL STATUS` rows as the mariadb client prints them in batch mode."""
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition("\t")
        if value.strip().isdigit():
            values[name.strip()] = int(value)
    return values


def _address(field_: str) -> tuple[str, int]:
    """/proc/net/tcp's `0100007F:0CEA`: an IPv4 address in host byte order, a port in hex."""
    address, port = field_.split(":")
    return socket.inet_ntoa(struct.pack("=I", int(address, 16))), int(port, 16)


def time_waits(
    table: str, endpoints: Iterable[tuple[str, int]], within_s: float, ticks_per_second: int
) -> tuple[int, int]:
    """Sockets of a /proc/net/tcp table that entered TIME_WAIT in the last `within_s` seconds:
    (towards one of the endpoints, on one of them). On one machine a closed connection leaves
    one of the two, on the side that closed first."""
    wanted = set(endpoints)
    towards = on = 0
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 6 or fields[3] != TIME_WAIT:
            continue
        timer, left = fields[5].split(":")
        if timer != TIME_WAIT_TIMER or int(left, 16) / ticks_per_second < (
            TIME_WAIT_SECONDS - within_s
        ):
            continue
        local, remote = _address(fields[1]), _address(fields[2])
        towards += remote in wanted
        on += local in wanted
    return towards, on


@dataclass
class ReuseRun:
    variant: str
    endpoint: str
    wrk: WrkResult
    connections: dict[str, int]
    """Database host -> new connections the app's user opened on it during the run."""
    tls_handshakes: dict[str, int]
    time_wait: int
    """Sockets towards the databases that entered TIME_WAIT during the run (the app's side)."""
    time_wait_on_databases: int
    """The same on the databases' side (connections the server closed first)."""
    status_connections: dict[str, int] = field(default_factory=dict)
    """Database host -> the change of its 'Connections' status during the run, less the status
    query's own: on the replica, it also counts the threads it starts to apply writes."""

    def row(self) -> Row:
        return [
            f"{self.endpoint:5} {self.variant}",
            f"{self.wrk.rps:.0f}",
            ms(self.wrk.p50_ms),
            ms(self.wrk.p99_ms),
            str(self.wrk.errors),
            *(str(self.connections.get(db, 0)) for db in DATABASES),
            str(sum(self.tls_handshakes.values())),
            str(self.time_wait),
        ]


@dataclass
class Reuse:
    web_nodes: int
    runs: list[ReuseRun] = field(default_factory=list)

    def run(self, variant: str, endpoint: str) -> ReuseRun | None:
        return next((r for r in self.runs if r.variant == variant and r.endpoint == endpoint), None)

    def rows(self) -> list[Row]:
        return []  # a table of its own: its columns are not the main table's

    def notes(self) -> list[str]:
        ordered = [
            run
            for endpoint in ENDPOINTS
            for variant in VARIANTS
            if (run := self.run(variant, endpoint)) is not None
        ]
        tls = sum(sum(r.tls_handshakes.values()) for r in self.runs)
        heading = (
            f"connection reuse: through the LB to all {self.web_nodes} nodes, wrk as above, one "
            "run each, each variant just released to every node; without reuse = the same app "
            "with one added line that closes each database connection when a call gives it "
            "back (a new connection per database call); "
            + (
                f"the databases accepted {tls} TLS handshakes: the numbers include TLS"
                if tls
                else "no TLS to the databases (0 handshakes): the numbers exclude TLS"
            )
            + ". new conns: opened by the app's database user (MariaDB's user statistics); "
            "TIME_WAIT: sockets towards the databases that entered it during the run"
        )
        out = [
            "",
            *textwrap.wrap(heading, width=HEADING_WIDTH),
            format_table(
                [
                    "run",
                    "req/s",
                    "p50 ms",
                    "p99 ms",
                    "errors",
                    "new conns primary",
                    "replica",
                    "TLS handshakes",
                    "TIME_WAIT",
                ],
                [run.row() for run in ordered],
            ),
        ]
        for endpoint in ENDPOINTS:
            pooled, without = self.run(VARIANTS[0], endpoint), self.run(VARIANTS[1], endpoint)
            if pooled is None or without is None:
                continue
            out.append(
                f"reuse:    {endpoint:5} pooled/without: req/s x "
                f"{ratio_text(ratio(pooled.wrk.rps, without.wrk.rps))}, p99 "
                f"{ms(pooled.wrk.p99_ms)} vs {ms(without.wrk.p99_ms)} ms; new connections "
                f"per 1000 requests: {per_thousand(pooled)} vs {per_thousand(without)}"
            )
        if any(r.status_connections for r in ordered):
            grown = ", ".join(
                f"{r.endpoint} {r.variant.split(' (')[0]} "
                + "/".join(str(r.status_connections.get(db, 0)) for db in DATABASES)
                for r in ordered
            )
            out.append(
                f"reuse:    'Connections' status, primary/replica: {grown}; the replica's also "
                "counts the threads it starts to apply replicated writes"
            )
        for variant in VARIANTS:
            runs = [r for r in self.runs if r.variant == variant]
            if runs:
                seconds = sum(r.wrk.seconds for r in runs)
                out.append(
                    f"reuse:    {variant}: {sum(r.time_wait for r in runs)} sockets towards the "
                    f"databases entered TIME_WAIT during its {seconds:.0f} s of runs on the app's "
                    f"side, {sum(r.time_wait_on_databases for r in runs)} on the databases' side"
                )
        return out

    def noise(self) -> list[float]:
        return [r.wrk.other_cores for r in self.runs if r.wrk.other_cores is not None]

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def per_thousand(run: ReuseRun) -> str:
    new = sum(run.connections.values())
    return "-" if not run.wrk.requests else f"{new / run.wrk.requests * 1000:.0f}"


APP_CONNECTIONS = "App_connections"
STATUS_QUERY = f"""
SHOW GLOBAL STATUS WHERE Variable_name IN ('Connections', 'Ssl_accepts');
SELECT '{APP_CONNECTIONS}', COALESCE(SUM(TOTAL_CONNECTIONS), 0)
  FROM information_schema.USER_STATISTICS WHERE USER = '{MASTER_USERNAME}';
"""  # noqa: S608 - built from the program's own constants, no input


class Counters:
    """The databases' connection counters and this machine's TIME_WAIT sockets towards them."""

    def __init__(self, context: Context) -> None:
        topology = context.topology()
        self.servers = {name: context.lab.database(name) for name in DATABASES}
        self.endpoints = [(topology.host(n).address, topology.host(n).port) for n in DATABASES]

    def count_per_user(self, on: bool) -> None:
        """MariaDB's user statistics: counted only while on (a little work per connection)."""
        for server in self.servers.values():
            mariadb.sql(server, f"SET GLOBAL userstat = {int(on)}")

    def status(self) -> dict[str, dict[str, int]]:
        return {
            name: parse_status(mariadb.sql(server, STATUS_QUERY).stdout)
            for name, server in self.servers.items()
        }

    def time_waits(self, within_s: float) -> tuple[int, int]:
        table = Path("/proc/net/tcp").read_text()
        return time_waits(table, self.endpoints, within_s, os.sysconf("SC_CLK_TCK"))


def new_since(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]], key: str
) -> dict[str, int]:
    """Per database, how much `key` grew; 'Connections' less the status query's own."""
    own = 1 if key == "Connections" else 0
    return {db: after[db].get(key, 0) - before[db].get(key, 0) - own for db in after}


def measure(context: Context) -> Reuse:
    counters = Counters(context)
    counters.count_per_user(on=True)
    try:
        return measure_variants(context)
    finally:
        counters.count_per_user(on=False)


def measure_variants(context: Context) -> Reuse:
    config = context.config
    lab = context.lab
    shipped = APP.read_text()
    sources = {VARIANTS[1]: no_reuse_release(shipped), VARIANTS[0]: shipped}
    result = Reuse(len(context.topology().web_nodes))
    for variant in (VARIANTS[1], VARIANTS[0]):
        context.say(f"connection reuse: releasing the app, {variant} ...")
        lab.release(sources[variant].encode())
        url = context.topology().url.rstrip("/") + READ_PATH
        context.wrk.run(url, WARM_UP_S, write=False)
        context.wrk.run(url, WARM_UP_S, write=True)
        counters = Counters(context)
        for endpoint in ENDPOINTS:
            status = counters.status()
            began = time.monotonic()
            seconds = config.read_seconds if endpoint == "read" else config.write_seconds
            run = context.wrk.run(url, seconds, write=endpoint == "write")
            status_after = counters.status()
            app_side, database_side = counters.time_waits(time.monotonic() - began)
            reuse_run = ReuseRun(
                variant,
                endpoint,
                run,
                new_since(status, status_after, APP_CONNECTIONS),
                new_since(status, status_after, "Ssl_accepts"),
                app_side,
                database_side,
                new_since(status, status_after, "Connections"),
            )
            result.runs.append(reuse_run)
            context.say(
                f"  {endpoint:5} {variant}: {run.rps:.0f} req/s, p99 {run.p99_ms:.1f} ms, "
                f"{run.errors} errors, {sum(reuse_run.connections.values())} new connections"
            )
    return result
