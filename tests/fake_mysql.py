"""An in-memory MySQL primary and replica behind the app's `connect` seam.

Each fault the app must survive is a switch, exact and instant: a host that refuses
connections, one that hangs (its calls time out), a replica that stops applying, a primary that
dies right after it stored an INSERT, a rotated password, a database the bootstrap has not
made yet. The SQL it understands is exactly the app's; anything else fails the test, and DDL is
refused as MySQL refuses it to the app's user (which has DML rights only). `write_tls_files` makes
a CA and a server certificate it signed, for a MariaDB that speaks TLS like RDS.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pymysql

from userdata import web_app as _web_app

# The app carries no annotations (it ships as plain modules for the system Python); through
# `Any` the typed tests may call it, each name through its module (`web_app.database.Database`).
web_app: Any = _web_app

PRIMARY = "db-primary.dev.web-infra.internal"
REPLICA = "db-replica.dev.web-infra.internal"
CONFIG = {"name": "webapp", "primary_host": PRIMARY, "replica_host": REPLICA, "port": 3306}
LOST = 2013  # CR_SERVER_LOST


def lost(why: str = "Lost connection to MySQL server during query") -> pymysql.MySQLError:
    return pymysql.err.OperationalError(LOST, why)


def timeout() -> pymysql.MySQLError:
    """What PyMySQL raises when a socket read times out: CR_SERVER_LOST from a TimeoutError."""
    try:
        raise TimeoutError("timed out")
    except TimeoutError:
        return lost("Lost connection to MySQL server during query (timed out)")


@dataclass
class Server:
    """One MySQL server's state. The replica holds its own copy of the rows."""

    name: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    beat: datetime | None = None
    tables: set[str] = field(default_factory=set)
    password: str = "first"
    up: bool = True
    hung: bool = False
    connections: int = 0
    statements: list[str] = field(default_factory=list)


@dataclass
class Cluster:
    """A primary and its replica. While `replicating`, each change reaches the replica at once;
    otherwise the replica keeps what it had (lag)."""

    primary: Server = field(default_factory=lambda: Server("primary"))
    replica: Server = field(default_factory=lambda: Server("replica"))
    replicating: bool = True
    now: float = 1000.0  # the app's monotonic clock
    # The servers' UTC clock, starting from the real one: the app ignores tokens from the future.
    db_time: datetime = field(
        default_factory=lambda: datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    )
    die_after_insert: bool = False  # the primary stores the next INSERT, then the link dies
    seen_options: list[dict[str, Any]] = field(default_factory=list)
    bootstrapped: bool = True  # False: the database bootstrap has not run yet

    def __post_init__(self) -> None:
        if self.bootstrapped:
            self.bootstrap()

    def bootstrap(self) -> None:
        """What components/functions/app_db_user.py makes: the tables and the heartbeat's row."""
        self.primary.tables |= {"messages", "heartbeat"}
        self.primary.beat = self.primary.beat or self.db_time
        self.bootstrapped = True
        self.replicate()

    def clock(self) -> float:
        return self.now

    def tick(self, seconds: float) -> None:
        """Time passes on every clock."""
        self.now += seconds
        self.db_time += timedelta(seconds=seconds)

    def replicate(self) -> None:
        if self.replicating:
            self.replica.rows = [dict(row) for row in self.primary.rows]
            self.replica.beat = self.primary.beat
            self.replica.tables = set(self.primary.tables)

    def server(self, host: str) -> Server:
        return self.primary if host == PRIMARY else self.replica

    def connect(self, *, host: str, user: str, password: str, **options: Any) -> Connection:
        server = self.server(host)
        self.seen_options.append(options)
        if server.hung:  # TCP connects (the kernel answers), the greeting never comes
            raise timeout()
        if not server.up:
            raise pymysql.err.OperationalError(2003, f"Can't connect to MySQL server on '{host}'")
        if password != server.password:
            raise pymysql.err.OperationalError(1045, f"Access denied for user '{user}'")
        server.connections += 1
        return Connection(self, server)


@dataclass
class Connection:
    cluster: Cluster
    server: Server
    open: bool = True
    closed_by_server: bool = False  # e.g. the server restarted while this one idled

    def cursor(self) -> Cursor:
        return Cursor(self)

    def ping(self, reconnect: bool = False) -> None:
        assert reconnect is False, "a reconnect inside PyMySQL would hide a lost write"
        self.check()

    def check(self) -> None:
        if not self.open:
            raise pymysql.err.InterfaceError(0, "")
        if self.server.hung:
            self.open = False
            raise timeout()
        if not self.server.up or self.closed_by_server:
            self.open = False
            raise lost()

    def close(self) -> None:
        self.open = False


