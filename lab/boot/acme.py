"""HTTPS with a domain in the boot lab: Let's Encrypt's test CA (Debian's `pebble`) on the host
side of the bridge, so the load balancers' own userdata obtains, shares and serves the site's
certificate as on AWS (`up --https`).

What stands in for what:

- the ACME CA: pebble at `acme.web-infra.test` (`network.ACME`), its HTTPS listener's
  certificate from the lab's test CA (which the hosts trust as they trust Amazon's CAs);
- the site's DNS name: the lab's dnsmasq answers `www.web-infra.test` with the public address,
  so pebble's HTTP-01 request reaches whichever load balancer holds the Elastic IP (this
  machine's connections to the public address follow it), as Let's Encrypt's does;
- the browsers' trust store: pebble's root (new at each start) is added to every host's
  system trust store next to the lab's CA, as Let's Encrypt's is on Ubuntu, so the hosts verify
  the site's chain exactly as a browser would.

Only the settings change (`with_domain`: the domain, the account's e-mail and the directory
URL); the userdata is the program's for a stack with that domain, byte for byte.
"""

from __future__ import annotations

import dataclasses
import http.client
import itertools
import json
import socket
import ssl
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from lab import checks, processes
from lab.acme import LAB_DOMAIN, LAB_EMAIL
from lab.boot import network
from lab.boot.pki import CertificateAuthority
from lab.certificates import unverified_context
from lab.localize import LabError
from lab.processes import Daemon, program
from settings import Settings

DOMAIN = LAB_DOMAIN
NAME = "acme.web-infra.test"
PORT = 14000
MANAGEMENT_PORT = 15000


def directory_url() -> str:
    return f"https://{NAME}:{PORT}/dir"


def with_domain(settings: Settings) -> Settings:
    """The stack's settings with the lab's domain and its ACME CA."""
    return dataclasses.replace(
        settings, domain=DOMAIN, acme_email=LAB_EMAIL, acme_directory_url=directory_url()
    )


def dns_names() -> dict[str, str]:
    """Full names dnsmasq answers besides the private zone's."""
    return {DOMAIN: network.PUBLIC, NAME: network.ACME}


def issuing_root(folder: Path) -> Path:
    """pebble's root, which signs the site's certificates (fetched at `start`)."""
    return folder / "pebble-root.pem"


def start(folder: Path, authority: CertificateAuthority) -> Daemon:
    """pebble with its files in `folder`, answering on `network.ACME`; its root fetched."""
    folder.mkdir(parents=True, exist_ok=True)
    listener = authority.issue("acme", [NAME], [network.ACME])
    config = {
        "pebble": {
            "listenAddress": f"{network.ACME}:{PORT}",
            "managementListenAddress": f"{network.ACME}:{MANAGEMENT_PORT}",
            "certificate": str(listener.certificate),
            "privateKey": str(listener.key),
            "httpPort": 80,
            "tlsPort": 443,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    (folder / "pebble-config.json").write_text(json.dumps(config, indent=2))
    daemon = processes.start(
        "acme/pebble",
        [
            program("pebble"),
            "-config",
            str(folder / "pebble-config.json"),
            "-dnsserver",
            f"{network.GATEWAY}:53",
        ],
        folder / "pebble.log",
        # Validate at once (not after a random pause of up to 15 s), accept every good nonce.
        environment={"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"},
    )
    processes.wait_until(
        lambda: _fetch_root(folder, authority),
        daemon,
        what=f"pebble on {network.ACME}:{MANAGEMENT_PORT}",
        timeout=30,
    )
    return daemon


def _fetch_root(folder: Path, authority: CertificateAuthority) -> bool:
    context = ssl.create_default_context(cafile=str(authority.certificate_path))
    url = f"https://{network.ACME}:{MANAGEMENT_PORT}/roots/0"
    try:
        with urllib.request.urlopen(url, timeout=5, context=context) as response:
            pem = response.read()
    except OSError:
        return False
    if b"BEGIN CERTIFICATE" not in pem:
        raise LabError(f"pebble's management interface gave no root at {url}")
    issuing_root(folder).write_bytes(pem)
    return True


# --- the site over HTTPS, as a browser asks for it ----------------------------------------------


UNVERIFIED = unverified_context()
"""One for every request (a context is safe to share between threads)."""


@dataclass(frozen=True)
class Answer:
    status: int
    """0: no HTTP answer after the handshake."""
    served_by: str | None
    certificate: bytes
    """The leaf certificate the handshake presented (DER)."""


def get(path: str = "/health", timeout: float = 2.0) -> Answer:
    """One GET on a new connection to the public address's HTTPS port, with SNI and Host the
    site's domain. The certificate is recorded, not verified, so a caller can count what was
    presented; status 0: the handshake passed but no HTTP answer came. No handshake: OSError."""
    with (
        socket.create_connection((network.PUBLIC, 443), timeout=timeout) as raw,
        UNVERIFIED.wrap_socket(raw, server_hostname=DOMAIN) as tls,
    ):
        presented = tls.getpeercert(binary_form=True) or b""
        request = f"GET {path} HTTP/1.1\r\nHost: {DOMAIN}\r\nConnection: close\r\n\r\n"
        tls.sendall(request.encode())
        response = http.client.HTTPResponse(tls)
        try:
            response.begin()
            response.read()
        except (http.client.HTTPException, OSError):
            return Answer(0, None, presented)  # a handshake, but no answer
        return Answer(response.status, response.getheader("X-Served-By"), presented)


def check_rotation(nodes: list[str], timeout: float = 2.0) -> checks.Check:
    """`lab.checks.check_rotation` over HTTPS on the domain: with a CA's certificate, HTTP
    answers every request with a redirect to it."""
    count = 2 * len(nodes)
    expected = f"{count} HTTPS GETs /health: 200 from each of {', '.join(nodes)} twice, in turn"
    answers: list[str] = []
    for _ in range(count):
        try:
            answer = get(timeout=timeout)
        except OSError as error:
            answers.append(f"({error})")
            continue
        answers.append(answer.served_by or "?" if answer.status == 200 else f"[{answer.status}]")
    in_turn = all(a != b for a, b in itertools.pairwise(answers))
    ok = in_turn and sorted(answers) == sorted([*nodes, *nodes])
    return checks.Check("rotation (HTTPS)", expected, " ".join(answers), ok)
