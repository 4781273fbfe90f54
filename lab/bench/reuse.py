"""Connection reuse between the app and its databases: with the app's pool, and without it.

The app keeps idle database connections per worker process and server, and leases one per call
(userdata/web_app/database_host.py: `Host.take` and `Host.give_back`). To compare the pool with
no pool on the same processes, the repository's app is released once to every web node with a
small wrapper (`switchable_release`): while a switch file exists in the lab's folder, `give_back`
closes the connection instead of keeping it, so every database call opens a new connection (a
new TLS handshake too, when the databases speak TLS), as the app did before it had a pool; while
it does not, the shipped pool runs, plus one file check per database call. The runs alternate:
`rounds` rounds, the two variants' order rotating per round, each variant warmed up for
WARM_UP_S after the switch, then one read and one write run with wrk through the load balancer
to every node (the throughput runs' settings). The lab ends with the switch off.

Per run: wrk's req/s, p50, p99 and errors; the new connections the app's database user opened
on the primary and on the replica (MariaDB's user statistics, `userstat`, on for the
measurement: `SHOW GLOBAL STATUS` 'Connections' counts more than clients on a replica, which
starts threads of its own while it applies replicated writes; its change is kept too); the TLS
handshakes the servers accepted ('Ssl_accepts': zero while the app does not use TLS); and the
sockets towards the databases' address and port that entered TIME_WAIT during the run (the
app's side), from /proc/net/tcp right after it. A socket stays in TIME_WAIT for 60 s, longer
than a run, and /proc/net/tcp shows how much of that each one has left, so a count of the run's
own is exact even with the previous runs' sockets still there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import statistics
import struct
import textwrap
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.rendered_hosts import APP_USERNAME
from lab import mariadb
from lab.bench.measurement import Context, Row
from lab.bench.stats import ratio, rotated
from lab.bench.table import HEADING_WIDTH, format_table, ms, ratio_text
from lab.bench.wrk import READ_PATH, WrkResult
from lab.localize import LabError
from userdata import web_node_config

POOL_MODULE = "database_host.py"
"""The app's module that keeps the idle connections, where the wrapper goes."""
SWITCH_FILE = "no-connection-reuse"
"""In the lab's state folder: while it exists, the released app closes every connection."""
NO_REUSE_NEEDS = ("class Host:", "def give_back(self, connection):", "def close(connection):")
WARM_UP_S = 1.0
DATABASES = ("db-primary", "db-replica")
TIME_WAIT = "06"  # the state's number in /proc/net/tcp (include/net/tcp_states.h)
TIME_WAIT_TIMER = "03"  # /proc/net/tcp's `tr` of a socket in TIME_WAIT
TIME_WAIT_SECONDS = 60.0  # TCP_TIMEWAIT_LEN, fixed in Linux
POOLED, WITHOUT = "pooled", "without reuse"
VARIANTS = (WITHOUT, POOLED)
"""Round 1's order; it rotates per round."""
ENDPOINTS = ("read", "write")


def switchable_release(app: Mapping[str, bytes], switch: Path) -> dict[str, bytes]:
    """The app (its modules by file name), whose connection pool is off while `switch`
    exists; refuses an app whose POOL_MODULE no longer has what the wrapper replaces."""
    source = app.get(POOL_MODULE, b"").decode()
    missing = [needed for needed in NO_REUSE_NEEDS if needed not in source]
    if missing:
        raise LabError(
            f"the app's {POOL_MODULE} no longer has {', '.join(missing)}: update "
            "switchable_release in lab/bench/reuse.py to turn its connection pool off"
        )
    wrapper = f"""

import os as _os

_pooled_give_back = Host.give_back


def _give_back_unless_switched(self, connection):
    if _os.path.exists({str(switch)!r}):  # the benchmark's switch: no reuse
        close(connection)
    else:
        _pooled_give_back(self, connection)


Host.give_back = _give_back_unless_switched
"""
    return {**app, POOL_MODULE: (source + wrapper).encode()}


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
    round: int
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


