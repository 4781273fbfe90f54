"""HTTPS end to end on the lab (its own network, 127.0.24.0/24, in `test-https`): the load
balancer's rendered cloud-config gets the site's certificate from Let's Encrypt's test CA
(pebble) by HTTP-01 through HAProxy, renews it under traffic without a failed request, and
serves HTTP and a self-signed certificate while the CA is down, without a restart when it is back.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
import tls_peer
from system_tools import require

from lab.certificates import unverified_context
from lab.lab import Lab
from lab.processes import poll
from lab.traffic import RequestStream

LAB = "test-https"
DOMAIN = "www.web-infra.test"


def status() -> dict[str, Any]:
    """What any client learns from the lab: `python -m lab status --json`."""
    result = subprocess.run(
        [sys.executable, "-m", "lab", "--lab", LAB, "status", "--json"],
        capture_output=True,
        text=True,
        # Seconds on an idle machine; minutes when the boot labs' tests share its two cores.
        timeout=240,
        check=True,
    )
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def public_address(lab: Lab) -> tuple[str, int, int]:
    topology = lab.topology()
    return topology.public_address, topology.ports.http, topology.ports.https


def peer(lab: Lab, context: ssl.SSLContext) -> tuple[dict[str, Any], bytes, str | None, str]:
    """A TLS handshake with the public address, SNI the site's name (tls_peer.handshake)."""
    address, _, https = public_address(lab)
    return tls_peer.handshake(address, https, DOMAIN, context)


def verifying(ca_file: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file)
    context.set_alpn_protocols(["h2", "http/1.1"])
    return context


def http_get(lab: Lab, path: str) -> http.client.HTTPResponse:
    address, port, _ = public_address(lab)
    connection = http.client.HTTPConnection(address, port, timeout=5)
    connection.request("GET", path, headers={"Host": DOMAIN})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def https_get(lab: Lab, path: str, ca_file: str) -> http.client.HTTPResponse:
    address, _, port = public_address(lab)
    context = ssl.create_default_context(cafile=ca_file)
    raw = socket.create_connection((address, port), timeout=5)
    connection = http.client.HTTPSConnection(DOMAIN, port, timeout=5)
    connection.sock = context.wrap_socket(raw, server_hostname=DOMAIN)
    connection.request("GET", path)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def wait_for(condition: Any, what: str, timeout: float = 60.0) -> None:
    if poll(condition, timeout, step=0.2) is None:
        raise AssertionError(f"{what} did not happen within {timeout:g} s")


def ca_issued(lab: Lab) -> bool:
    ca_file = lab.status()["ca_file"]
    if not ca_file:
        return False
    try:
        peer(lab, verifying(ca_file))
    except (ssl.SSLError, OSError):
        return False
    return True


def haproxy_pid(lab: Lab) -> int:
    pid = lab.instance("load-balancer").daemons[0].pid
    assert pid
    return pid


@pytest.fixture(scope="class")
def lab() -> Iterator[Lab]:
    for tool in ("haproxy", "nginx", "mariadbd", "dnsmasq", "certbot", "pebble", "openssl"):
        require(tool)
    lab = Lab(LAB)
    lab.https = True
    with lab.running():
        wait_for(lambda: ca_issued(lab), "the certificate from the lab's ACME server")
        yield lab


