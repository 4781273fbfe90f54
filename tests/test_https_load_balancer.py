"""HTTPS at the load balancer: the rendered HAProxy config and the shipped certificate script,
run for real (HAProxy, openssl), without the lab or an ACME server.

A test CA stands in for Let's Encrypt and a folder laid out like certbot's lineage stands in for
its output, so these tests pin what the deploy hook does to a running HAProxy: the new certificate
serves without a restart, and only then do the redirect to HTTPS and HSTS begin.
Addresses: 127.0.24.201 (this lab network's, unused by the lab's hosts).
"""

from __future__ import annotations

import http.client
import http.server
import itertools
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import tls_peer
from cryptography import x509
from moto import mock_aws
from system_tools import require

from components.rendered_hosts import render_hosts, userdata_for
from lab import processes
from lab.certificates import CertificateAuthority, unverified_context, write_lineage
from lab.localize import rewrite, shipped_files
from settings import load_settings
from userdata import cloud_config, load_balancer_config
from userdata.scripts import elastic_address, site_certificate

DOMAIN = "www.web-infra.test"
ADDRESS = "127.0.24.201"
HTTP, HTTPS, STATS, CHALLENGE = 18080, 18443, 18404, 18402


def render(**raw: object) -> str:
    settings = load_settings(raw, stack="dev")
    return userdata_for(settings, "eu-west-1", "123456789012")[0]


def with_domain(**raw: object) -> str:
    return render(domain=DOMAIN, acmeEmail="ops@web-infra.test", **raw)


def installed_with_domain(**raw: object) -> dict[str, bytes]:
    """Every file load-balancer-1 installs: written by cloud-init or fetched from the artifacts
    bucket (certbot's settings and the certificate's units go there: userdata/shipping.py)."""
    settings = load_settings(
        {"domain": DOMAIN, "acmeEmail": "ops@web-infra.test", **raw}, stack="dev"
    )
    hosts = render_hosts(settings, "eu-west-1", "123456789012")
    fetched = {
        p.file.destination: p.file.content for p in hosts.files if "load-balancer-1" in p.hosts
    }
    return {**shipped_files(hosts.load_balancers["load-balancer-1"]), **fetched}


@dataclass
class Balancer:
    folder: Path
    daemon: processes.Daemon
    script: Path
    certificate: Path
    socket: Path
    issued_acl: Path


def local_haproxy_config(userdata: str, folder: Path) -> tuple[str, Path, Path, Path]:
    text = shipped_files(userdata)["/etc/haproxy/haproxy.cfg"].decode()
    certificate, admin, acl = folder / "site.pem", folder / "admin.sock", folder / "issued.acl"
    replacements = [
        ("    log /dev/log local0\n", ""),
        ("    daemon\n", ""),
        ("    chroot /var/lib/haproxy\n", ""),
        ("    user haproxy\n    group haproxy\n", ""),
        (load_balancer_config.HAPROXY_ADMIN_SOCKET, str(admin)),
        (f"bind *:{cloud_config.HTTP_PORT}\n", f"bind {ADDRESS}:{HTTP}\n"),
        (f"bind *:{cloud_config.HTTPS_PORT} ", f"bind {ADDRESS}:{HTTPS} "),
        ("bind 127.0.0.1:8404", f"bind {ADDRESS}:{STATS}"),
        (load_balancer_config.HAPROXY_CERTIFICATE, str(certificate)),
        # No resolver answers: every web node slot stays empty, HAProxy answers 503 itself.
        ("    parse-resolv-conf\n", f"    nameserver none {ADDRESS}:9\n"),
    ]
    if load_balancer_config.ISSUED_ACL in text:
        replacements += [
            (load_balancer_config.ISSUED_ACL, str(acl)),
            (f"127.0.0.1:{load_balancer_config.ACME_CHALLENGE_PORT}", f"{ADDRESS}:{CHALLENGE}"),
        ]
    return rewrite(text, replacements, what="HAProxy's config"), certificate, admin, acl


