"""The app under the real gunicorn against real MariaDB servers that hang, lag and lock.

A primary and a GTID replica (mariadbd, set up with the lab's own helpers) speak only TLS with
a test CA, as RDS does; gunicorn runs the shipped app with the shipped gunicorn config and the
shipped config.json (hosts and credentials changed as the lab changes them), under the
system's Python and PyMySQL, like a web node. A hung server is a SIGSTOPped mariadbd.

Everything lives on 127.0.40.0/24 and in a temporary folder; each daemon is stopped by the
PID this module started, and a stopped server is always continued.
"""

from __future__ import annotations

import http.client
import json
import os
import pwd
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fake_mysql import web_app
from system_tools import require

from lab import mariadb, processes
from lab.certificates import TlsFiles, write_tls_files
from lab.topology import Host
from userdata import cloud_config, web_node_config

PRIMARY = Host("db-primary", "database", "127.0.40.1", 3306)
REPLICA = Host("db-replica", "database", "127.0.40.2", 3306)
APP = ("127.0.40.10", 8000)


@dataclass
class Site:
    primary: mariadb.Server
    replica: mariadb.Server
    daemons: dict[str, processes.Daemon]
    tls: TlsFiles
    credentials: Path
    folder: Path

    def sql(self, server: mariadb.Server, statements: str) -> str:
        return mariadb.sql(server, statements).stdout.strip()

    def connections(self, server: mariadb.Server) -> int:
        return int(self.sql(server, "SHOW GLOBAL STATUS LIKE 'Connections'").split()[-1])


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any
    seconds: float


def request(
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10,
) -> Reply:
    connection = http.client.HTTPConnection(*APP, timeout=timeout)
    data = None if body is None else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **(headers or {})}
    started = time.monotonic()
    try:
        connection.request(method, path, body=data, headers=sent)
        response = connection.getresponse()
        payload = response.read()
    finally:
        connection.close()
    seconds = time.monotonic() - started
    parsed = json.loads(payload) if payload.startswith(b"{") else payload.decode()
    return Reply(response.status, dict(response.getheaders()), parsed, seconds)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    if processes.poll(condition, timeout, step=0.1) is None:
        raise AssertionError(f"timed out waiting for {what}")


def start_database(server: mariadb.Server, tls: TlsFiles, *, replica: bool) -> processes.Daemon:
    command = [
        *mariadb.server_command(server, replica=replica),
        f"--ssl-ca={tls.ca}",
        f"--ssl-cert={tls.certificate}",
        f"--ssl-key={tls.key}",
        "--require-secure-transport=ON",  # as RDS can: no plain TCP login
    ]
    daemon = processes.start(server.host.name, command, server.log)
    processes.wait_until(
        lambda: mariadb.sql(server, "SELECT 1", check=False).returncode == 0,
        daemon,
        what=server.host.name,
        timeout=60,
    )
    return daemon