class TestSiteWithACertificateFromTheAcmeServer:
    def test_status_names_the_https_url_and_the_root_that_verifies_it(self, lab: Lab) -> None:
        current = status()
        assert current["https_url"] == f"https://{DOMAIN}/" or current["https_url"].startswith(
            f"https://{DOMAIN}:"
        )
        certificate, _, _, _ = peer(lab, verifying(current["ca_file"]))  # verifies, name too
        names = [value for kind, value in certificate["subjectAltName"] if kind == "DNS"]
        assert names == [DOMAIN]
        issuer = dict(item[0] for item in certificate["issuer"])
        assert "Pebble" in issuer["commonName"], issuer
        wrong_name = verifying(current["ca_file"])
        address, _, https = public_address(lab)
        with (
            pytest.raises(ssl.SSLCertVerificationError),
            socket.create_connection((address, https), timeout=5) as raw,
        ):
            wrong_name.wrap_socket(raw, server_hostname="other.web-infra.test")

    def test_tls_1_2_and_later_only_h2_and_hsts(self, lab: Lab) -> None:
        ca_file = lab.status()["ca_file"]
        _, _, alpn, version = peer(lab, verifying(ca_file))
        assert alpn == "h2"
        assert version in ("TLSv1.2", "TLSv1.3")
        openssl = require("openssl")
        address, _, https = public_address(lab)
        for old in ("-tls1", "-tls1_1"):
            assert tls_peer.refuses_protocol(openssl, address, https, DOMAIN, old), old
        answer = https_get(lab, "/api/messages?limit=1", ca_file)
        assert answer.status == 200
        assert answer.getheader("Strict-Transport-Security") == "max-age=63072000"
        assert answer.getheader("X-Served-By", "").startswith("web-")

    def test_http_redirects_to_https_except_the_acme_challenge(self, lab: Lab) -> None:
        moved = http_get(lab, "/api/messages?limit=1")
        assert moved.status == 301
        location = urllib.parse.urlsplit(moved.getheader("Location", ""))
        assert (location.scheme, location.hostname) == ("https", DOMAIN)
        assert (location.path, location.query) == ("/api/messages", "limit=1")
        challenge = http_get(lab, "/.well-known/acme-challenge/not-a-token")
        assert challenge.status != 301, "the CA asks over HTTP; certbot answers, not a redirect"

    def test_the_pair_serves_one_certificate_that_only_the_holder_asked_for(self, lab: Lab) -> None:
        """load-balancer-1 (the holder) obtained the certificate from pebble and stored it in
        the secret; load-balancer-2 serves the same one, from the secret, and never ran
        certbot."""
        ca_file = lab.status()["ca_file"]
        wait_for(
            lambda: balancer_serial(lab, "load-balancer-2", ca_file) is not None,
            "load-balancer-2 serving the CA's certificate",
        )
        assert balancer_serial(lab, "load-balancer-2", ca_file) == balancer_serial(
            lab, "load-balancer-1", ca_file
        )
        assert certbot_runs(lab) == {"load-balancer-1": 1, "load-balancer-2": 0}

    def test_a_forced_renewal_under_traffic_swaps_the_certificate_without_a_failure(
        self, lab: Lab
    ) -> None:
        """certbot renews (as its timer would, forced), the deploy hook loads the new certificate
        into the running HAProxy: new connections see the new serial, none fails."""
        ca_file = lab.status()["ca_file"]
        before, _, _, _ = peer(lab, verifying(ca_file))
        pid = haproxy_pid(lab)
        address, _, _ = public_address(lab)
        url = lab.topology().https_url
        with RequestStream(
            url, rate=40, ca_file=ca_file, address=address, max_seconds=60
        ) as stream:
            time.sleep(2)
            lab.renew_certificate()
            renewed_at = stream.elapsed()
            time.sleep(3)
        failures = stream.failures()
        assert not failures, [(a.at, a.status, a.error) for a in failures[:5]]
        serials = {a.serial for a in stream.answers}
        old = tls_peer.serial_number(before)
        new = {a.serial for a in stream.since(renewed_at)}
        assert len(stream.answers) >= 50, "a stream, not a handful of requests"
        assert old in serials
        assert new, "connections after the renewal"
        assert old not in new, "every connection after the renewal sees the new certificate"
        assert haproxy_pid(lab) == pid, "no restart"

    def test_the_daily_check_and_a_replacement_serve_the_renewed_certificate_unasked(
        self, lab: Lab
    ) -> None:
        """The holder's renewal went to the secret too: the other load balancer's daily check
        loads it, and a replacement of the holder (lineage and all) serves it from its first
        minute, with no certbot run: one certificate, asked for once per renewal."""
        ca_file = lab.status()["ca_file"]
        renewed = balancer_serial(lab, "load-balancer-1", ca_file)
        assert renewed is not None
        lab.check_certificate("load-balancer-2")
        assert balancer_serial(lab, "load-balancer-2", ca_file) == renewed
        lab.replace("load-balancer-1")
        assert status()["public_address"]["holder"] == "load-balancer-2"
        wait_for(
            lambda: balancer_serial(lab, "load-balancer-1", ca_file) == renewed,
            "the new load-balancer-1 serving the certificate from the secret",
        )
        assert tls_peer.serial_number(peer(lab, verifying(ca_file))[0]) == renewed
        assert certbot_runs(lab) == {"load-balancer-1": 0, "load-balancer-2": 0}


def balancer_serial(lab: Lab, name: str, ca_file: str) -> int | None:
    """The serial of the CA's certificate load balancer `name` serves on its own address."""
    try:
        certificate = tls_peer.handshake(
            lab.instance(name).address, lab.topology().ports.https, DOMAIN, verifying(ca_file)
        )[0]
    except (ssl.SSLError, OSError):
        return None
    return tls_peer.serial_number(certificate)


def certbot_runs(lab: Lab) -> dict[str, int]:
    """How often each current load balancer's site-certificate loop ran certbot (its log)."""
    return {
        name: (lab.directory(name) / "site-certificate.log").read_text().count("asking the ACME CA")
        for name in ("load-balancer-1", "load-balancer-2")
    }


def test_with_the_acme_server_down_at_boot_the_site_serves_then_gets_its_certificate() -> None:
    """The first boot does not wait for the CA: HTTP serves (no redirect yet) and 443 shows the
    self-signed certificate; once the CA answers, certbot's retries get the certificate and
    HAProxy serves it without a restart."""
    for tool in ("haproxy", "nginx", "mariadbd", "dnsmasq", "certbot", "pebble"):
        require(tool)
    lab = Lab(LAB)
    lab.https = True
    lab.acme_at_boot = False
    with lab.running():
        assert lab.status()["ca_file"] is None
        served = http_get(lab, "/api/messages?limit=1")
        assert served.status == 200, "HTTP serves while there is no trusted certificate"
        certificate = peer(lab, unverified_context())[1]
        decoded = ssl.DER_cert_to_PEM_cert(certificate)
        assert _is_self_signed(decoded)
        pid = haproxy_pid(lab)
        log = lab.directory("load-balancer") / "site-certificate.log"
        wait_for(lambda: "ACME attempt 2 failed" in log.read_text(), "a second failed attempt")

        lab.start_acme()
        wait_for(lambda: ca_issued(lab), "the certificate once the ACME server is back")
        assert haproxy_pid(lab) == pid, "no restart"
        assert http_get(lab, "/").status == 301
        wait_for(lambda: "certificate obtained on attempt" in log.read_text(), "certbot's end")


def _is_self_signed(pem: str) -> bool:
    openssl = require("openssl")
    result = subprocess.run(
        [openssl, "x509", "-noout", "-subject", "-issuer"],
        input=pem,
        capture_output=True,
        text=True,
        check=True,
    )
    subject, issuer = (line.split("=", 1)[1].strip() for line in result.stdout.splitlines())
    return subject == issuer == f"CN = {DOMAIN}"
