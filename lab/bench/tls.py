"""What TLS costs at the load balancer: HTTPS next to HTTP through HAProxy, in one run.

A measurement of `python -m lab.benchmark` (lab/bench/runner.py). Every row reads
`GET /api/messages` through HAProxy to all web nodes (the lab's self-signed certificate: the
benchmark's lab has no domain, so HTTP is not redirected and both schemes serve the same site):

- keep-alive, wrk: HTTP and HTTPS on long-lived connections, what TLS costs per request once
  the handshake is paid (record encryption);
- a new connection per request, wrk (`Connection: close`): HTTP, and HTTPS where wrk resumes
  the TLS session on each reconnect (HAProxy's session cache; the row shows the share resumed);
- a new connection per request, a Python client: HTTP, HTTPS with a full handshake every time
  (no session kept), HTTPS resuming its last session. Slower than wrk (the client's own CPU),
  but the same client in all three rows, so their ratios are the handshake's cost.

Each row also gives HAProxy's own CPU per request (from /proc), the steadier figure on a
machine whose cores every process shares. Medians of the rounds; errors summed. The lines
under the table give the ratios HTTPS/HTTP of each pair: what TLS costs, measured in one run.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import ssl
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.bench.measurement import Context
from lab.bench.measurement import Row as TableRow
from lab.bench.wrk import READ_PATH, Wrk
from lab.routing import haproxy_command
from lab.topology import Topology

CLIENT_THREADS = 4


@dataclass
class Row:
    key: str
    label: str
    rps: list[float] = field(default_factory=list)
    p50_ms: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    errors: int = 0
    haproxy_us: list[float] = field(default_factory=list)
    """HAProxy's CPU per request, in microseconds."""
    resumed: list[float] = field(default_factory=list)
    """Share of TLS handshakes that resumed a session (HTTPS rows)."""
    other_cores: list[float] = field(default_factory=list)
    """Cores other processes used during each wrk run (the report's "noise" line)."""

    def median(self, values: list[float]) -> float | None:
        return statistics.median(values) if values else None


def haproxy_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def session_cache(socket_path: Path) -> tuple[int, int]:
    """HAProxy's TLS session cache lookups and misses so far (`show info`)."""
    info = dict(
        line.split(": ", 1)
        for line in haproxy_command(socket_path, "show info").splitlines()
        if ": " in line
    )
    return int(info.get("SslCacheLookups", 0)), int(info.get("SslCacheMisses", 0))


@dataclass
class ClientResult:
    requests: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    handshakes: int = 0
    resumed: int = 0
    seconds: float = 0.0