def start_app(site: Site) -> processes.Daemon:
    """gunicorn with the shipped config and config.json, changed only where the lab does."""
    app_dir = site.folder / "app"
    (app_dir / "web_app").mkdir(parents=True)  # as shipped: APP_DIR/web_app/
    for name, content in web_node_config.app_files().items():
        (app_dir / "web_app" / name).write_bytes(content)
    gunicorn_conf = site.folder / "gunicorn.conf.py"
    gunicorn_conf.write_text(cloud_config.render_template("gunicorn.conf.py"))
    config = web_node_config.AppDatabase("test.internal", "webapp", "local", "db").app_config(
        "web-9"
    )
    config["database"].update(
        primary_host=PRIMARY.address,
        replica_host=REPLICA.address,
        port=PRIMARY.port,
        tls_ca_file=str(site.tls.ca),
    )
    config["credentials"] = {"source": "file", "path": str(site.credentials)}
    (site.folder / "config.json").write_text(json.dumps(config))
    command = [
        require("gunicorn"),
        "--config",
        str(gunicorn_conf),
        "--bind",
        f"{APP[0]}:{APP[1]}",
        "--chdir",
        str(app_dir),
        "web_app:application",
    ]
    daemon = processes.start(
        "web-9/app",
        command,
        site.folder / "app.log",
        environment={"WEB_APP_CONFIG": str(site.folder / "config.json")},
    )
    processes.wait_until(lambda: processes.port_is_open(*APP), daemon, what="gunicorn", timeout=30)
    return daemon


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    for tool in ("mariadbd", "mariadb-install-db", "mariadb", "gunicorn"):
        require(tool)
    for host in (PRIMARY, REPLICA):
        processes.ensure_port_free(host.address, host.port, host.name)
    processes.ensure_port_free(*APP, "the app")
    # Not under pytest's 0700 folders: mariadbd runs as the mysql user when we are root.
    folder = Path(tempfile.mkdtemp(prefix="web-app-mariadb-"))
    folder.chmod(0o755)
    daemons: dict[str, processes.Daemon] = {}
    try:
        tls = write_tls_files(folder / "tls", name="test")
        if os.geteuid() == 0:
            shutil.chown(tls.key, "mysql")
        primary = mariadb.Server(PRIMARY, folder / "db-primary", 1)
        replica = mariadb.Server(REPLICA, folder / "db-replica", 2)
        for server in (primary, replica):
            mariadb.initialise(server)
        site = Site(primary, replica, daemons, tls, folder / "credentials.json", folder)
        daemons["primary"] = start_database(primary, tls, replica=False)
        replication_password = mariadb.set_up_primary(primary, site.credentials, tls.ca)
        daemons["replica"] = start_database(replica, tls, replica=True)
        site.sql(
            replica,
            f"""CHANGE MASTER TO MASTER_HOST='{PRIMARY.address}', MASTER_PORT={PRIMARY.port},
              MASTER_USER='{mariadb.REPLICATION_USER}', MASTER_PASSWORD='{replication_password}',
              MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, MASTER_SSL=1;
            START SLAVE;""",
        )
        wait_for(
            lambda: mariadb.replication_summary(replica).startswith("replicating"), "replication"
        )
        daemons["app"] = start_app(site)
        # Every worker has measured the replica's lag once (until then it reads the primary).
        wait_for(
            lambda: all(
                request("GET", "/health").body["replica_lag_seconds"] is not None for _ in range(10)
            ),
            "the app's first measurement of the replica's lag",
        )
        yield site
    finally:
        for daemon in reversed(list(daemons.values())):
            with_continued(daemon)
            processes.stop(daemon)
        if not os.environ.get("KEEP_TEST_FOLDER"):
            shutil.rmtree(folder, ignore_errors=True)


def with_continued(daemon: processes.Daemon) -> None:
    if processes.is_running(daemon):
        os.kill(daemon.pid, signal.SIGCONT)


@contextmanager
def hung(site: Site, name: str) -> Iterator[None]:
    """The server stops answering (its process is stopped); always continued afterwards."""
    daemon = site.daemons[name]
    os.kill(daemon.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(daemon.pid, signal.SIGCONT)


def settled(site: Site) -> None:
    """Both servers answer the app again and the replica has caught up. Each gunicorn worker
    has breakers of its own, so every one must see both servers up (ten /health answers in a
    row), or the next test starts with a breaker still open in one worker."""
    wait_for(lambda: mariadb.replication_summary(site.replica).startswith("replicating"), "repl")
    wait_for(
        lambda: all(
            all(request("GET", "/health").body["databases_up"].values()) for _ in range(10)
        ),
        "every worker to see both servers up",
    )
    wait_for(
        lambda: request("POST", "/api/messages", {"text": "settled?"}).status == 201,
        "writes to work again",
    )
    wait_for(
        lambda: request("GET", "/api/messages").body.get("read_from") == "replica",
        "reads from the replica again",
    )


def load(requests: list[Callable[[], Reply]], workers: int = 24) -> list[Reply]:
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda send: send(), requests))


