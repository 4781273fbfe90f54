"""A bounded, steady stream of requests through the load balancer, recording every answer.

What users would see while the lab changes under them (a scale-out, a replacement, a release):
each request opens its own connection, as a new visitor does, so a connection refused or reset
anywhere shows up as a failure. Bounded in time and count; it stops by itself.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from types import TracebackType


@dataclass(frozen=True)
class Answer:
    at: float
    """Seconds since the stream started."""
    method: str
    status: int
    """The HTTP status, or 0 when the request failed without one (refused, reset, timeout)."""
    served_by: str
    release: str
    """The app's `X-App-Release` header, if it sends one (a release under test does)."""
    error: str = ""
    serial: int = 0
    """The serial number of the certificate the server showed (HTTPS), 0 otherwise."""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass
class RequestStream:
    url: str
    """The site's base URL, e.g. http://127.0.10.10/."""
    rate: float = 40.0
    """Requests per second, spread over `workers` threads."""
    workers: int = 2
    write_every: int = 10
    """Every n-th request of a worker is a POST (0: reads only)."""
    max_seconds: float = 180.0
    ca_file: str | None = None
    """HTTPS: the root that verifies the site's certificate (and its name, the URL's host)."""
    address: str | None = None
    """HTTPS: where to connect instead of resolving the URL's host (the lab's public address)."""
    answers: list[Answer] = field(default_factory=list)

    def __post_init__(self) -> None:
        parsed = urllib.parse.urlsplit(self.url)
        self._tls = parsed.scheme == "https"
        self._host = parsed.hostname or ""
        self._port = parsed.port or (443 if self._tls else 80)
        self._context = ssl.create_default_context(cafile=self.ca_file) if self._tls else None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._began = 0.0

    def __enter__(self) -> RequestStream:
        self._began = time.monotonic()
        for worker in range(self.workers):
            thread = threading.Thread(target=self._run, args=(worker,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=15)

    def _run(self, worker: int) -> None:
        period = self.workers / self.rate
        count = 0
        while not self._stopping.is_set():
            started = time.monotonic()
            if started - self._began > self.max_seconds:
                return
            count += 1
            write = self.write_every > 0 and count % self.write_every == 0
            answer = self._request("POST" if write else "GET", worker, count)
            with self._lock:
                self.answers.append(answer)
            self._stopping.wait(max(0.0, period - (time.monotonic() - started)))

    def _connection(self) -> tuple[http.client.HTTPConnection, int]:
        """A new connection, as a new visitor opens one; over HTTPS, the verified certificate's
        serial number too."""
        if self._context is None:
            return http.client.HTTPConnection(self._host, self._port, timeout=10), 0
        raw = socket.create_connection((self.address or self._host, self._port), timeout=10)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as http.client does
        tls = self._context.wrap_socket(raw, server_hostname=self._host)
        certificate = tls.getpeercert() or {}
        connection = http.client.HTTPSConnection(self._host, self._port, timeout=10)
        connection.sock = tls  # already connected, to the address, with the host's name
        return connection, int(str(certificate.get("serialNumber", "0")), 16)

    def _request(self, method: str, worker: int, count: int) -> Answer:
        at = time.monotonic() - self._began
        serial = 0
        connection: http.client.HTTPConnection | None = None
        try:
            connection, serial = self._connection()
            if method == "POST":
                body = f'{{"text": "stream {worker}-{count}"}}'
                connection.request(
                    method,
                    "/api/messages",
                    body=body,
                    headers={"Content-Type": "application/json"},
                )
            else:
                connection.request(method, "/api/messages?limit=1")
            response = connection.getresponse()
            response.read()
            return Answer(
                at,
                method,
                response.status,
                response.getheader("X-Served-By", ""),
                response.getheader("X-App-Release", ""),
                serial=serial,
            )
        except (OSError, http.client.HTTPException) as error:
            return Answer(at, method, 0, "", "", f"{type(error).__name__}: {error}", serial)
        finally:
            if connection is not None:
                connection.close()

    def failures(self) -> list[Answer]:
        with self._lock:
            return [a for a in self.answers if not a.ok]

    def since(self, seconds: float) -> list[Answer]:
        with self._lock:
            return [a for a in self.answers if a.at >= seconds]

    def elapsed(self) -> float:
        return time.monotonic() - self._began
