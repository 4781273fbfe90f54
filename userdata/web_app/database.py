"""The app's two databases: writes go to the MySQL primary, reads to the replica while it is
fresh (a heartbeat row measures its lag) and has the client's last write, else to the primary.

Every statement the app runs is here; the user running them has DML rights only (the database
bootstrap made the tables). Each call goes through its server's `Host` (pool, bulkhead,
breaker); a background thread per worker beats the heartbeat and measures the replica's lag,
so that no request waits on a hung server to learn it.
"""

import logging
import ssl
import threading
import time
from collections import namedtuple
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta

import pymysql

from .database_host import Host, close
from .failures import (
    ACCESS_DENIED,
    DUPLICATE_ENTRY,
    NO_SUCH_TABLE,
    KeyReused,
    OutcomeUnknown,
    Unavailable,
    code_of,
    failed,
    lost_connection,
    timed_out,
)

log = logging.getLogger("web_app")

BEAT_SECONDS = 0.5
PING_AFTER_IDLE_SECONDS = 1.0
DEFAULTS = {
    "port": 3306,
    "connect_timeout_seconds": 1.0,
    "query_timeout_seconds": 1.0,  # each socket read or write
    "max_replica_lag_seconds": 3.0,
    "max_concurrent_queries": 5,  # per server and process: threads are left for /health
}
# Changes (and replicates) nothing while a recent beat exists: every process may try.
BEAT = (
    "UPDATE heartbeat SET ts = UTC_TIMESTAMP(6) "
    "WHERE id = 1 AND ts < UTC_TIMESTAMP(6) - INTERVAL 400000 MICROSECOND"
)
LAG = "SELECT ts, TIMESTAMPDIFF(MICROSECOND, ts, UTC_TIMESTAMP(6)) AS lag FROM heartbeat"
INSERT = "INSERT INTO messages (text, written_by, idempotency_key) VALUES (%s, %s, %s)"
# `now` is after the commit: a replica whose heartbeat has reached it has the write.
WRITTEN = "SELECT id, text, written_by, created_at, UTC_TIMESTAMP(6) AS now FROM messages WHERE "
NEWEST = "SELECT id, text, written_by, created_at FROM messages ORDER BY id DESC LIMIT %s"
EPOCH = datetime(1970, 1, 1)

Read = namedtuple("Read", "messages source lag stale")
Written = namedtuple("Written", "message read_after replayed")


def micros(moment):
    return (moment - EPOCH) // timedelta(microseconds=1)