@dataclass
class Cursor:
    connection: Connection
    result: list[dict[str, Any]] = field(default_factory=list)
    lastrowid: int | None = None

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        self.connection.check()
        cluster, server = self.connection.cluster, self.connection.server
        server.statements.append(sql)
        self.result = []
        if sql.startswith(("CREATE", "ALTER", "DROP", "GRANT", "INSERT IGNORE")):
            # The app's user may not: its grants are DML on its two tables.
            raise pymysql.err.OperationalError(1142, "command denied to user 'webapp_app'")
        if sql.startswith(("INSERT", "UPDATE")) and server is cluster.replica:
            raise pymysql.err.OperationalError(1290, "The server is running with --read-only")
        if sql.startswith("UPDATE heartbeat"):
            self.need(server, "heartbeat")
            gap = int(re.search(r"INTERVAL (\d+) MICROSECOND", sql).group(1))  # type: ignore[union-attr]
            if server.beat is not None and server.beat < cluster.db_time - timedelta(
                microseconds=gap
            ):
                server.beat = cluster.db_time
        elif sql.startswith("SELECT ts, TIMESTAMPDIFF"):
            self.need(server, "heartbeat")
            if server.beat is not None:
                lag = (cluster.db_time - server.beat) // timedelta(microseconds=1)
                self.result = [{"ts": server.beat, "lag": lag}]
        elif sql.startswith("INSERT INTO messages"):
            self.insert(server, *params)
        elif sql.startswith("SELECT id, text, written_by, created_at, UTC_TIMESTAMP(6)"):
            column = "idempotency_key" if "idempotency_key = %s" in sql else "id"
            found = [r for r in server.rows if r[column] == params[0]]
            self.result = [{**self.public(r), "now": cluster.db_time} for r in found]
        elif sql.startswith("SELECT id, text, written_by, created_at FROM messages ORDER BY"):
            self.need(server, "messages")
            self.result = [self.public(r) for r in reversed(server.rows)][: params[0]]
        else:
            raise AssertionError(f"unexpected SQL: {sql}")
        if server is cluster.primary:
            cluster.replicate()

    @staticmethod
    def need(server: Server, table: str) -> None:
        if table not in server.tables:
            raise pymysql.err.ProgrammingError(1146, f"Table 'webapp.{table}' doesn't exist")

    @staticmethod
    def public(row: dict[str, Any]) -> dict[str, Any]:
        return {k: row[k] for k in ("id", "text", "written_by", "created_at")}

    def insert(self, server: Server, text: str, written_by: str, key: str) -> None:
        self.need(server, "messages")
        assert isinstance(text, str)
        text.encode("utf-8")  # PyMySQL fails like this on an unpaired surrogate
        if any(row["idempotency_key"] == key for row in server.rows):
            raise pymysql.err.IntegrityError(1062, f"Duplicate entry '{key}'")
        cluster = self.connection.cluster
        self.lastrowid = len(server.rows) + 1
        row = {
            "id": self.lastrowid,
            "text": text,
            "written_by": written_by,
            "created_at": cluster.db_time,
            "idempotency_key": key,
        }
        server.rows.append(row)
        if cluster.die_after_insert:
            cluster.die_after_insert = False
            cluster.replicate()
            self.connection.open = False
            raise lost()

    def fetchall(self) -> list[dict[str, Any]]:
        return self.result

    def fetchone(self) -> dict[str, Any] | None:
        return self.result[0] if self.result else None


class FixedCredentials:
    def __init__(self, passwords: list[str] | None = None) -> None:
        self.passwords = passwords or ["first"]
        self.reads = 0

    def get(self) -> tuple[str, str]:
        return "webapp_app", self.passwords[min(self.reads, len(self.passwords) - 1)]

    def invalidate(self) -> None:
        self.reads += 1


def make_app(cluster: Cluster, credentials: Any = None, **config: Any) -> Any:
    database = web_app.database.Database(
        {**CONFIG, **config},
        credentials or FixedCredentials(),
        connect=cluster.connect,
        clock=cluster.clock,
    )
    return web_app.routes.App("web-2", database)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any
    raw: bytes


def call(
    app: Any,
    method: str,
    path: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    content_type: str | None = "application/json",
) -> Answer:
    """One request through the WSGI interface, as gunicorn makes it."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    path, _, query = path.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "CONTENT_LENGTH": str(len(data)) if data else "",
        "wsgi.input": io.BytesIO(data),
    }
    if content_type is not None:
        environ["CONTENT_TYPE"] = content_type
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    captured: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]]) -> None:
        captured["status"] = int(status.split(maxsplit=1)[0])
        names = [name for name, _ in response_headers]
        assert len(names) == len(set(names)), f"a header twice: {names}"
        captured["headers"] = dict(response_headers)

    payload = b"".join(app(environ, start_response))
    response_headers = captured["headers"]
    assert response_headers["Content-Length"] == str(len(payload)) or method == "HEAD"
    parsed = (
        json.loads(payload)
        if response_headers["Content-Type"] == "application/json" and payload
        else payload.decode()
    )
    return Answer(captured["status"], response_headers, parsed, payload)
