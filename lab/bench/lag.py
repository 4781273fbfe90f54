"""Replication lag: how long a write on the primary takes to be readable on the replica.

Rows are written straight to the primary with PyMySQL at a steady `lag_rate` per second into a
table of the benchmark's own (`webapp.bench_lag`), while a poller on the replica (every ~2 ms)
records when each row becomes visible; lag = first seen on the replica - commit acknowledged.
Both sides use time.monotonic() in this process, so the lag needs no clock agreement.
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pymysql

from components.rendered_hosts import DATABASE_NAME
from lab import mariadb
from lab.bench.config import Config
from lab.bench.measurement import Context, Row
from lab.bench.stats import percentile, verdict
from lab.bench.table import ms
from lab.lab import Lab
from lab.localize import LabError
from lab.processes import poll
from lab.topology import Topology

BENCH_USER = "bench_lag"

LAG_P99_TARGET_MS = 1000.0


@dataclass
class Lag:
    rate: int
    seconds: float
    written: int = 0
    write_errors: int = 0
    seen: int = 0
    achieved_rate: float = 0.0
    lags_ms: list[float] = field(default_factory=list)
    """Per row, in id order: first seen on the replica - commit acknowledged by the primary."""

    @property
    def p50_ms(self) -> float | None:
        return percentile(self.lags_ms, 50) if self.lags_ms else None

    @property
    def p99_ms(self) -> float | None:
        return percentile(self.lags_ms, 99) if self.lags_ms else None

    def verdict(self) -> str:
        if self.seen < self.written or self.write_errors:
            return "MISS"
        return verdict(self.p99_ms, "<", LAG_P99_TARGET_MS)

    def rows(self) -> list[Row]:
        return [
            [
                f"replication lag: {self.rate} writes/s to the primary (ms = lag)",
                f"{self.achieved_rate:.0f}",
                ms(self.p50_ms),
                ms(self.p99_ms),
                str(self.write_errors + self.written - self.seen),
            ]
        ]

    def notes(self) -> list[str]:
        biggest = max(self.lags_ms) if self.lags_ms else None
        return [
            f"lag:      {self.seen} of {self.written} rows seen on the replica "
            f"({self.write_errors} writes failed), {self.achieved_rate:.1f} writes/s over "
            f"{self.seconds:g} s; p50 {ms(self.p50_ms)} ms, p99 {ms(self.p99_ms)} ms, "
            f"max {ms(biggest)} ms (direct pymysql, polled every ~2 ms); "
            f"target p99 < {LAG_P99_TARGET_MS:g} ms  {self.verdict()}"
        ]

    def noise(self) -> list[float]:
        return []

    def as_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "p50_ms": self.p50_ms, "p99_ms": self.p99_ms}


def lag_samples(acked: dict[int, float], seen: dict[int, float]) -> list[float]:
    """Milliseconds from each row's commit ack to its first sighting on the replica, by id."""
    return [(seen[i] - acked[i]) * 1000 for i in sorted(acked) if i in seen]