@dataclass(frozen=True)
class ReuseSummary:
    """One variant and endpoint over the rounds: medians of wrk's figures, the rest summed."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    connections: dict[str, int]
    tls_handshakes: int
    time_wait: int
    time_wait_on_databases: int
    status_connections: dict[str, int]

    @property
    def per_thousand(self) -> str:
        """New connections per 1000 requests."""
        new = sum(self.connections.values())
        return "-" if not self.requests else f"{new / self.requests * 1000:.0f}"


def summarize(runs: Sequence[ReuseRun]) -> ReuseSummary:
    def summed(attribute: str) -> dict[str, int]:
        return {db: sum(getattr(r, attribute).get(db, 0) for r in runs) for db in DATABASES}

    return ReuseSummary(
        rps=statistics.median(r.wrk.rps for r in runs),
        p50_ms=statistics.median(r.wrk.p50_ms for r in runs),
        p99_ms=statistics.median(r.wrk.p99_ms for r in runs),
        errors=sum(r.wrk.errors for r in runs),
        requests=sum(r.wrk.requests for r in runs),
        connections=summed("connections"),
        tls_handshakes=sum(sum(r.tls_handshakes.values()) for r in runs),
        time_wait=sum(r.time_wait for r in runs),
        time_wait_on_databases=sum(r.time_wait_on_databases for r in runs),
        status_connections=summed("status_connections"),
    )


@dataclass
class Reuse:
    web_nodes: int
    rounds: int
    runs: list[ReuseRun] = field(default_factory=list)

    def summaries(self) -> dict[tuple[str, str], ReuseSummary]:
        """(endpoint, variant) -> its summary, reads first, pooled before without."""
        found = {}
        for endpoint in ENDPOINTS:
            for variant in (POOLED, WITHOUT):
                runs = [r for r in self.runs if (r.endpoint, r.variant) == (endpoint, variant)]
                if runs:
                    found[endpoint, variant] = summarize(runs)
        return found

    def rows(self) -> list[Row]:
        return []  # a table of its own: its columns are not the main table's

    def notes(self) -> list[str]:
        summaries = self.summaries()
        tls = sum(s.tls_handshakes for s in summaries.values())
        heading = (
            f"connection reuse: through the LB to all {self.web_nodes} nodes, wrk as above; "
            f"{self.rounds} round(s), the order of the variants rotated per round; medians "
            "(errors, connections, handshakes and TIME_WAIT: summed). Both variants run the "
            "same release on the same processes: without reuse, its give_back closes each "
            "database connection (a new connection per database call), switched by a file; "
            "pooled, the shipped pool (plus one file check per database call); "
            + (
                f"the databases accepted {tls} TLS handshakes: the numbers include TLS"
                if tls
                else "no TLS to the databases (0 handshakes): the numbers exclude TLS"
            )
            + ". new conns: opened by the app's database user (MariaDB's user statistics); "
            "TIME_WAIT: sockets towards the databases that entered it during the runs"
        )
        header = ["run", "req/s", "p50 ms", "p99 ms", "errors", "new conns primary", "replica"]
        rows = [
            [
                f"{endpoint:5} {variant}",
                f"{s.rps:.0f}",
                ms(s.p50_ms),
                ms(s.p99_ms),
                str(s.errors),
                *(str(s.connections[db]) for db in DATABASES),
                str(s.tls_handshakes),
                str(s.time_wait),
            ]
            for (endpoint, variant), s in summaries.items()
        ]
        out = [
            "",
            *textwrap.wrap(heading, width=HEADING_WIDTH),
            format_table([*header, "TLS handshakes", "TIME_WAIT"], rows),
        ]
        for endpoint in ENDPOINTS:
            pooled, without = summaries.get((endpoint, POOLED)), summaries.get((endpoint, WITHOUT))
            if pooled is None or without is None:
                continue
            per_round = " ".join(
                ratio_text(ratio(p.wrk.rps, w.wrk.rps)) for p, w in self.pairs(endpoint)
            )
            out.append(
                f"reuse:    {endpoint:5} pooled/without: req/s x "
                f"{ratio_text(ratio(pooled.rps, without.rps))} of the medians (per round: "
                f"{per_round}), p99 {ms(pooled.p99_ms)} vs {ms(without.p99_ms)} ms; new "
                f"connections per 1000 requests: {pooled.per_thousand} vs {without.per_thousand}"
            )
        if summaries:
            grown = ", ".join(
                f"{endpoint} {variant} "
                + "/".join(str(s.status_connections[db]) for db in DATABASES)
                for (endpoint, variant), s in summaries.items()
            )
            out.append(
                f"reuse:    'Connections' status, primary/replica: {grown}; the replica's also "
                "counts the threads it starts to apply replicated writes"
            )
        for variant in (POOLED, WITHOUT):
            runs = [r for r in self.runs if r.variant == variant]
            if runs:
                out.append(
                    f"reuse:    {variant}: {sum(r.time_wait for r in runs)} sockets towards the "
                    f"databases entered TIME_WAIT during its {sum(r.wrk.seconds for r in runs):.0f}"
                    f" s of runs on the app's side, "
                    f"{sum(r.time_wait_on_databases for r in runs)} on the databases' side"
                )
        return out

    def pairs(self, endpoint: str) -> list[tuple[ReuseRun, ReuseRun]]:
        """(pooled, without) of each round that ran both."""
        by_round: dict[int, dict[str, ReuseRun]] = {}
        for run in self.runs:
            if run.endpoint == endpoint:
                by_round.setdefault(run.round, {})[run.variant] = run
        return [
            (runs[POOLED], runs[WITHOUT])
            for _, runs in sorted(by_round.items())
            if POOLED in runs and WITHOUT in runs
        ]

    def noise(self) -> list[float]:
        return [r.wrk.other_cores for r in self.runs if r.wrk.other_cores is not None]

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


APP_CONNECTIONS = "App_connections"
STATUS_QUERY = f"""
SHOW GLOBAL STATUS WHERE Variable_name IN ('Connections', 'Ssl_accepts');
SELECT '{APP_CONNECTIONS}', COALESCE(SUM(TOTAL_CONNECTIONS), 0)
  FROM information_schema.USER_STATISTICS WHERE USER = '{APP_USERNAME}';
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
    switch = context.lab.state / SWITCH_FILE
    context.say("connection reuse: releasing the app with its pool switchable ...")
    context.lab.release(switchable_release(web_node_config.app_files(), switch))
    counters = Counters(context)
    counters.count_per_user(on=True)
    try:
        return measure_rounds(context, counters, switch)
    finally:
        switch.unlink(missing_ok=True)
        with contextlib.suppress(LabError):
            counters.count_per_user(on=False)


