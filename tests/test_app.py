"""The app's routing: writes to the primary, reads from the replica, fallback, rotation.

The databases here are in-memory stand-ins behind the `connect` seam, so every failure mode
(refused connection, refused password) is exact and instant. The local lab runs the same app
against real MariaDB servers.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pymysql
import pytest
from moto import mock_aws

from userdata.app import web_app

CONFIG = {
    "name": "webapp",
    "primary_host": "db-primary.dev.web-infra.internal",
    "replica_host": "db-replica.dev.web-infra.internal",
    "port": 3306,
    "connect_timeout_seconds": 2,
}


@dataclass
class FakeServer:
    """One MySQL server: up or down, with a password, sharing rows with its replica."""

    rows: list[dict[str, Any]]
    password: str = "first"
    up: bool = True
    connections: int = 0


@dataclass
class FakeCursor:
    server: FakeServer
    written_by: str = ""
    result: list[dict[str, Any]] = field(default_factory=list)

    def __enter__(self) -> FakeCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        if not self.server.up:
            raise pymysql.err.OperationalError(2013, "Lost connection to MySQL server")
        if sql.startswith("CREATE TABLE"):
            self.result = []
        elif sql.startswith("INSERT"):
            text, written_by = params
            row = {
                "id": len(self.server.rows) + 1,
                "text": text,
                "written_by": written_by,
                "created_at": "2026-11-25 12:00:00.000",
            }
            self.server.rows.append(row)
        elif "LAST_INSERT_ID" in sql:
            self.result = [self.server.rows[-1]]
        elif sql.startswith("SELECT * FROM messages ORDER BY id DESC"):
            self.result = list(reversed(self.server.rows))[: params[0]]
        else:
            raise AssertionError(f"unexpected SQL: {sql}")

    def fetchall(self) -> list[dict[str, Any]]:
        return self.result


@dataclass
class FakeConnection:
    server: FakeServer

    def cursor(self) -> FakeCursor:
        return FakeCursor(self.server)

    def close(self) -> None:
        pass


@dataclass
class Cluster:
    """A primary and its replica; rows written to one are visible on both (no lag)."""

    primary: FakeServer
    replica: FakeServer
    now: float = 1000.0

    def connect(self, *, host: str, user: str, password: str, **options: Any) -> FakeConnection:
        server = self.primary if host == CONFIG["primary_host"] else self.replica
        if not server.up:
            raise pymysql.err.OperationalError(2003, f"Can't connect to MySQL server on '{host}'")
        if password != server.password:
            raise pymysql.err.OperationalError(1045, f"Access denied for user '{user}'")
        assert options["connect_timeout"] == 2, "a dead host must fail fast"
        server.connections += 1
        return FakeConnection(server)

    def clock(self) -> float:
        return self.now


class FixedCredentials:
    def __init__(self, passwords: list[str]) -> None:
        self.passwords = passwords
        self.reads = 0

    def get(self) -> tuple[str, str]:
        return "webapp_admin", self.passwords[min(self.reads, len(self.passwords) - 1)]

    def invalidate(self) -> None:
        self.reads += 1


@pytest.fixture
def cluster() -> Cluster:
    rows: list[dict[str, Any]] = []
    return Cluster(FakeServer(rows), FakeServer(rows))


def make_app(cluster: Cluster, credentials: Any = None) -> web_app.App:
    database = web_app.Database(
        CONFIG,
        credentials or FixedCredentials(["first"]),
        connect=cluster.connect,
        clock=cluster.clock,
    )
    return web_app.App("web-2", database)


def call(
    app: web_app.App, method: str, path: str, body: Any = None, raw: bytes | None = None
) -> tuple[int, dict[str, str], Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    path, _, query = path.partition("?")
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "CONTENT_LENGTH": str(len(data)),
        "wsgi.input": io.BytesIO(data),
    }
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        captured["status"] = int(status.split(maxsplit=1)[0])
        captured["headers"] = dict(headers)

    payload = b"".join(app(environ, start_response))
    headers = captured["headers"]
    parsed = (
        json.loads(payload) if headers["Content-Type"] == "application/json" else payload.decode()
    )
    return captured["status"], headers, parsed


def test_writes_go_to_the_primary_and_reads_to_the_replica(cluster: Cluster) -> None:
    app = make_app(cluster)
    status, headers, body = call(app, "POST", "/api/messages", {"text": "  hello  "})
    assert (status, body["written_to"], body["message"]["text"]) == (201, "primary", "hello")
    assert body["message"]["written_by"] == "web-2"
    assert headers["X-Served-By"] == "web-2"
    replica_before = cluster.replica.connections
    status, headers, body = call(app, "GET", "/api/messages")
    assert status == 200
    assert body["read_from"] == "replica"
    assert body["served_by"] == "web-2"
    assert [m["text"] for m in body["messages"]] == ["hello"]
    assert cluster.replica.connections == replica_before + 1


def test_reads_fall_back_to_the_primary_while_the_replica_is_down(cluster: Cluster) -> None:
    app = make_app(cluster)
    call(app, "POST", "/api/messages", {"text": "kept"})
    cluster.replica.up = False
    status, _, body = call(app, "GET", "/api/messages")
    assert (status, body["read_from"]) == (200, "primary")
    assert [m["text"] for m in body["messages"]] == ["kept"]
    # The replica is not retried on every request while it is down...
    cluster.replica.up = True
    cluster.now += web_app.REPLICA_RETRY_SECONDS - 1
    assert call(app, "GET", "/api/messages")[2]["read_from"] == "primary"
    # ...but it is, once the back-off has passed.
    cluster.now += 2
    assert call(app, "GET", "/api/messages")[2]["read_from"] == "replica"


def test_writes_fail_fast_with_503_while_reads_go_on(cluster: Cluster) -> None:
    app = make_app(cluster)
    call(app, "POST", "/api/messages", {"text": "before"})
    cluster.primary.up = False
    status, headers, body = call(app, "POST", "/api/messages", {"text": "lost?"})
    assert status == 503
    assert "primary" in body["error"]
    assert headers["X-Served-By"] == "web-2"
    status, _, body = call(app, "GET", "/api/messages")
    assert (status, body["read_from"]) == (200, "replica")
    assert [m["text"] for m in body["messages"]] == ["before"]


def test_no_database_at_all_is_a_503_not_a_crash(cluster: Cluster) -> None:
    app = make_app(cluster)
    cluster.primary.up = cluster.replica.up = False
    status, _, body = call(app, "GET", "/api/messages")
    assert status == 503
    assert "error" in body


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"not json", "send JSON"),
        (b'{"message": "x"}', "send JSON"),
        (b'{"text": ""}', "1 to 500"),
        (b'{"text": "   "}', "1 to 500"),
        (b'{"text": 42}', "1 to 500"),
        (json.dumps({"text": "x" * 501}).encode(), "1 to 500"),
        (b"[1, 2]", "send JSON"),
        (json.dumps({"text": "x" * 5000}).encode(), "at most 4096 bytes"),
    ],
)
def test_bad_input_is_a_400_that_says_why(cluster: Cluster, raw: bytes, why: str) -> None:
    status, _, body = call(make_app(cluster), "POST", "/api/messages", raw=raw)
    assert status == 400
    assert why in body["error"]
    assert cluster.primary.rows == []


def test_health_page_and_unknown_paths(cluster: Cluster) -> None:
    app = make_app(cluster)
    cluster.primary.up = cluster.replica.up = False
    assert call(app, "GET", "/health")[:1] == (200,), "health is the app, not the database"
    cluster.primary.up = cluster.replica.up = True
    call(app, "POST", "/api/messages", {"text": "<b>hi</b>"})
    status, headers, page = call(app, "GET", "/")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert "&lt;b&gt;hi&lt;/b&gt;" in page, "user text is escaped"
    assert "Served by web-2" in page
    assert call(app, "GET", "/nope")[0] == 404
    assert call(app, "DELETE", "/api/messages")[0] == 405
    assert call(app, "POST", "/health")[0] == 405


def test_limit_is_bounded(cluster: Cluster) -> None:
    app = make_app(cluster)
    for i in range(5):
        call(app, "POST", "/api/messages", {"text": f"m{i}"})
    assert len(call(app, "GET", "/api/messages?limit=2")[2]["messages"]) == 2
    assert len(call(app, "GET", "/api/messages?limit=0")[2]["messages"]) == 1
    assert [m["text"] for m in call(app, "GET", "/api/messages")[2]["messages"]][:1] == ["m4"]


def test_a_refused_password_is_read_again_without_a_restart(cluster: Cluster) -> None:
    """RDS rotates the master password; the app must follow without being restarted."""
    credentials = FixedCredentials(["first", "second"])
    app = make_app(cluster, credentials)
    cluster.primary.password = cluster.replica.password = "second"
    status, _, _ = call(app, "POST", "/api/messages", {"text": "after rotation"})
    assert status == 201
    assert credentials.reads == 1


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield


def test_rds_managed_secret_is_found_from_the_db_and_reread_after_rotation(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    rds = boto3.client("rds", region_name="eu-west-1")
    rds.create_db_instance(
        DBInstanceIdentifier="web-infra-dev-primary",
        Engine="mysql",
        DBInstanceClass="db.t4g.micro",
        MasterUsername="webapp_admin",
        ManageMasterUserPassword=True,
        AllocatedStorage=20,
    )
    instance = rds.describe_db_instances(DBInstanceIdentifier="web-infra-dev-primary")
    arn = instance["DBInstances"][0]["MasterUserSecret"]["SecretArn"]
    secrets = boto3.client("secretsmanager", region_name="eu-west-1")
    secrets.put_secret_value(
        SecretId=arn, SecretString=json.dumps({"username": "webapp_admin", "password": "first"})
    )
    credentials = web_app.credentials_from(
        {
            "source": "rds-managed-secret",
            "region": "eu-west-1",
            "db_instance_identifier": "web-infra-dev-primary",
        }
    )
    assert credentials.get() == ("webapp_admin", "first")
    secrets.put_secret_value(
        SecretId=arn, SecretString=json.dumps({"username": "webapp_admin", "password": "second"})
    )
    assert credentials.get() == ("webapp_admin", "first"), "cached until MySQL refuses it"
    monkeypatch.setattr(web_app, "SECRET_REREAD_SECONDS", 0.0)
    credentials.invalidate()
    assert credentials.get() == ("webapp_admin", "second")


def test_tls_verifies_the_rds_chain_when_configured(cluster: Cluster) -> None:
    seen: list[dict[str, Any]] = []

    def connect(**options: Any) -> FakeConnection:
        seen.append(options)
        return cluster.connect(**options)

    config = {**CONFIG, "tls_ca_file": "/etc/web-app/rds-ca.pem"}
    database = web_app.Database(config, FixedCredentials(["first"]), connect=connect)
    app = web_app.App("web-1", database)
    assert call(app, "GET", "/api/messages")[0] == 200
    assert seen[0]["ssl"] == {"ca": "/etc/web-app/rds-ca.pem", "check_hostname": False}
    seen.clear()
    plain = web_app.App(
        "web-1", web_app.Database(CONFIG, FixedCredentials(["first"]), connect=connect)
    )
    assert call(plain, "GET", "/api/messages")[0] == 200
    assert "ssl" not in seen[0], "the lab's MariaDB has no TLS"


def test_first_boot_before_iam_and_rds_is_a_503_not_a_dead_app(aws: None, tmp_path: Any) -> None:
    """Web nodes boot before their role's policy and the primary exist: the app must start,
    answer /health, and say 503 until the secret can be read."""
    config = {
        "node_name": "web-1",
        "database": CONFIG,
        "credentials": {
            "source": "rds-managed-secret",
            "region": "eu-west-1",
            "db_instance_identifier": "not-created-yet",
        },
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    app = web_app.create_app(str(path))
    assert call(app, "GET", "/health")[0] == 200
    status, _, body = call(app, "POST", "/api/messages", {"text": "too early"})
    assert status == 503
    assert "primary" in body["error"]
    assert call(app, "GET", "/api/messages")[0] == 503


def test_a_missing_ca_bundle_is_unavailable_not_a_crash(cluster: Cluster) -> None:
    def connect(**options: Any) -> FakeConnection:
        raise FileNotFoundError(2, "No such file or directory", options["ssl"]["ca"])

    config = {**CONFIG, "tls_ca_file": "/etc/web-app/rds-ca.pem"}
    app = web_app.App("web-1", web_app.Database(config, FixedCredentials(["x"]), connect=connect))
    status, _, body = call(app, "GET", "/api/messages")
    assert status == 503
    assert "error" in body


def test_file_credentials_for_the_local_lab(tmp_path: Any) -> None:
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps({"username": "u", "password": "p"}))
    credentials = web_app.credentials_from({"source": "file", "path": str(path)})
    assert credentials.get() == ("u", "p")
    with pytest.raises(ValueError, match="unknown credentials source"):
        web_app.credentials_from({"source": "vault"})