def test_a_hung_primary_fails_writes_fast_and_reads_and_health_go_on(site: Site) -> None:
    assert request("POST", "/api/messages", {"text": "before the hang"}).status == 201
    with hung(site, "primary"):
        started = time.monotonic()
        reads: list[Reply] = []
        writes: list[Reply] = []
        health: list[Reply] = []
        while time.monotonic() - started < 8:
            batch = [lambda: request("GET", "/api/messages") for _ in range(12)]
            batch += [
                lambda: request("POST", "/api/messages", {"text": "during"}) for _ in range(6)
            ]
            done: list[Reply] = []
            pending = threading.Thread(target=lambda b=batch, d=done: d.extend(load(b)))
            pending.start()
            time.sleep(0.1)  # the batch is now waiting on the database
            health.append(request("GET", "/health"))
            pending.join()
            reads += done[:12]
            writes += done[12:]
    assert {r.status for r in reads} == {200}, [
        (r.body, round(r.seconds, 2)) for r in reads if r.status != 200
    ]
    assert {r.body["read_from"] for r in reads} == {"replica"}
    assert {r.status for r in writes} == {503}
    assert {r.body["outcome"] for r in writes} <= {"not saved", "unknown"}
    assert max(r.seconds for r in writes) < 2, "a write fails within 2 s"
    assert max(r.seconds for r in reads) < 2
    assert {r.status for r in health} == {200}
    assert max(r.seconds for r in health) < 0.5, "/health never waits on the database"
    settled(site)


def test_health_answers_while_every_database_call_hangs(site: Site) -> None:
    with hung(site, "primary"), hung(site, "replica"), ThreadPoolExecutor(40) as pool:
        slow = [pool.submit(request, "GET", "/api/messages") for _ in range(40)]
        time.sleep(0.2)
        health = [request("GET", "/health") for _ in range(5)]
        statuses = {future.result().status for future in slow}
    assert {r.status for r in health} == {200}
    assert max(r.seconds for r in health) < 0.5
    assert statuses <= {200, 503}, "reads may fail with both databases hung, but honestly"
    settled(site)


def test_a_hung_replica_moves_reads_to_the_primary_within_two_seconds(site: Site) -> None:
    with hung(site, "replica"):
        started = time.monotonic()
        replies = []
        while time.monotonic() - started < 5:
            replies += load([lambda: request("GET", "/api/messages") for _ in range(8)])
    assert {r.status for r in replies} == {200}, [
        (r.body, round(r.seconds, 2)) for r in replies if r.status != 200
    ]
    assert max(r.seconds for r in replies) < 2
    late = [r for r in replies if r.seconds < 0.5]
    assert late, "once the breaker opens, reads go straight to the primary"
    assert replies[-1].body["read_from"] == "primary"
    settled(site)


def test_a_lagging_replica_is_not_read_and_the_lag_is_said(site: Site) -> None:
    site.sql(site.replica, "STOP SLAVE SQL_THREAD")
    try:
        written = request("POST", "/api/messages", {"text": "while lagging"})
        assert written.status == 201
        time.sleep(4)  # over the default bound of 3 s
        reply = request("GET", "/api/messages")
        assert reply.body["read_from"] == "primary"
        assert reply.body["replica_lag_seconds"] > 3
        assert reply.body["messages"][0]["text"] == "while lagging"
    finally:
        site.sql(site.replica, "START SLAVE SQL_THREAD")
    settled(site)
    wait_for(
        lambda: all(request("GET", "/health").body["replica_lag_seconds"] < 2 for _ in range(6)),
        "every worker to measure the caught-up replica",
        timeout=5,
    )


def test_a_client_reads_its_own_write_and_others_a_bounded_replica(site: Site) -> None:
    settled(site)
    site.sql(site.replica, "STOP SLAVE SQL_THREAD")
    try:
        written = request("POST", "/api/messages", {"text": "read me back"})
        token = written.headers["X-Read-After"]
        assert f"read_after={token}" in written.headers["Set-Cookie"]
        other = request("GET", "/api/messages")
        assert other.body["read_from"] == "replica"
        assert "read me back" not in [m["text"] for m in other.body["messages"]]
        mine = request("GET", "/api/messages", headers={"Cookie": f"read_after={token}"})
        assert mine.body["read_from"] == "primary"
        assert mine.body["messages"][0]["text"] == "read me back"
    finally:
        site.sql(site.replica, "START SLAVE SQL_THREAD")
    wait_for(
        lambda: (
            request("GET", "/api/messages", headers={"X-Read-After": token}).body["read_from"]
            == "replica"
        ),
        "the replica to have the write",
        timeout=10,
    )
    mine = request("GET", "/api/messages", headers={"X-Read-After": token})
    assert mine.body["messages"][0]["text"] == "read me back"