def measure_rounds(context: Context, counters: Counters, switch: Path) -> Reuse:
    config = context.config
    result = Reuse(len(context.topology().web_nodes), config.rounds)
    url = context.topology().url.rstrip("/") + READ_PATH
    for round_index in range(config.rounds):
        for variant in rotated(VARIANTS, round_index):
            if variant == WITHOUT:
                switch.touch()
            else:
                switch.unlink(missing_ok=True)
            context.wrk.run(url, WARM_UP_S, write=False)
            context.wrk.run(url, WARM_UP_S, write=True)
            for endpoint in ENDPOINTS:
                seconds = config.read_seconds if endpoint == "read" else config.write_seconds
                status = counters.status()
                began = time.monotonic()
                run = context.wrk.run(url, seconds, write=endpoint == "write")
                status_after = counters.status()
                app_side, database_side = counters.time_waits(time.monotonic() - began)
                reuse_run = ReuseRun(
                    variant,
                    endpoint,
                    round_index + 1,
                    run,
                    new_since(status, status_after, APP_CONNECTIONS),
                    new_since(status, status_after, "Ssl_accepts"),
                    app_side,
                    database_side,
                    new_since(status, status_after, "Connections"),
                )
                result.runs.append(reuse_run)
                context.say(
                    f"  round {round_index + 1}/{config.rounds} {endpoint:5} {variant}: "
                    f"{run.rps:.0f} req/s, p99 {run.p99_ms:.1f} ms, {run.errors} errors, "
                    f"{sum(reuse_run.connections.values())} new connections"
                )
    return result