class LagProbe:
    """One writer on the primary paced at `rate` rows/s; one poller on the replica (a thread)."""

    def __init__(self, lab: Lab, topology: Topology, config: Config) -> None:
        self.lab = lab
        self.topology = topology
        # A user of the benchmark's own: the app's may only use the app's two tables.
        self.credentials = {"username": BENCH_USER, "password": secrets.token_urlsafe(24)}
        self.rate = config.lag_rate
        self.seconds = config.lag_seconds
        self.total = int(config.lag_rate * config.lag_seconds)
        self.acked: dict[int, float] = {}
        self.seen: dict[int, float] = {}
        self.write_errors = 0
        self.writing_done = threading.Event()
        self.poller_error: list[BaseException] = []

    def connect(self, host: str) -> pymysql.connections.Connection[Any]:
        address = self.topology.host(host)
        return pymysql.connect(
            host=address.address,
            port=address.port,
            user=self.credentials["username"],
            password=self.credentials["password"],
            database=DATABASE_NAME,
            autocommit=True,  # the poller must not keep one snapshot: each SELECT sees anew
            connect_timeout=5,
            read_timeout=10,
            write_timeout=10,
        )

    def create_table_and_user(self) -> None:
        """The table and its user, made as the primary's local admin; both replicate."""
        user = f"'{BENCH_USER}'@'127.%'"
        mariadb.sql(
            self.lab.database("db-primary"),
            f"""
            DROP TABLE IF EXISTS {DATABASE_NAME}.bench_lag;
            CREATE TABLE {DATABASE_NAME}.bench_lag
              (id BIGINT PRIMARY KEY, written_at DOUBLE NOT NULL);
            CREATE USER IF NOT EXISTS {user};
            ALTER USER {user} IDENTIFIED BY '{self.credentials["password"]}';
            GRANT SELECT, INSERT ON {DATABASE_NAME}.bench_lag TO {user};
            """,
        )

    def run(self) -> Lag:
        self.create_table_and_user()
        primary, replica = self.connect("db-primary"), self.connect("db-replica")
        try:
            if poll(lambda: self.replica_has_table(replica), 10.0) is None:
                raise LabError("bench_lag did not reach the replica within 10 s")
            poller = threading.Thread(target=self.poll, args=(replica,), daemon=True)
            poller.start()
            try:
                elapsed = self.write(primary)
            finally:
                self.writing_done.set()
                poller.join(timeout=30)
            if self.poller_error:
                raise LabError(f"the replica poller failed: {self.poller_error[0]!r}")
        finally:
            primary.close()
            replica.close()
        return Lag(
            self.rate,
            self.seconds,
            written=len(self.acked),
            write_errors=self.write_errors,
            seen=sum(1 for i in self.acked if i in self.seen),
            achieved_rate=len(self.acked) / elapsed if elapsed > 0 else 0.0,
            lags_ms=lag_samples(self.acked, self.seen),
        )

    @staticmethod
    def replica_has_table(replica: pymysql.connections.Connection[Any]) -> bool:
        try:
            with replica.cursor() as cursor:
                cursor.execute("SELECT COUNT(*) FROM bench_lag")
        except pymysql.MySQLError:
            return False
        return True

    def write(self, primary: pymysql.connections.Connection[Any]) -> float:
        """Rows 1..total on a fixed schedule (no catching up in bursts); the seconds taken."""
        started = time.monotonic()
        with primary.cursor() as cursor:
            for row_id in range(1, self.total + 1):
                pause = started + (row_id - 1) / self.rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                try:
                    cursor.execute(
                        "INSERT INTO bench_lag (id, written_at) VALUES (%s, %s)",
                        (row_id, time.time()),
                    )
                except pymysql.MySQLError:
                    self.write_errors += 1
                    continue
                self.acked[row_id] = time.monotonic()  # autocommit: the commit is acknowledged
        return time.monotonic() - started

    def poll(self, replica: pymysql.connections.Connection[Any]) -> None:
        """Every ~2 ms, the ids not seen yet; stops 10 s after the writes at the latest."""
        floor = 0  # every id <= floor has been seen
        give_up_at: float | None = None
        try:
            with replica.cursor() as cursor:
                while len(self.seen) < self.total:
                    cursor.execute("SELECT id FROM bench_lag WHERE id > %s", (floor,))
                    now = time.monotonic()
                    for (row_id,) in cursor.fetchall():
                        self.seen.setdefault(int(row_id), now)
                    while floor + 1 in self.seen:
                        floor += 1
                    if self.writing_done.is_set():
                        give_up_at = give_up_at or now + 10.0
                        if now > give_up_at:
                            return
                    time.sleep(0.002)
        except BaseException as error:  # reported by the main thread
            self.poller_error.append(error)


def measure(context: Context) -> Lag:
    config = context.config
    context.say(f"replication lag at {config.lag_rate} writes/s for {config.lag_seconds:g} s ...")
    return LagProbe(context.lab, context.topology(), config).run()