def rows_with_key(site: Site, key: str) -> int:
    count = f"SELECT COUNT(*) FROM webapp.messages WHERE idempotency_key = '{key}'"
    return int(site.sql(site.primary, count))


def test_an_unanswered_insert_is_an_unknown_outcome_and_a_retry_stores_once(site: Site) -> None:
    """The table is locked by another session: the INSERT is sent and waits, the app stops
    waiting after its read timeout. The server may still run it; the retry by key tells."""
    settled(site)
    user = pwd.getpwuid(os.geteuid()).pw_name  # the server's admin, by unix_socket login
    locker = subprocess.Popen(
        [
            require("mariadb"),
            f"--socket={site.primary.socket}",
            f"--user={user}",
            "--batch",
            "--skip-column-names",
            "--unbuffered",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert locker.stdin is not None
        assert locker.stdout is not None
        locker.stdin.write("LOCK TABLES webapp.messages WRITE; SELECT 'locked'; SELECT SLEEP(4);\n")
        locker.stdin.flush()
        # Sent only once the lock is held: a fixed pause lost the race on a loaded machine,
        # where the client had not even connected and the INSERT went through.
        assert select.select([locker.stdout], [], [], 30)[0], "the lock was never taken"
        assert locker.stdout.readline().strip() == "locked"
        headers = {"Idempotency-Key": "unknown-outcome-1"}
        reply = request("POST", "/api/messages", {"text": "locked out"}, headers)
        assert reply.status == 503
        assert reply.body["outcome"] == "unknown"
        assert reply.body["idempotency_key"] == "unknown-outcome-1"
        assert reply.seconds < 2
    finally:
        locker.stdin.close()  # type: ignore[union-attr]
        locker.wait(timeout=15)
    retry = request("POST", "/api/messages", {"text": "locked out"}, headers)
    assert retry.status == 201
    again = request("POST", "/api/messages", {"text": "locked out"}, headers)
    assert (again.status, again.body["replayed"]) == (201, True)
    assert again.body["message"]["id"] == retry.body["message"]["id"]
    assert rows_with_key(site, "unknown-outcome-1") == 1


def test_connections_are_reused(site: Site) -> None:
    settled(site)
    before = site.connections(site.primary), site.connections(site.replica)
    for i in range(100):
        assert request("POST", "/api/messages", {"text": f"reuse {i}"}).status == 201
        assert request("GET", "/api/messages?limit=1").status == 200
    after = site.connections(site.primary), site.connections(site.replica)
    # Two workers, each with at most 6 connections per server (5 requests + the upkeep).
    assert after[0] - before[0] <= 12
    assert after[1] - before[1] <= 12


def test_the_ca_chain_is_verified(site: Site, tmp_path: Path) -> None:
    """The same code path as the RDS bundle: the right CA connects, another CA does not."""
    base = {
        "name": "webapp",
        "primary_host": PRIMARY.address,
        "replica_host": REPLICA.address,
        "port": PRIMARY.port,
    }
    credentials = web_app.credentials.FileCredentials(str(site.credentials))
    good = web_app.routes.App(
        "t", web_app.database.Database({**base, "tls_ca_file": str(site.tls.ca)}, credentials)
    )
    assert good.db.read_messages(1).source == "primary"
    other_ca = write_tls_files(tmp_path, name="other").ca
    bad = web_app.database.Database({**base, "tls_ca_file": str(other_ca)}, credentials)
    with pytest.raises(web_app.failures.Unavailable, match="CERTIFICATE_VERIFY_FAILED"):
        bad.read_messages(1)
