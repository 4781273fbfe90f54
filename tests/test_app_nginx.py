"""The shipped Nginx config in front of the shipped app, both running for real.

Nginx's own errors are JSON with their status, the app's own answers pass through untouched,
every answer carries the security headers, and the client address is taken only from the
load balancer's X-Forwarded-For. The app's databases are unreachable here: its DB routes
answer 503 on their own, which is what Nginx must pass through. Addresses: 127.0.40.20-22.
"""

from __future__ import annotations

import http.client
import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from system_tools import require

from lab import processes
from userdata import cloud_config, web_node_config

NGINX = ("127.0.40.20", 8080)
BALANCER, STRANGER = "127.0.40.21", "127.0.40.22"  # a trusted and an untrusted peer


@dataclass
class Node:
    folder: Path
    nginx: processes.Daemon
    socket: Path

    def access_log(self) -> str:
        return (self.folder / "access.log").read_text()


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> dict[str, object]:
        assert self.headers["Content-Type"] == "application/json", self.headers
        parsed = json.loads(self.body)
        assert isinstance(parsed, dict)
        return parsed


def request(
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    source: str = BALANCER,
) -> Reply:
    connection = http.client.HTTPConnection(*NGINX, timeout=10, source_address=(source, 0))
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        connection.close()


def shipped_nginx_conf(folder: Path, socket: Path) -> Path:
    """The web node's nginx.conf from its userdata, with paths and address made local."""
    database = web_node_config.AppDatabase("test.internal", "webapp", "local", "db")
    document = web_node_config.web_node_cloud_config(
        "web-1",
        database,
        cloud_config.ReadinessReport("/web-infra-test/ready", "local"),
        load_balancer_cidr=f"{BALANCER}/32",
    )
    (entry,) = [f for f in document["write_files"] if f["path"] == "/etc/nginx/nginx.conf"]
    text = cloud_config.file_content(entry).decode()
    for old, new in [
        ("pid /run/nginx.pid;", f"pid {folder}/nginx.pid;"),
        ("/var/log/nginx/", f"{folder}/"),
        ("/var/lib/nginx/", f"{folder}/"),
        ("unix:/run/web-app/gunicorn.sock", f"unix:{socket}"),
        ("listen *:80 default_server;", f"listen {NGINX[0]}:{NGINX[1]} default_server;"),
    ]:
        assert old in text, old
        text = text.replace(old, new)
    path = folder / "nginx.conf"
    path.write_text(text)
    return path


def start_app(folder: Path, socket: Path) -> processes.Daemon:
    package = folder / "app" / "web_app"  # as shipped: APP_DIR/web_app/
    package.mkdir(parents=True)
    for name, content in web_node_config.app_files().items():
        (package / name).write_bytes(content)
    config = web_node_config.AppDatabase("test.internal", "webapp", "local", "db").app_config(
        "web-1"
    )
    # Nothing listens there: every database call is refused at once.
    config["database"].update(primary_host="127.0.40.23", replica_host="127.0.40.23")
    del config["database"]["tls_ca_file"]
    (folder / "credentials.json").write_text('{"username": "u", "password": "p"}')
    config["credentials"] = {"source": "file", "path": str(folder / "credentials.json")}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "gunicorn.conf.py").write_text(cloud_config.render_template("gunicorn.conf.py"))
    command = [
        *(require("gunicorn"), "--config", str(folder / "gunicorn.conf.py")),
        *("--bind", f"unix:{socket}", "--chdir", str(folder / "app"), "web_app:application"),
    ]
    environment = {"WEB_APP_CONFIG": str(folder / "config.json")}
    daemon = processes.start("web-1/app", command, folder / "app.log", environment=environment)
    processes.wait_until(socket.exists, daemon, what="gunicorn's socket")
    return daemon


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    nginx_program = require("nginx")
    processes.ensure_port_free(*NGINX, "nginx")
    folder = Path(tempfile.mkdtemp(prefix="web-app-nginx-"))
    folder.chmod(0o755)  # Nginx's workers run as www-data
    socket = folder / "gunicorn.sock"
    daemons: list[processes.Daemon] = []
    try:
        conf = shipped_nginx_conf(folder, socket)
        command = [nginx_program, "-c", str(conf), "-e", str(folder / "error.log")]
        daemons.append(
            processes.start("web-1/nginx", [*command, "-g", "daemon off;"], folder / "nginx.log")
        )
        processes.wait_until(
            lambda: processes.port_is_open(*NGINX), daemons[0], what="nginx", timeout=30
        )
        yield Node(folder, daemons[0], socket)
    finally:
        for daemon in daemons:
            processes.stop(daemon)
        shutil.rmtree(folder, ignore_errors=True)


def test_without_the_app_nginx_answers_502_in_json(node: Node) -> None:
    reply = request("POST", "/api/messages", body=b'{"text": "hi"}')
    assert reply.status == 502
    assert reply.json() == {
        "error": "the app is not answering",
        "status": 502,
        "served_by": "web-1",
    }


@pytest.fixture(scope="module")
def app(node: Node) -> Iterator[None]:
    daemon = start_app(node.folder, node.socket)
    try:
        yield
    finally:
        processes.stop(daemon)


def test_errors_nginx_answers_itself_are_json(node: Node, app: None) -> None:
    too_large = request(
        "POST",
        "/api/messages",
        body=json.dumps({"text": "x" * 17000}).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert too_large.status == 413
    assert too_large.json()["error"] == "the body must be at most 16 KiB"
    too_long = request("GET", "/api/messages?x=" + "a" * 9000)
    assert too_long.status == 414
    assert too_long.json()["error"] == "the URL is too long"


def test_the_apps_own_answers_pass_through(node: Node, app: None) -> None:
    health = request("GET", "/health")
    assert health.status == 200
    assert health.json()["status"] == "ok"
    head = request("HEAD", "/health")
    assert (head.status, head.body) == (200, b"")
    unavailable = request("GET", "/api/messages")
    assert unavailable.status == 503
    assert unavailable.json()["error"] == "no database is reachable for reads", "the app's own"
    assert unavailable.headers["Retry-After"] == "1"
    wrong_type = request("POST", "/api/messages", body=b"text=hi")
    assert wrong_type.status == 415


def test_every_answer_carries_the_security_headers(node: Node, app: None) -> None:
    for reply in (request("GET", "/health"), request("GET", "/"), request("GET", "/nope")):
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
        assert reply.headers["X-Frame-Options"] == "DENY"
        assert reply.headers["Content-Security-Policy"] == "frame-ancestors 'none'"
        assert reply.headers["Referrer-Policy"] == "same-origin"
        assert reply.headers.get("Server") == "nginx", "no version"


def test_the_client_address_comes_only_from_the_load_balancer(node: Node, app: None) -> None:
    forged = {"X-Forwarded-For": "6.6.6.6, 203.0.113.7"}
    request("GET", "/health?from=balancer", headers=forged, source=BALANCER)
    request("GET", "/health?from=stranger", headers=forged, source=STRANGER)
    # Nginx logs a request after answering it: wait (bounded) until both lines are there.
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and node.access_log().count("from=") < 2:
        time.sleep(0.05)
    lines = node.access_log().splitlines()
    (balancer,) = [line for line in lines if "from=balancer" in line]
    (stranger,) = [line for line in lines if "from=stranger" in line]
    assert balancer.startswith("203.0.113.7 "), "the address HAProxy appended"
    assert stranger.startswith(f"{STRANGER} "), "not believed from anyone else"
