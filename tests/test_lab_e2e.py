"""End to end, through the load balancer of the local lab: real HAProxy, Nginx, gunicorn, MariaDB.

The lab runs the stack's own rendered userdata (see lab/localize.py), so these tests exercise
the configuration `pulumi up` ships: round robin, replication, failover, and the app's
fallbacks when a database goes away. Every loop here is bounded in count and time.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql
import pytest
from system_tools import require

from lab import mariadb, metrics
from lab.lab import REQUIRED, Lab
from lab.processes import poll
from lab.topology import LAB_NETWORKS, Topology

LAB = "test"  # its own loopback network: runs beside a user's `make lab`


@dataclass
class Reply:
    status: int
    served_by: str
    body: dict[str, Any]
    seconds: float


def request(url: str, method: str = "GET", payload: dict[str, Any] | None = None) -> Reply:
    data = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    started = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=5) as response:
            status, headers, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, headers, raw = error.code, error.headers, error.read()
    body = json.loads(raw) if headers.get("Content-Type") == "application/json" else {}
    return Reply(status, headers.get("X-Served-By", ""), body, time.monotonic() - started)


@pytest.fixture(scope="module")
def lab() -> Iterator[tuple[Lab, Topology]]:
    for tool in REQUIRED:
        require(tool)
    the_lab = Lab(LAB)
    with the_lab.running() as topology:
        yield the_lab, topology
    assert not the_lab.state.exists(), "down removes the state folder"


@pytest.fixture
def url(lab: tuple[Lab, Topology]) -> str:
    return lab[1].url.rstrip("/")


def test_round_robin_alternates_over_every_web_node(lab: tuple[Lab, Topology], url: str) -> None:
    nodes = [h.name for h in lab[1].web_nodes]
    served = [request(f"{url}/api/messages").served_by for _ in range(2 * len(nodes))]
    assert sorted(served) == sorted(nodes * 2), served
    for i in range(1, len(served)):
        assert served[i] != served[i - 1], f"the same node twice in a row: {served}"
    assert served[: len(nodes)] == served[len(nodes) :], "a fixed rotation"


def test_both_load_balancers_health_check_and_rotate_over_every_web_node(
    lab: tuple[Lab, Topology],
) -> None:
    """The pair: each HAProxy, from its own rendered config at its own address, sees every
    node UP and serves a round robin over all of them; the public address leads to the first."""
    the_lab, topology = lab
    nodes = sorted(h.name for h in topology.web_nodes)
    load_balancers = topology.load_balancers
    assert [h.name for h in load_balancers] == ["load-balancer-1", "load-balancer-2"]
    assert len({h.address for h in load_balancers} | {topology.public_address}) == 3
    assert topology.holder == "load-balancer-1"
    assert the_lab.rotations(topology) == {
        h.name: dict.fromkeys(nodes, "UP") for h in load_balancers
    }
    for host in load_balancers:
        config = (the_lab.directory(host.name) / "haproxy.cfg").read_text()
        assert f"bind {host.address}:{topology.ports.http}\n" in config, host.name
        served = [
            request(f"http://{host.address}:{host.port}/api/messages").served_by
            for _ in range(2 * len(nodes))
        ]
        assert sorted(served) == sorted(nodes * 2), (host.name, served)
    served_by = {request(f"{url}/api/messages").served_by for url in [topology.url] * len(nodes)}
    assert served_by == set(nodes)


def test_a_write_is_read_back_from_the_replica_within_2_seconds(url: str) -> None:
    text = f"e2e {uuid.uuid4()}"
    written = request(f"{url}/api/messages", "POST", {"text": text})
    assert written.status == 201, written.body
    assert written.body["written_to"] == "primary"
    found: list[Reply] = []

    def visible() -> bool:
        reply = request(f"{url}/api/messages")
        if any(m["text"] == text for m in reply.body.get("messages", [])):
            found.append(reply)
            return True
        return False

    assert poll(visible, timeout=2.0) is not None, "not readable within 2 s"
    assert found[0].body["read_from"] == "replica"


def test_failover_loses_no_request_and_detects_within_3_seconds(
    lab: tuple[Lab, Topology], url: str
) -> None:
    """Crash a web node (SIGKILL) under a steady client; then start it again."""
    the_lab, topology = lab
    victim = topology.web_nodes[0].name
    total, period = 300, 10.0 / 300
    replies: list[Reply] = []
    errors: list[str] = []

    def client() -> None:
        for _ in range(total):
            started = time.monotonic()
            try:
                replies.append(request(f"{url}/api/messages"))
            except OSError as error:
                errors.append(str(error))
            time.sleep(max(0.0, period - (time.monotonic() - started)))

    worker = threading.Thread(target=client)
    worker.start()
    try:
        time.sleep(2.5)
        killed = time.monotonic()
        the_lab.stop_host(victim, kill=True)
        gone = poll(lambda: the_lab.rotation(topology).get(victim) == "DOWN", timeout=5)
        # Measured from the kill, so the time the lab takes to stop the node counts too.
        left = None if gone is None else time.monotonic() - killed
        time.sleep(1.0)
        the_lab.start_host(victim)
        started = time.monotonic()
        returned = poll(lambda: the_lab.rotation(topology).get(victim) == "UP", timeout=5)
        # Measured from when the node answers again: HAProxy's part (2 checks 1 s apart).
        back = None if returned is None else time.monotonic() - started
    finally:
        worker.join(timeout=30)
        the_lab.start_host(victim)
    failed = [r for r in replies if r.status != 200]
    assert errors == [], f"{len(errors)} client errors: {errors[:3]}"
    assert failed == [], f"{len(failed)} failed replies: {[r.status for r in failed]}"
    assert len(replies) == total
    assert left is not None, f"{victim} never left rotation"
    assert left <= 3.0, f"{victim} left rotation after {left:.2f} s"
    assert back is not None, f"{victim} never returned to rotation"
    assert back <= 3.0, f"{victim} returned after {back:.2f} s"
    served = {r.served_by for r in replies}
    assert served == {h.name for h in topology.web_nodes}


def test_reads_survive_the_replica_and_it_catches_up(lab: tuple[Lab, Topology], url: str) -> None:
    the_lab, _ = lab
    the_lab.stop_host("db-replica")
    try:
        during = request(f"{url}/api/messages")
        assert (during.status, during.body["read_from"]) == (200, "primary")
        written = request(f"{url}/api/messages", "POST", {"text": "while the replica slept"})
        assert written.status == 201
    finally:
        the_lab.start_host("db-replica")
    primary, replica = the_lab.database("db-primary"), the_lab.database("db-replica")
    target = mariadb.gtid_position(primary, "gtid_binlog_pos")
    caught_up = poll(lambda: mariadb.has_applied(replica, target), 10)
    assert caught_up is not None, "the replica did not catch up"
    # Back in use once the app's back-off has passed.
    assert poll(lambda: request(f"{url}/api/messages").body["read_from"] == "replica", 8)


def test_primary_down_fails_writes_fast_and_keeps_reads(
    lab: tuple[Lab, Topology], url: str
) -> None:
    the_lab, _ = lab
    text = f"before the outage {uuid.uuid4()}"
    assert request(f"{url}/api/messages", "POST", {"text": text}).status == 201
    assert poll(
        lambda: any(m["text"] == text for m in request(f"{url}/api/messages").body["messages"]), 2
    )
    the_lab.stop_host("db-primary")
    try:
        refused = request(f"{url}/api/messages", "POST", {"text": "during the outage"})
        assert refused.status == 503
        assert "primary" in refused.body["error"]
        assert refused.seconds < 1.0, f"a write took {refused.seconds:.2f} s to fail"
        read = request(f"{url}/api/messages?limit=100")
        assert (read.status, read.body["read_from"]) == (200, "replica")
        assert text in [m["text"] for m in read.body["messages"]]
    finally:
        the_lab.start_host("db-primary")
    after = request(f"{url}/api/messages?limit=100")
    assert text in [m["text"] for m in after.body["messages"]], "nothing written before is lost"
    assert request(f"{url}/api/messages", "POST", {"text": "after"}).status == 201


def test_status_reports_every_host_for_scripts(lab: tuple[Lab, Topology]) -> None:
    status = lab[0].status()
    assert status["url"] == lab[1].url
    names = [h["name"] for h in status["hosts"]]
    assert names == [
        "load-balancer-1",
        "load-balancer-2",
        "web-1",
        "web-2",
        "db-primary",
        "db-replica",
    ]
    assert status["public_address"] == {
        "address": lab[1].public_address,
        "holder": "load-balancer-1",
    }
    for host in status["hosts"]:
        assert set(host) == {"name", "role", "address", "port", "state"}
        assert host["address"].startswith(LAB_NETWORKS[LAB] + "."), "the test lab's network"
    assert poll(lambda: all(h["state"] == "up" for h in lab[0].status()["hosts"]), 5)
    replicating = poll(
        lambda: lab[0].status()["details"]["db-replica"].startswith("replicating"), 10, 0.2
    )
    assert replicating is not None, lab[0].status()["details"]


def test_a_second_up_is_refused_while_running(lab: tuple[Lab, Topology]) -> None:
    with pytest.raises(Exception, match="already running"):
        Lab(LAB).up()


def test_the_labs_configs_pass_the_real_checks(lab: tuple[Lab, Topology]) -> None:
    """What the lab runs is the shipped config, localised; both tools still accept it."""
    load_balancer, web_1 = lab[0].directory("load-balancer"), lab[0].directory("web-1")
    haproxy = subprocess.run(
        [require("haproxy"), "-c", "-f", str(load_balancer / "haproxy.cfg")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert haproxy.returncode == 0, haproxy.stderr
    config = (load_balancer / "haproxy.cfg").read_text()
    assert "balance roundrobin" in config
    assert "    server web-1 web-1.dev.web-infra.internal:80\n" in config, "found through DNS"
    nginx = subprocess.run(
        [
            require("nginx"),
            "-t",
            "-c",
            str(web_1 / "nginx.conf"),
            "-e",
            str(web_1 / "nginx-error.log"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert nginx.returncode == 0, nginx.stderr
    assert shutil.which("gunicorn") or Path("/usr/bin/gunicorn").exists()


def test_the_databases_speak_only_tls_and_the_app_verifies_them(
    lab: tuple[Lab, Topology], url: str
) -> None:
    """Like RDS with the stack's parameter group: a plain TCP login is refused, so the app's
    working reads and writes went over TLS, verified against the lab's CA by the same code
    path that verifies the RDS CA bundle on AWS."""
    the_lab, topology = lab
    credentials = json.loads((the_lab.state / "credentials.json").read_text())
    primary = topology.host("db-primary")
    login = {
        "host": primary.address,
        "port": primary.port,
        "user": credentials["username"],
        "password": credentials["password"],
        "connect_timeout": 5,
    }
    # MariaDB answers a plain login with a bare "access denied" (it does not say why); the
    # same credentials over TLS get in.
    with pytest.raises(pymysql.err.OperationalError, match="Access denied"):
        pymysql.connect(**login, ssl_disabled=True)
    secure = pymysql.connect(**login, ssl={"ca": str(the_lab.ca_file), "check_hostname": False})
    try:
        with secure.cursor() as cursor:
            cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_version'")
            assert str(cursor.fetchone()[1]).startswith("TLSv1.")
    finally:
        secure.close()
    assert request(f"{url}/api/messages", "POST", {"text": "over TLS"}).status == 201


def test_the_metrics_the_alarms_read_are_served_by_the_shipped_configs(
    lab: tuple[Lab, Topology],
) -> None:
    """HAProxy's exporter and every node's stub_status answer where the agent scrapes them,
    and `lab status --json` names them."""
    the_lab, topology = lab
    endpoints = the_lab.status()["metrics"]
    assert set(endpoints) == {
        "load-balancer-1/haproxy",
        "load-balancer-2/haproxy",
        "web-1/nginx",
        "web-2/nginx",
    }
    for load_balancer in ("load-balancer-1", "load-balancer-2"):
        samples = metrics.scrape(endpoints[f"{load_balancer}/haproxy"])
        assert metrics.healthy_web_nodes(samples) == 2, load_balancer
    for node in topology.web_nodes:
        before = metrics.nginx_requests(endpoints[f"{node.name}/nginx"])
        assert before is not None, f"{node.name}'s stub_status"
    for _ in range(4):
        request(f"{topology.url}api/messages")
    assert all(
        (metrics.nginx_requests(endpoints[f"{n.name}/nginx"]) or 0) > 0 for n in topology.web_nodes
    )


def test_the_healthy_node_metric_follows_a_killed_node_within_3_seconds(
    lab: tuple[Lab, Topology],
) -> None:
    the_lab, _ = lab
    haproxy = the_lab.metrics_endpoints()["load-balancer-1/haproxy"]

    def healthy() -> float:
        return metrics.healthy_web_nodes(metrics.scrape(haproxy))

    assert healthy() == 2
    killed = time.monotonic()
    the_lab.stop_host("web-2", kill=True)
    try:
        down = poll(lambda: healthy() == 1, timeout=6, step=0.1)
        assert down is not None, "the metric never showed the node gone"
        assert time.monotonic() - killed <= 3.5 or down <= 3.0, f"after {down:.2f} s"
    finally:
        the_lab.start_host("web-2")
    started = time.monotonic()
    back = poll(lambda: healthy() == 2, timeout=6, step=0.1)
    assert back is not None, "the metric never showed the node back"
    assert time.monotonic() - started <= 3.5, f"back after {time.monotonic() - started:.2f} s"


def test_a_burst_of_5xx_shows_in_the_clients_error_counter(lab: tuple[Lab, Topology]) -> None:
    """With both databases gone, reads answer 503: the 5xx-rate alarm's counter counts them."""
    the_lab, topology = lab
    haproxy = the_lab.metrics_endpoints()["load-balancer-1/haproxy"]
    before = metrics.client_5xx(metrics.scrape(haproxy))
    the_lab.stop_host("db-replica")
    the_lab.stop_host("db-primary")
    try:
        answers = [request(f"{topology.url}api/messages") for _ in range(10)]
    finally:
        the_lab.start_host("db-primary")
        the_lab.start_host("db-replica")
    failed = sum(1 for a in answers if a.status >= 500)
    assert failed == 10, [a.status for a in answers]
    after = metrics.client_5xx(metrics.scrape(haproxy))
    assert after - before == failed