class Database:
    def __init__(self, config, credentials, connect=pymysql.connect, clock=time.monotonic):
        self.config = c = {**DEFAULTS, **config}
        self.credentials, self.connect, self.clock = credentials, connect, clock
        self.primary, self.replica = c["primary_host"], c["replica_host"]
        self.hosts = {
            h: Host(h, c["max_concurrent_queries"], clock) for h in (self.primary, self.replica)
        }
        self.lock = threading.Lock()
        self.tls = None
        self.replica_beat = (None, 0.0, 0.0)  # (its heartbeat in µs, lag in s, measured at)

    def _tls(self):
        # One per process; it checks the chain, not the name (we connect through an alias).
        with self.lock:
            if self.tls is None:
                self.tls = ssl.create_default_context(cafile=self.config["tls_ca_file"])
                self.tls.check_hostname = False
            return self.tls

    def _open(self, host):
        c = self.config
        options = {
            "host": host,
            "port": int(c["port"]),
            "database": c["name"],
            "connect_timeout": c["connect_timeout_seconds"],
            "read_timeout": c["query_timeout_seconds"],
            "write_timeout": c["query_timeout_seconds"],
            "autocommit": True,
            "charset": "utf8mb4",
            "cursorclass": pymysql.cursors.DictCursor,
        }
        for attempt in (1, 2):
            try:
                if c.get("tls_ca_file"):
                    options["ssl"] = self._tls()
                user, password = self.credentials.get()
                return self.connect(user=user, password=password, **options)
            except OSError as error:  # e.g. no CA bundle yet, or TLS failed
                raise Unavailable(f"{host}: {error}") from None
            except pymysql.MySQLError as error:
                if code_of(error) != ACCESS_DENIED or attempt == 2:
                    raise failed(host, error) from None
                log.warning("%s refused the credentials; reading the secret again", host)
                self.credentials.invalidate()
        raise AssertionError("unreachable")

    def _lease(self, host, fresh, ping):
        while not fresh:
            connection, since = self.hosts[host].take()
            if connection is None:
                break
            if not ping and self.clock() - since < PING_AFTER_IDLE_SECONDS:
                return connection, True
            try:
                connection.ping(reconnect=False)
                return connection, True
            except pymysql.MySQLError as error:
                close(connection)
                if timed_out(error):  # a hung host: a new one would hang too
                    raise failed(host, error) from error
        return self._open(host), False

    @contextmanager
    def _connected(self, host, probe=False, fresh=False, ping=False):
        """(connection, reused); a lost one is closed, its error left to the caller."""
        server = self.hosts[host]
        slot, ok = server.enter(probe), False
        try:
            connection, reused = self._lease(host, fresh, ping)
            try:
                yield connection, reused
                ok = True
            except pymysql.MySQLError as error:
                ok = not lost_connection(error)  # else the server answered
                raise
            finally:
                if ok and connection.open:
                    server.give_back(connection)
                else:
                    close(connection)
        finally:
            server.leave(slot, ok)

    def _select(self, host, sql, params=(), probe=False):
        # A dead pooled connection is replaced once: a read may be repeated.
        for fresh in (False, True):
            reused = False
            try:
                with (
                    self._connected(host, probe, fresh) as (connection, reused),
                    connection.cursor() as cursor,
                ):
                    cursor.execute(sql, params)
                    return cursor.fetchall()
            except pymysql.MySQLError as error:
                if code_of(error) == NO_SUCH_TABLE:
                    return []  # the first write creates it
                if not (reused and lost_connection(error) and not timed_out(error)):
                    raise failed(host, error) from error
        raise AssertionError("unreachable")

    def maintain(self):
        with (
            suppress(Unavailable, pymysql.MySQLError),
            self._connected(self.primary, probe=True) as (connection, _),
            connection.cursor() as cursor,
        ):
            cursor.execute(BEAT)
        with suppress(Unavailable):
            for row in self._select(self.replica, LAG, probe=True):
                self.replica_beat = (micros(row["ts"]), max(0, row["lag"]) / 1e6, self.clock())

    def start_upkeep(self):
        def loop():
            while True:
                started = self.clock()
                try:
                    self.maintain()
                except Exception:
                    log.exception("upkeep failed")
                time.sleep(max(0.05, BEAT_SECONDS - self.clock() + started))

        threading.Thread(target=loop, name="db-upkeep", daemon=True).start()

    def replica_lag(self):
        """(the replica's heartbeat in µs, its lag in s as measured plus the time since)"""
        beat, lag, measured_at = self.replica_beat
        return (None, None) if beat is None else (beat, lag + self.clock() - measured_at)

    def read_messages(self, limit, read_after=None):
        """From the replica if fresh and it has the client's last write, else the primary;
        from the other one when that fails."""
        beat, lag = self.replica_lag()
        fresh = lag is not None and lag <= self.config["max_replica_lag_seconds"]
        fresh = fresh and (read_after is None or beat >= read_after)
        failures = []
        for source in ("replica", "primary") if fresh else ("primary", "replica"):
            try:
                rows = self._select(self.config[f"{source}_host"], NEWEST, (limit,))
            except Unavailable as error:
                failures.append(str(error))
                continue
            return Read(rows, source, lag, stale=source == "replica" and not fresh)
        raise Unavailable("; ".join(failures))

    def write_message(self, text, written_by, key):
        """Store once per key. Unavailable: nothing stored, for certain. OutcomeUnknown:
        the connection died after the INSERT was sent."""
        sent = replayed = False
        message_id = None
        try:
            # Pinged: one that died idle is replaced before the INSERT is sent.
            with (
                self._connected(self.primary, ping=True) as (connection, _),
                connection.cursor() as cur,
            ):
                sent = True
                try:
                    cur.execute(INSERT, (text, written_by, key))
                    message_id = cur.lastrowid
                    cur.execute(WRITTEN + "id = %s", (message_id,))
                except pymysql.MySQLError as error:
                    if code_of(error) != DUPLICATE_ENTRY:
                        raise
                    replayed = True  # answer with the message stored with this key
                    cur.execute(WRITTEN + "idempotency_key = %s", (key,))
                row = cur.fetchone()
        except pymysql.MySQLError as error:
            if message_id is not None:
                # Stored for certain, not read back: our clock plus a second as token.
                log.warning("message %s stored, not read back: %s", message_id, error)
                row = {"id": message_id, "text": text, "written_by": written_by, "created_at": None}
                return Written(row, time.time_ns() // 1000 + 1_000_000, False)
            if sent and lost_connection(error):
                raise OutcomeUnknown(str(failed(self.primary, error))) from error
            raise failed(self.primary, error) from error
        if replayed and (row is None or row["text"] != text):
            raise KeyReused
        return Written(row, micros(row.pop("now")), replayed)
