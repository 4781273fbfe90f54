"""The Prometheus series the agent is told to keep exist, with a type the agent accepts, in
what the real HAProxy and the real prometheus-nginx-exporter serve.

Each test runs its own daemons on 127.0.0.1 with ports the kernel hands out, stops them by PID,
and sends a bounded handful of requests. The HAProxy and Nginx configs are small ones built
around the lines `userdata/cloudwatch_agent.py` asks the shipped configs to contain."""

from __future__ import annotations

import contextlib
import re
import shlex
import socket
import subprocess
import threading
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from monitoring_harness import shape
from prometheus_client.parser import text_string_to_metric_families
from system_tools import require

from lab.processes import poll
from userdata.cloudwatch_agent import (
    Endpoint,
    haproxy_exporter_directive,
    nginx_exporter_args,
    nginx_status_server,
    prometheus_config,
    prometheus_targets,
)
from userdata.metric_catalog import LOAD_BALANCER, Catalogue, catalogue

ACCEPTED_TYPES = {"counter", "gauge"}  # the agent drops histograms and untyped series


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> float:
    def holds() -> bool:  # a server still starting refuses the connection
        with contextlib.suppress(OSError):
            return condition()
        return False

    waited = poll(holds, seconds, step=0.1)
    if waited is None:
        raise AssertionError(f"{what} not within {seconds} s")
    return waited


@contextlib.contextmanager
def daemon(command: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


Series = tuple[str, frozenset[tuple[str, str]]]


def series(name: str, **labels: str) -> Series:
    return (name, frozenset(labels.items()))


def scrape(catalogue_: Catalogue, host: str, endpoint: Endpoint) -> dict[Series, tuple[str, float]]:
    """Scrape like the agent (path, params, sd labels, keep rule); series -> (type, value)."""
    (job,) = prometheus_config(catalogue_, host)["scrape_configs"]
    query = "&".join(f"{k}={v}" for k, values in job.get("params", {}).items() for v in values)
    url = f"http://{endpoint.address}{job['metrics_path']}" + (f"?{query}" if query else "")
    status, body = get(url)
    assert status == 200, f"{url}: {status}"
    (rule,) = job["metric_relabel_configs"]
    target_labels = prometheus_targets(host)[0]["labels"]
    kept = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            labels = {**target_labels, **sample.labels, "__name__": sample.name}
            joined = rule["separator"].join(labels.get(k, "") for k in rule["source_labels"])
            if re.fullmatch(rule["regex"], joined):
                key = (sample.name, frozenset((k, v) for k, v in sample.labels.items()))
                kept[key] = (family.type, sample.value)
    return kept


def wanted(catalogue_: Catalogue, host: str) -> set[Series]:
    """The catalogue's Prometheus series for `host`, with the exporter's own labels only."""
    return {
        (m.name, frozenset((k, str(v)) for k, v in m.dimensions if k != "Node"))
        for m in catalogue_.agent_metrics(host)
        if m.source.prometheus
    }


class _Node(BaseHTTPRequestHandler):
    """A web node for HAProxy: /health answers 200, /fail a 500, anything else 200."""

    def do_GET(self) -> None:
        status = 500 if self.path == "/fail" else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def web_node() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Node)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_haproxy_serves_every_series_the_agent_keeps(tmp_path: Path) -> None:
    """The load balancer's metrics exist under the catalogue's names and labels, the healthy
    node count drops when a node stops answering, and 5xx show up per node and to clients."""
    haproxy = require("haproxy")
    stack = catalogue(shape(2))
    frontend = free_port()
    metrics = Endpoint("127.0.0.1", free_port(), "/metrics")
    with web_node() as node_1, web_node() as node_2:
        servers = "\n".join(
            f"    server web-{i} 127.0.0.1:{s.server_address[1]}"
            for i, s in enumerate((node_1, node_2), start=1)
        )
        config = tmp_path / "haproxy.cfg"
        config.write_text(
            "defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n"
            "    timeout server 5s\n"
            f"frontend http\n    bind 127.0.0.1:{frontend}\n    default_backend web\n"
            "backend web\n    balance roundrobin\n    option httpchk\n"
            "    http-check send meth GET uri /health\n"
            "    default-server check inter 1s fall 2 rise 2\n"
            f"{servers}\n"
            f"frontend stats\n    bind {metrics.address}\n    no log\n"
            f"    {haproxy_exporter_directive(metrics)}\n"
        )
        with daemon([haproxy, "-db", "-f", str(config)], tmp_path / "haproxy.log"):
            active = series("haproxy_backend_active_servers", proxy="web")
            wait_for(lambda: scrape(stack, LOAD_BALANCER, metrics)[active][1] == 2, 10, "2 UP")
            for _ in range(4):
                assert get(f"http://127.0.0.1:{frontend}/fail")[0] == 500
            found = scrape(stack, LOAD_BALANCER, metrics)
            log = (tmp_path / "haproxy.log").read_text()
            assert set(found) == wanted(stack, LOAD_BALANCER), log
            assert {kind for kind, _ in found.values()} <= ACCEPTED_TYPES
            to_clients = series("haproxy_frontend_http_responses_total", proxy="http", code="5xx")
            assert found[to_clients][1] == 4
            per_node = [
                found[
                    series(
                        "haproxy_server_http_responses_total",
                        proxy="web",
                        server=f"web-{i}",
                        code="5xx",
                    )
                ][1]
                for i in (1, 2)
            ]
            assert per_node == [2, 2], "round robin: each node answered two of the 5xx"
            requests = series("haproxy_frontend_http_requests_total", proxy="http")
            assert found[requests][1] == 4, "the scrapes themselves are not counted"

            node_2.shutdown()
            node_2.server_close()
            took = wait_for(
                lambda: scrape(stack, LOAD_BALANCER, metrics)[active][1] == 1, 5, "web-2 out"
            )
            assert took < 3.5, f"the healthy-node count moved after {took:.1f} s"