def start_balancer(userdata: str, folder: Path) -> Balancer:
    haproxy = require("haproxy")
    require("openssl")
    files = shipped_files(userdata)
    # Offloaded to the artifacts bucket (userdata/shipping.py); the host installs these bytes.
    script = folder / "site_certificate.py"
    script.write_bytes(load_balancer_config.SITE_CERTIFICATE_SOURCE.read_bytes())
    config, certificate, admin, acl = local_haproxy_config(userdata, folder)
    if load_balancer_config.ISSUED_ACL in files:
        acl.write_bytes(files[load_balancer_config.ISSUED_ACL])
    (folder / "haproxy.cfg").write_text(config)
    made = subprocess.run(
        [
            sys.executable,
            str(script),
            "self-signed",
            "--name",
            DOMAIN,
            "--certificate",
            str(certificate),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    checked = subprocess.run(
        [haproxy, "-c", "-f", str(folder / "haproxy.cfg")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    daemon = processes.start(
        "haproxy", [haproxy, "-db", "-f", str(folder / "haproxy.cfg")], folder / "haproxy.log"
    )
    processes.wait_until(
        lambda: processes.port_is_open(ADDRESS, HTTPS), daemon, what="HAProxy's HTTPS port"
    )
    return Balancer(folder, daemon, script, certificate, admin, acl)


@pytest.fixture
def balancer(tmp_path: Path) -> Iterator[Balancer]:
    running = start_balancer(with_domain(), tmp_path)
    try:
        yield running
    finally:
        processes.stop(running.daemon, sig=15)


def tls_context(ca: CertificateAuthority | None, folder: Path) -> ssl.SSLContext:
    if ca is None:
        context = unverified_context()
    else:
        context = ssl.create_default_context(cafile=str(ca.write_root(folder / "root.pem")))
    context.set_alpn_protocols(["h2", "http/1.1"])
    return context


def handshake(context: ssl.SSLContext) -> tuple[dict[str, Any], bytes, str | None]:
    """What a client sees: the verified certificate (if verifying), the raw one, ALPN."""
    return tls_peer.handshake(ADDRESS, HTTPS, DOMAIN, context)[:3]


def https_get(path: str, ca: CertificateAuthority | None, folder: Path) -> http.client.HTTPResponse:
    """GET over HTTPS to the balancer's address, with the site's name in SNI and Host."""
    context = tls_context(ca, folder)
    context.set_alpn_protocols(["http/1.1"])
    with (
        socket.create_connection((ADDRESS, HTTPS), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=DOMAIN) as tls,
    ):
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {DOMAIN}\r\nConnection: close\r\n\r\n".encode())
        response = http.client.HTTPResponse(tls)
        response.begin()
        response.read()
        return response


def http_get(path: str) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection(ADDRESS, HTTP, timeout=5)
    connection.request("GET", path, headers={"Host": DOMAIN})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def deploy(balancer: Balancer, lineage: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            str(balancer.script),
            "deploy",
            "--certificate",
            str(balancer.certificate),
            "--socket",
            str(balancer.socket),
            "--issued-acl",
            str(balancer.issued_acl),
        ],
        env={**os.environ, "RENEWED_LINEAGE": str(lineage)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_before_the_first_certificate_http_serves_and_https_is_self_signed(
    balancer: Balancer,
) -> None:
    """Until the CA's certificate arrives nothing may push users onto a certificate their
    browser rejects: no redirect, no HSTS."""
    _, raw, alpn = handshake(tls_context(None, balancer.folder))
    assert raw, "HTTPS serves a certificate from the start"
    assert alpn == "h2"
    answer = http_get("/api/messages")
    assert answer.status == 503, "served (no web node here), not redirected"
    assert https_get("/", None, balancer.folder).getheader("Strict-Transport-Security") is None
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(ssl.create_default_context())


def test_the_deploy_hook_swaps_the_certificate_without_a_restart_then_redirects(
    balancer: Balancer,
) -> None:
    ca = CertificateAuthority.create("Test ACME CA")
    first = ca.issue([DOMAIN])
    result = deploy(balancer, write_lineage(first, ca, balancer.folder / "live" / "site"))
    assert result.returncode == 0, result.stderr
    assert "PRIVATE KEY" not in result.stderr + result.stdout, "the key is never logged"
    peer, _, alpn = handshake(tls_context(ca, balancer.folder))
    assert tls_peer.serial_number(peer) == first.certificate.serial_number
    assert alpn == "h2", "HTTP/2 by ALPN"
    assert processes.is_running(balancer.daemon), "the same HAProxy process serves it"
    assert oct(balancer.certificate.stat().st_mode & 0o777) == "0o600"

    moved = http_get("/api/messages?limit=1")
    assert moved.status == 301
    assert moved.getheader("Location") == f"https://{DOMAIN}/api/messages?limit=1"
    secure = https_get("/health", ca, balancer.folder)
    assert secure.getheader("Strict-Transport-Security") == "max-age=63072000"

    # A renewal: the next certificate replaces this one, still without a restart.
    second = ca.issue([DOMAIN])
    result = deploy(balancer, write_lineage(second, ca, balancer.folder / "live" / "site"))
    assert result.returncode == 0, result.stderr
    peer, _, _ = handshake(tls_context(ca, balancer.folder))
    assert tls_peer.serial_number(peer) == second.certificate.serial_number
    assert balancer.issued_acl.read_text().split().count("issued") == 1


def test_the_acme_challenge_path_reaches_the_acme_client_over_http(balancer: Balancer) -> None:
    """HTTP-01 is answered through HAProxy, and never redirected (the CA asks over HTTP)."""
    ca = CertificateAuthority.create("Test ACME CA")
    lineage = write_lineage(ca.issue([DOMAIN]), ca, balancer.folder / "live" / "site")
    assert deploy(balancer, lineage).returncode == 0

    class Challenge(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"token." + self.path.rsplit("/", 1)[-1].encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            return

    server = http.server.HTTPServer((ADDRESS, CHALLENGE), Challenge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        connection = http.client.HTTPConnection(ADDRESS, HTTP, timeout=5)
        connection.request("GET", "/.well-known/acme-challenge/abc", headers={"Host": DOMAIN})
        answer = connection.getresponse()
        assert (answer.status, answer.read()) == (200, b"token.abc")
    finally:
        server.shutdown()
        server.server_close()


def test_the_deploy_hook_fails_loudly_when_haproxy_refuses(balancer: Balancer) -> None:
    """A key that does not match its certificate is refused by HAProxy; the hook says so
    (certbot logs it) and the old certificate keeps serving."""
    ca = CertificateAuthority.create("Test ACME CA")
    lineage = write_lineage(ca.issue([DOMAIN]), ca, balancer.folder / "live" / "site")
    (lineage / "privkey.pem").write_bytes(ca.issue([DOMAIN]).key_pem)
    _, before, _ = handshake(tls_context(None, balancer.folder))
    on_disk = balancer.certificate.read_bytes()
    result = deploy(balancer, lineage)
    assert result.returncode == 1
    assert "HAProxy refused the new certificate" in result.stderr
    assert "inconsistencies between private key and certificate" in result.stderr
    _, after, _ = handshake(tls_context(None, balancer.folder))
    assert after == before
    assert balancer.certificate.read_bytes() == on_disk, "HAProxy's next start still works"
    assert http_get("/").status == 503, "still no redirect"


def test_old_tls_versions_are_refused_by_the_server(balancer: Balancer) -> None:
    """TLS 1.0 and 1.1 are refused by HAProxy (the client allows them here, at security
    level 0, so a refusal is the server's protocol-version alert)."""
    openssl = require("openssl")
    for version in ("-tls1", "-tls1_1"):
        assert tls_peer.refuses_protocol(openssl, ADDRESS, HTTPS, DOMAIN, version), version
    result = tls_peer.openssl_client(openssl, ADDRESS, HTTPS, DOMAIN, "-tls1_2")
    assert "Protocol  : TLSv1.2" in result.stdout, result.stdout[-800:]
    assert "ECDHE" in result.stdout, "forward secrecy"


def test_without_a_domain_443_serves_a_self_signed_certificate_and_http_is_not_redirected(
    tmp_path: Path,
) -> None:
    userdata = render()
    assert "certbot" not in cloud_config.parse(userdata)["packages"]
    running = start_balancer(userdata, tmp_path)
    try:
        _, raw, alpn = handshake(tls_context(None, tmp_path))
        assert raw
        assert alpn == "h2"
        assert http_get("/").status == 503, "answered over HTTP, not redirected"
    finally:
        processes.stop(running.daemon, sig=15)


def test_the_load_balancer_userdata_carries_no_key_and_reports_ready_over_https() -> None:
    for userdata in (render(), with_domain()):
        assert "PRIVATE KEY" not in userdata
        step = [str(part) for part in cloud_config.parse(userdata)["runcmd"][-1]]
        assert step[:2] == ["python3", cloud_config.REPORT_READY], "the report stays last"
        assert step[step.index("--check-url") + 1] == "https://127.0.0.1:443/health"
        assert "--tls-unverified" in step


def test_certbot_is_configured_from_the_settings() -> None:
    userdata = with_domain(
        acmeDirectoryUrl="https://acme-staging-v02.api.letsencrypt.org/directory"
    )
    document = cloud_config.parse(userdata)
    assert "certbot" in document["packages"]
    installed = installed_with_domain(
        acmeDirectoryUrl="https://acme-staging-v02.api.letsencrypt.org/directory"
    )
    ini = installed[load_balancer_config.CERTBOT_CONFIG].decode()
    assert "server = https://acme-staging-v02.api.letsencrypt.org/directory\n" in ini
    assert "email = ops@web-infra.test\n" in ini
    assert f"http-01-port = {load_balancer_config.ACME_CHALLENGE_PORT}\n" in ini
    secret = "--secret-id web-infra-dev/load-balancer/certificate --region eu-west-1"
    assert (
        "deploy-hook = /usr/bin/python3 /usr/local/lib/web-infra/site_certificate.py deploy "
        f"{secret}\n"
    ) in ini
    unit = installed[f"/etc/systemd/system/{load_balancer_config.FIRST_CERTIFICATE_UNIT}"]
    assert (
        f"site_certificate.py obtain {secret} --vrrp-state {load_balancer_config.VRRP_STATE} -- "
        f"certbot certonly --cert-name site --domains {DOMAIN}\n"
    ) in unit.decode()
    timer = installed[f"/etc/systemd/system/{load_balancer_config.CERTIFICATE_TIMER}"]
    assert "OnCalendar=daily\n" in timer.decode(), "the daily check runs the same service"
    runcmd = document["runcmd"]
    start = [
        *("systemctl", "enable", "--now", "--no-block"),
        *(load_balancer_config.FIRST_CERTIFICATE_UNIT, load_balancer_config.CERTIFICATE_TIMER),
    ]
    assert runcmd.index(start) > runcmd.index(["systemctl", "restart", "haproxy"])
    single = installed_with_domain(loadBalancerCount=1)
    assert (
        "--vrrp-state"
        not in single[f"/etc/systemd/system/{load_balancer_config.FIRST_CERTIFICATE_UNIT}"].decode()
    )


def test_hsts_follows_its_setting() -> None:
    config = shipped_files(with_domain(hstsMaxAgeSeconds=86400))["/etc/haproxy/haproxy.cfg"]
    assert b'Strict-Transport-Security "max-age=86400"' in config
    config = shipped_files(with_domain(hsts=False))["/etc/haproxy/haproxy.cfg"]
    assert b"Strict-Transport-Security" not in config


# --- the pair's certificate secret ------------------------------------------------------------

REGION = "eu-west-1"
SECRET = "web-infra-dev/load-balancer/certificate"


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("secretsmanager", region_name=REGION)
        client.create_secret(Name=SECRET)  # the program's: no value
        yield client


def store(client: Any, issued: Any, ca: CertificateAuthority) -> None:
    """What a load balancer's deploy hook stores: certbot's fullchain and key."""
    fullchain = (issued.certificate_pem + ca.root.certificate_pem).decode()
    client.put_secret_value(
        SecretId=SECRET,
        SecretString=json.dumps({"fullchain": fullchain, "privkey": issued.key_pem.decode()}),
    )


def stored_serial(client: Any) -> int:
    value = json.loads(client.get_secret_value(SecretId=SECRET)["SecretString"])
    certificate = site_certificate.describe(value["fullchain"] + value["privkey"])
    assert certificate is not None
    return x509.load_pem_x509_certificate(certificate.pem.encode()).serial_number


def served_serial(balancer: Balancer, ca: CertificateAuthority | None) -> int:
    _, raw, _ = handshake(tls_context(ca, balancer.folder))
    return x509.load_der_x509_certificate(raw).serial_number


def site_args(balancer: Balancer, *, pair: str | None = None) -> list[str]:
    """The unit's and the hook's arguments, with this HAProxy's paths; `pair`: keepalived's
    state (MASTER or BACKUP) in a state file, else a single load balancer."""
    args = [
        *("--certificate", str(balancer.certificate), "--socket", str(balancer.socket)),
        *("--issued-acl", str(balancer.issued_acl), "--secret-id", SECRET, "--region", REGION),
    ]
    if pair is not None:
        (balancer.folder / "vrrp-state").write_text(f"{pair}\n")
        args += ["--vrrp-state", str(balancer.folder / "vrrp-state")]
    return args


def certbot(balancer: Balancer) -> tuple[list[str], Path]:
    """A stand-in for certbot that only counts its runs (in a file) and succeeds."""
    runs = balancer.folder / "certbot-runs"
    script = f"open({str(runs)!r}, 'a').write('run\\n')"
    return [sys.executable, "-c", script, "certonly", "--domains", DOMAIN], runs


def obtain(balancer: Balancer, *, pair: str | None = None) -> tuple[int, int]:
    """site-certificate.service's command, once; its exit code and how often it ran certbot."""
    command, runs = certbot(balancer)
    code = site_certificate.main(
        ["obtain", *site_args(balancer, pair=pair), "--first-delay", "0", "--", *command]
    )
    return code, len(runs.read_text().split()) if runs.exists() else 0


def test_the_deploy_hook_stores_the_certificate_and_key_in_the_secret(
    balancer: Balancer, secrets: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    ca = CertificateAuthority.create("Test ACME CA")
    issued = ca.issue([DOMAIN])
    lineage = write_lineage(issued, ca, balancer.folder / "live" / "site")
    monkeypatch.setenv("RENEWED_LINEAGE", str(lineage))
    assert site_certificate.main(["deploy", *site_args(balancer)]) == 0
    value = json.loads(secrets.get_secret_value(SecretId=SECRET)["SecretString"])
    assert value == {
        "fullchain": (lineage / "fullchain.pem").read_text(),
        "privkey": (lineage / "privkey.pem").read_text(),
    }
    assert served_serial(balancer, ca) == issued.certificate.serial_number
    output = capsys.readouterr()
    assert "PRIVATE KEY" not in output.out + output.err, "the key is never logged"
    assert f"stored the certificate in {SECRET}" in output.out


def test_a_new_load_balancer_serves_the_stored_certificate_without_asking_the_ca(
    balancer: Balancer, secrets: Any, capsys: Any
) -> None:
    """A replacement, or the pair's other host: the secret's certificate (60 days left) is
    loaded into the running HAProxy, with the redirect and HSTS, and certbot does not run,
    whether or not this host holds the address."""
    ca = CertificateAuthority.create("Test ACME CA")
    issued = ca.issue([DOMAIN], days=60)
    store(secrets, issued, ca)
    assert obtain(balancer, pair="MASTER") == (0, 0)
    assert served_serial(balancer, ca) == issued.certificate.serial_number
    assert processes.is_running(balancer.daemon), "the same HAProxy, no restart"
    assert http_get("/").status == 301, "the redirect to HTTPS, as after the deploy hook"
    assert https_get("/health", ca, balancer.folder).getheader("Strict-Transport-Security")
    assert obtain(balancer, pair="BACKUP") == (0, 0), "the daily check: nothing new"
    output = capsys.readouterr()
    assert "PRIVATE KEY" not in output.out + output.err


def test_the_backup_waits_for_the_holders_certificate_instead_of_asking_the_ca(
    balancer: Balancer, secrets: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """HTTP-01 reaches the address holder only: the backup never runs certbot, it looks in
    the secret again after each wait (its own schedule, doubling), watching keepalived's
    state meanwhile, and serves the holder's certificate once it is there."""
    ca = CertificateAuthority.create("Test ACME CA")
    issued = ca.issue([DOMAIN])
    slept: list[float] = []
    looks: list[int] = []
    load = site_certificate.Secret.load

    def look(self: site_certificate.Secret) -> Any:
        looks.append(len(slept))
        if len(looks) == 4:  # meanwhile the holder's deploy hook stored its certificate
            store(secrets, issued, ca)
        return load(self)

    monkeypatch.setattr(site_certificate.Secret, "load", look)
    monkeypatch.setattr("userdata.scripts.site_certificate.time.sleep", slept.append)
    command, runs = certbot(balancer)
    code = site_certificate.main(
        [
            "obtain",
            *site_args(balancer, pair="BACKUP"),
            *("--first-delay", "60", "--peer-delay", "3", "--max-delay", "8"),
            *("--", *command),
        ]
    )
    assert code == 0
    assert not runs.exists(), "the backup never asks the CA"
    # Waits of 3, 6 and 8 s (the peer's schedule, not the holder's 60 s), each in slices short
    # enough to notice a promotion.
    waited = [sum(slept[a:b]) for a, b in itertools.pairwise(looks)]
    assert waited == [3, 6, 8]
    assert max(slept) <= site_certificate.WATCH_SECONDS
    assert served_serial(balancer, ca) == issued.certificate.serial_number
    assert "the peer holds the address" in capsys.readouterr().out


def test_a_backup_promoted_while_it_waits_asks_the_ca_at_once(
    balancer: Balancer, secrets: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """Both hosts of a new pair boot as backups and keepalived promotes one a second or two
    later: that host must not sit out its wait before it asks the CA."""
    slept: list[float] = []
    state = balancer.folder / "vrrp-state"

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 2:  # keepalived's notify script: MASTER
            state.write_text("MASTER\n")

    monkeypatch.setattr("userdata.scripts.site_certificate.time.sleep", sleep)
    command, runs = certbot(balancer)
    code = site_certificate.main(
        [
            "obtain",
            *site_args(balancer, pair="BACKUP"),
            *("--first-delay", "60", "--peer-delay", "60", "--", *command),
        ]
    )
    assert code == 0
    assert runs.read_text().split() == ["run"], "certbot ran once, as the holder"
    watch, grace = site_certificate.WATCH_SECONDS, site_certificate.PROMOTED_GRACE_SECONDS
    # Two looks at keepalived's state, then time for the hold loop to move the address.
    assert slept == [watch, watch, grace], f"waited {slept}, not 60 s"
    assert "this host holds the address now" in capsys.readouterr().out


def test_the_holder_asks_the_ca_when_the_secret_has_none_or_it_is_due(
    balancer: Balancer, secrets: Any
) -> None:
    """With nothing in the secret (or nothing readable) the holder, or a single load
    balancer, runs certbot. A stored certificate with under 30 days left is still served at
    once (better than the self-signed one), and the holder runs certbot for a new one."""
    assert obtain(balancer) == (0, 1), "a single load balancer, an empty secret"
    ca = CertificateAuthority.create("Test ACME CA")
    due = ca.issue([DOMAIN], days=20)
    store(secrets, due, ca)
    assert obtain(balancer, pair="MASTER") == (0, 2)
    assert served_serial(balancer, ca) == due.certificate.serial_number


def test_the_secret_keeps_the_newest_certificate_and_only_for_the_domain(
    balancer: Balancer, secrets: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A certificate for another name in the secret is not served. A host that serves a
    newer certificate than the secret's (its deploy hook could not store it) stores it at
    its next check; a deploy hook with an older one leaves the secret's newer one."""
    ca = CertificateAuthority.create("Test ACME CA")
    other = ca.issue(["other.web-infra.test"])
    store(secrets, other, ca)
    site = site_certificate.Site(
        balancer.certificate,
        str(balancer.socket),
        balancer.issued_acl,
        site_certificate.Secret(SECRET, REGION),
    )
    assert not site.refresh(DOMAIN)
    assert served_serial(balancer, None) != other.certificate.serial_number
    assert http_get("/").status == 503, "still self-signed: no redirect"
    newer, older = ca.issue([DOMAIN], days=90), ca.issue([DOMAIN], days=40)
    result = deploy(balancer, write_lineage(newer, ca, balancer.folder / "live" / "site"))
    assert result.returncode == 0, result.stderr  # no --secret-id: served, not stored
    assert stored_serial(secrets) == other.certificate.serial_number
    assert site.refresh(DOMAIN)
    assert stored_serial(secrets) == newer.certificate.serial_number
    monkeypatch.setenv("RENEWED_LINEAGE", str(write_lineage(older, ca, balancer.folder / "o")))
    assert site_certificate.main(["deploy", *site_args(balancer)]) == 0
    assert stored_serial(secrets) == newer.certificate.serial_number


def test_the_script_defaults_are_the_shipped_paths() -> None:
    """The unit and the hook pass only the secret (userdata stays small): the script's
    defaults must be where cloud-init puts HAProxy's files."""
    assert site_certificate.CERTIFICATE == load_balancer_config.HAPROXY_CERTIFICATE
    assert site_certificate.ADMIN_SOCKET == load_balancer_config.HAPROXY_ADMIN_SOCKET
    assert site_certificate.ISSUED_ACL == load_balancer_config.ISSUED_ACL
    assert load_balancer_config.VRRP_STATE == elastic_address.STATE_FILE, "keepalived's state"