def connection_per_request(
    address: str, port: int, mode: str, seconds: float, threads: int = CLIENT_THREADS
) -> ClientResult:
    """`mode`: http, https-full (no session kept) or https-resumed (each thread resumes its
    last session). Each request opens its own connection and reads until the server closes."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the lab's self-signed certificate; cost, not trust
    request = f"GET {READ_PATH} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n".encode()
    result = ClientResult()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker() -> None:
        session: ssl.SSLSession | None = None
        mine = ClientResult()
        while time.monotonic() < deadline:
            began = time.perf_counter()
            try:
                with socket.create_connection((address, port), timeout=5) as raw:
                    # As browsers and wrk do: the request must not wait behind the
                    # handshake's last flight for a delayed ACK (Nagle).
                    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    stream: socket.socket = raw
                    if mode != "http":
                        reuse = session if mode == "https-resumed" else None
                        tls = context.wrap_socket(raw, session=reuse)
                        stream = tls
                    stream.sendall(request)
                    answer = b""
                    while chunk := stream.recv(65536):
                        answer += chunk
                    if mode != "http":
                        mine.handshakes += 1
                        mine.resumed += 1 if tls.session_reused else 0
                        session = tls.session
                ok = answer.startswith(b"HTTP/1.1 200")
            except (OSError, ssl.SSLError):
                ok = False
            mine.requests += 1
            mine.errors += 0 if ok else 1
            mine.latencies_ms.append((time.perf_counter() - began) * 1000)
        with lock:
            result.requests += mine.requests
            result.errors += mine.errors
            result.latencies_ms += mine.latencies_ms
            result.handshakes += mine.handshakes
            result.resumed += mine.resumed

    began = time.monotonic()
    workers = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=seconds + 30)
    result.seconds = time.monotonic() - began
    return result


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if ordered else 0.0


def measure(context: Context) -> Tls:
    lab = context.lab
    return Tls(
        measure_rows(
            context.wrk,
            context.topology(),
            lab.instance("load-balancer").daemons[0].pid or 0,
            lab.haproxy_socket(),
            seconds=context.config.write_seconds,
            rounds=context.config.rounds,
            say=context.say,
        )
    )


def measure_rows(
    wrk: Wrk,
    topology: Topology,
    haproxy_pid: int,
    admin_socket: Path,
    *,
    seconds: float,
    rounds: int,
    say: Callable[[str], None],
) -> list[Row]:
    address = topology.public_address
    http_port, https_port = topology.ports.http, topology.ports.https
    http_url = f"http://{address}:{http_port}{READ_PATH}"
    https_url = f"https://{address}:{https_port}{READ_PATH}"
    close = ("Connection: close",)
    rows = [
        Row("http", "HTTP, keep-alive (wrk)"),
        Row("https", "HTTPS, keep-alive (wrk)"),
        Row("http-new", "HTTP, new connection per request (wrk)"),
        Row("https-new", "HTTPS, new connection per request, session resumed (wrk)"),
        Row("py-http", "HTTP, new connection per request (Python client)"),
        Row("py-full", "HTTPS, full handshake per request (Python client)"),
        Row("py-resumed", "HTTPS, session resumed per request (Python client)"),
    ]
    for round_index in range(rounds):
        # Rotated per round, so that drift on the machine hits every row alike.
        shift = round_index % len(rows)
        for row in rows[shift:] + rows[:shift]:
            cpu_before = haproxy_cpu_seconds(haproxy_pid)
            lookups, misses = session_cache(admin_socket)
            if row.key.startswith("py-"):
                mode = {"py-http": "http", "py-full": "https-full", "py-resumed": "https-resumed"}
                port = http_port if row.key == "py-http" else https_port
                client = connection_per_request(address, port, mode[row.key], seconds)
                requests, errors = client.requests, client.errors
                row.rps.append(requests / client.seconds)
                row.p50_ms.append(_percentile(client.latencies_ms, 50))
                row.p99_ms.append(_percentile(client.latencies_ms, 99))
                if client.handshakes:
                    row.resumed.append(client.resumed / client.handshakes)
            else:
                url = https_url if row.key.startswith("https") else http_url
                headers = close if row.key.endswith("-new") else ()
                run = wrk.run(url, seconds, write=False, headers=headers)
                requests, errors = run.requests, run.errors
                row.rps.append(run.rps)
                row.p50_ms.append(run.p50_ms)
                row.p99_ms.append(run.p99_ms)
                if run.other_cores is not None:
                    row.other_cores.append(run.other_cores)
                if row.key == "https-new":
                    after_lookups, after_misses = session_cache(admin_socket)
                    looked = after_lookups - lookups
                    if looked:
                        row.resumed.append(1 - (after_misses - misses) / looked)
            row.errors += errors
            if requests:
                used = haproxy_cpu_seconds(haproxy_pid) - cpu_before
                row.haproxy_us.append(used / requests * 1e6)
            say(
                f"  round {round_index + 1}/{rounds} {row.label}: {row.rps[-1]:.0f} req/s, "
                f"p99 {row.p99_ms[-1]:.1f} ms, {errors} errors"
            )
    return rows


@dataclass
class Tls:
    rows_measured: list[Row]

    def rows(self) -> list[TableRow]:
        return table_rows(self.rows_measured)

    def notes(self) -> list[str]:
        return ratio_lines(self.rows_measured)

    def noise(self) -> list[float]:
        return [value for row in self.rows_measured for value in row.other_cores]

    def as_json(self) -> dict[str, Any]:
        return {"rows": [dataclasses.asdict(row) for row in self.rows_measured]}


def table_rows(rows: Sequence[Row]) -> list[TableRow]:
    """Rows of the main table: label (with HAProxy's CPU and the share resumed), req/s, p50,
    p99, errors."""
    table = []
    for row in rows:
        resumed = row.median(row.resumed)
        note = f"; {resumed:.0%} resumed" if resumed is not None else ""
        cpu = row.median(row.haproxy_us)
        cpu_text = f"; HAProxy {cpu:.0f} us/req" if cpu is not None else ""
        table.append(
            [
                f"tls   {row.label}{cpu_text}{note}",
                f"{row.median(row.rps) or 0:.0f}",
                f"{row.median(row.p50_ms) or 0:.2f}",
                f"{row.median(row.p99_ms) or 0:.2f}",
                str(row.errors),
            ]
        )
    return table


def ratio_lines(rows: Sequence[Row]) -> list[str]:
    """HTTPS/HTTP for each pair measured: req/s and HAProxy's CPU per request."""
    by_key = {row.key: row for row in rows}
    lines = []
    for top, bottom, meaning in (
        ("https", "http", "keep-alive: what encrypting the requests costs"),
        ("https-new", "http-new", "new connections, resumed sessions (wrk)"),
        ("py-resumed", "py-http", "new connections, resumed sessions (Python client)"),
        ("py-full", "py-http", "new connections, full handshakes (Python client)"),
    ):
        if top not in by_key or bottom not in by_key:
            continue  # that pair was not measured (a --quick run, or no HTTPS in this lab)
        a, b = by_key[top], by_key[bottom]
        rps_a, rps_b = a.median(a.rps), b.median(b.rps)
        cpu_a, cpu_b = a.median(a.haproxy_us), b.median(b.haproxy_us)
        if not (rps_a and rps_b and cpu_a is not None and cpu_b is not None):
            continue
        lines.append(
            f"tls   {top}/{bottom} = {rps_a / rps_b:.3f} of the req/s medians, {meaning}; "
            f"HAProxy {cpu_a:.0f} vs {cpu_b:.0f} us of CPU per request"
        )
    return lines
