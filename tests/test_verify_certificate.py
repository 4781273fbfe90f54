"""`tools.verify`'s check of the site's certificate, against a local TLS server and a test CA.

The server runs on 127.0.24.203 (the HTTPS lab's network, unused by its hosts) on a free port;
the test CA stands in for Let's Encrypt, `ca_file` for the system's trust store.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from lab.certificates import CertificateAuthority, Issued
from tools import verify

ADDRESS = "127.0.24.203"
DOMAIN = "www.shop.test"


@contextmanager
def tls_server(issued: Issued, folder: Path) -> Iterator[int]:
    """Accepts TLS connections with `issued` until the block ends; yields its port."""
    (folder / "server.pem").write_bytes(issued.certificate_pem + issued.key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "server.pem")
    listener = socket.create_server((ADDRESS, 0))
    listener.settimeout(0.2)
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                with context.wrap_socket(connection, server_side=True) as tls:
                    tls.recv(1)
            except (ssl.SSLError, OSError):
                connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stopping.set()
        thread.join(timeout=5)
        listener.close()


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create("Test ACME CA")


def check(port: int, ca_file: Path | None, name: str = DOMAIN) -> verify.Check:
    return verify.check_certificate(
        f"https://{name}:{port}",
        timeout=5,
        ca_file=str(ca_file) if ca_file else None,
        address=ADDRESS,
    )


def test_a_trusted_certificate_for_the_name_with_time_left_passes(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    with tls_server(ca.issue([DOMAIN], days=60), tmp_path) as port:
        result = check(port, ca.write_root(tmp_path / "root.pem"))
    assert result.ok, result
    assert "issuer Test ACME CA" in result.found
    assert f"names {DOMAIN}" in result.found
    assert "60 days left" in result.found or "59 days left" in result.found


@pytest.mark.parametrize(
    ("names", "days", "trusted", "name", "problem"),
    [
        ([DOMAIN], 5, True, DOMAIN, "5 days left (!)"),
        (["other.shop.test"], 60, True, DOMAIN, "not trusted: Hostname mismatch"),
        ([DOMAIN], 60, False, DOMAIN, "not trusted"),
    ],
)
def test_expiring_misnamed_or_untrusted_certificates_fail(
    ca: CertificateAuthority,
    tmp_path: Path,
    names: list[str],
    days: int,
    trusted: bool,
    name: str,
    problem: str,
) -> None:
    root = ca.write_root(tmp_path / "root.pem") if trusted else None
    with tls_server(ca.issue(names, days=days), tmp_path) as port:
        result = check(port, root, name)
    assert not result.ok
    assert problem in result.found, result.found


def test_nothing_listening_fails_with_the_reason(tmp_path: Path) -> None:
    with socket.create_server((ADDRESS, 0)) as placeholder:
        port = placeholder.getsockname()[1]
    result = check(port, None)
    assert not result.ok
    assert result.found.startswith("no TLS answer")


def test_https_outputs_are_read_and_optional() -> None:
    """Outputs of a stack from before HTTPS (no https keys) still verify; a domain's outputs
    turn the certificate check on."""
    base = {
        "url": "http://lb.example.com",
        "load_balancer_public_ip": "198.51.100.7",
        "load_balancer_public_dns": "lb.example.com",
        "web_private_ips": ["10.0.0.1", "10.0.0.2"],
        "db_primary_endpoint": "p.x.eu-west-1.rds.amazonaws.com:3306",
        "db_replica_endpoint": "r.x.eu-west-1.rds.amazonaws.com:3306",
        "vpc_id": "vpc-1",
        "public_subnet_ids": ["subnet-1"],
        "private_subnet_ids": ["subnet-2"],
        "security_group_ids": {"load_balancer": "sg-1", "web": "sg-2", "database": "sg-3"},
        "alarm_topic_arn": "arn:aws:sns:eu-west-1:123456789012:web-infra-dev-alarms",
        "health_check_alarm_topic_arn": "arn:aws:sns:us-east-1:123456789012:web-infra-alarms",
        "dashboard_url": "https://eu-west-1.console.aws.amazon.com/cloudwatch/home"
        "?region=eu-west-1#dashboards:name=web-infra-dev",
        "health_check_id": "00000000-0000-0000-0000-000000000000",
    }
    assert verify.parse_outputs(json.dumps(base)).https_enabled is False
    outputs = verify.parse_outputs(
        json.dumps({**base, "https_enabled": True, "https_url": f"https://{DOMAIN}"})
    )
    assert (outputs.https_enabled, outputs.https_url) == (True, f"https://{DOMAIN}")
    with pytest.raises(verify.OutputsError, match="https_url: expected an https:// URL"):
        verify.parse_outputs(json.dumps({**base, "https_enabled": True, "https_url": "http://x"}))