def test_nginx_exporter_serves_the_request_counter_the_agent_keeps(tmp_path: Path) -> None:
    """Nginx's stub_status, read by Ubuntu's/Debian's exporter with the args the web nodes get."""
    nginx = require("nginx")
    exporter = require("prometheus-nginx-exporter")
    stack = catalogue(shape(2))
    status = Endpoint("127.0.0.1", free_port(), "/stub_status")
    listen = Endpoint("127.0.0.1", free_port(), "/metrics")
    (tmp_path / "logs").mkdir()
    config = tmp_path / "nginx.conf"
    server = "    " + nginx_status_server(status).replace("\n", "\n    ")
    config.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/logs/error.log;\n"
        "events { worker_connections 64; }\n"
        f"http {{\n    client_body_temp_path {tmp_path}/body;\n"
        f"    proxy_temp_path {tmp_path}/proxy;\n    fastcgi_temp_path {tmp_path}/fastcgi;\n"
        f"    uwsgi_temp_path {tmp_path}/uwsgi;\n    scgi_temp_path {tmp_path}/scgi;\n"
        f"{server}\n}}\n"
    )
    with daemon(
        [nginx, "-p", str(tmp_path), "-c", str(config), "-g", "daemon off;"], tmp_path / "nginx.out"
    ):
        wait_for(lambda: get(status.url)[0] == 200, 10, "stub_status")
        args = shlex.split(nginx_exporter_args(status, listen))
        with daemon([exporter, *args], tmp_path / "exporter.log"):
            wait_for(lambda: get(listen.url)[0] == 200, 10, "the exporter")
            first = scrape(stack, "web-1", listen)
            assert set(first) == wanted(stack, "web-1"), (tmp_path / "exporter.log").read_text()
            ((kind, before),) = first.values()
            assert kind == "counter"
            for _ in range(3):
                get(status.url)
            ((_, after),) = scrape(stack, "web-1", listen).values()
            # stub_status counts every request: ours, and the exporter's own reads of it.
            assert after >= before + 3
