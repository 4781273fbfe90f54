"""A load balancer reports ready only once it serves the pair's stored certificate.

`userdata/scripts/report_ready.py` with `--domain` and `--certificate-secret`: when the secret
holds a certificate valid for the domain, the local HTTPS listener, asked with SNI = the domain,
must present exactly that certificate, verified against the trust store and for the name. These
tests serve real TLS on loopback with certificates made here by `cryptography`, and hold the
check to each way a served certificate can be wrong: another name, another chain, self-signed,
another valid certificate for the same name. A first boot (no certificate stored yet) and a
stored certificate no browser would accept (expired, another name) are not required.
"""

from __future__ import annotations

import datetime
import http.server
import json
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from moto.server import ThreadedMotoServer

from lab.certificates import CertificateAuthority, Issued, _pem_key, self_signed
from userdata import cloud_config, load_balancer_config
from userdata.scripts import report_ready

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "userdata" / "scripts" / "report_ready.py"
DOMAIN = "www.example.test"
REGION = "eu-west-1"
SECRET = "web-infra-test/load-balancer/certificate"
PARAMETER = "/web-infra-test/ready/load-balancer-2"


def pem(issued: Issued) -> str:
    return issued.certificate_pem.decode()


def expired(ca: CertificateAuthority, name: str) -> Issued:
    """A certificate `ca` issued for `name` that ended yesterday."""
    fresh = ca.issue([name])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(fresh.certificate.subject)
        .issuer_name(ca.root.certificate.subject)
        .public_key(fresh.key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=90))
        .not_valid_after(now - datetime.timedelta(days=1))
    )
    for extension in fresh.certificate.extensions:
        builder = builder.add_extension(extension.value, critical=extension.critical)
    return Issued(builder.sign(ca.root.key, hashes.SHA256()), fresh.key)


class TlsSite:
    """An HTTPS server on loopback that answers /health 200 and serves one certificate,
    which a test can swap (as site_certificate.py swaps HAProxy's)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._serving = 0
        site = self

        class Wrapped(http.server.ThreadingHTTPServer):
            def get_request(self) -> tuple[socket.socket, Any]:
                raw, address = self.socket.accept()
                return site.context.wrap_socket(raw, server_side=True), address

        self.server = Wrapped(("127.0.0.1", 0), _Health)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, issued: Issued, chain: tuple[Issued, ...] = ()) -> None:
        """From now on, new handshakes get `issued` (followed by `chain`)."""
        self._serving += 1
        certificate = self.folder / f"serving-{self._serving}.pem"
        key = self.folder / f"serving-{self._serving}.key"
        certificate.write_text(pem(issued) + "".join(pem(c) for c in chain))
        key.write_bytes(_pem_key(issued.key))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certificate, key)
        self.context = context

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/health"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[CertificateAuthority, Path]:
    """The CA browsers trust here (Let's Encrypt's stand-in), and its root's file."""
    authority = CertificateAuthority.create("trusted test CA")
    root = tmp_path_factory.mktemp("trust") / "root.pem"
    return authority, authority.write_root(root)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[TlsSite]:
    server = TlsSite(tmp_path)
    yield server
    server.stop()


def served(site: TlsSite, issued: Issued, chain: tuple[Issued, ...] = ()) -> TlsSite:
    site.serve(issued, chain)
    return site


def problem(site: TlsSite, stored: Issued, root: Path) -> str | None:
    return report_ready.certificate_problem("127.0.0.1", site.port, DOMAIN, pem(stored), str(root))


# --- what the check accepts and what it refuses ----------------------------------------------


def test_the_stored_certificate_served_for_the_domain_passes(
    ca: tuple[CertificateAuthority, Path], site: TlsSite
) -> None:
    authority, root = ca
    stored = authority.issue([DOMAIN])
    assert problem(served(site, stored), stored, root) is None


def test_a_self_signed_certificate_for_the_domain_fails(
    ca: tuple[CertificateAuthority, Path], site: TlsSite
) -> None:
    authority, root = ca
    stored = authority.issue([DOMAIN])
    first_boot = self_signed(DOMAIN)
    found = problem(served(site, first_boot), stored, root)
    assert found is not None
    assert "fails verification" in found
    assert f"CN={DOMAIN}" in found, "the message names what was served"


def test_a_certificate_from_another_chain_fails(
    ca: tuple[CertificateAuthority, Path], site: TlsSite
) -> None:
    authority, root = ca
    stored = authority.issue([DOMAIN])
    other = CertificateAuthority.create("untrusted test CA")
    found = problem(served(site, other.issue([DOMAIN]), (other.root,)), stored, root)
    assert found is not None
    assert "fails verification" in found
    assert "untrusted test CA" in found


def test_a_certificate_for_another_name_fails(
    ca: tuple[CertificateAuthority, Path], site: TlsSite
) -> None:
    """Trusted, but made out to another name: the hostname check refuses it, even when the
    stored certificate is this very one (a secret holding another site's certificate)."""
    authority, root = ca
    wrong_name = authority.issue(["other.example.test"])
    found = problem(served(site, wrong_name), wrong_name, root)
    assert found is not None
    assert "fails verification" in found
    assert "other.example.test" in found


def test_another_valid_certificate_for_the_domain_fails(
    ca: tuple[CertificateAuthority, Path], site: TlsSite
) -> None:
    """Trusted and for the domain, but not the pair's: the host would serve its own."""
    authority, root = ca
    stored = authority.issue([DOMAIN])
    another = authority.issue([DOMAIN])
    found = problem(served(site, another), stored, root)
    assert found is not None
    assert "not the stored certificate" in found
    fingerprint = report_ready.fingerprint(another.certificate.public_bytes(Encoding.DER))
    assert fingerprint[:16] in found, "the message names the served certificate's fingerprint"


def test_the_system_trust_store_is_used_without_a_ca_file(site: TlsSite) -> None:
    """Without --ca-file the trust store is the system's, which does not know a test CA."""
    authority = CertificateAuthority.create("not in the system store")
    stored = authority.issue([DOMAIN])
    found = report_ready.certificate_problem(
        "127.0.0.1", served(site, stored).port, DOMAIN, pem(stored)
    )
    assert found is not None
    assert "fails verification" in found


def test_nothing_listening_is_a_problem(ca: tuple[CertificateAuthority, Path]) -> None:
    authority, root = ca
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    found = report_ready.certificate_problem(
        "127.0.0.1", port, DOMAIN, pem(authority.issue([DOMAIN])), str(root)
    )
    assert found is not None
    assert "no TLS handshake" in found


def test_the_leaf_of_a_full_chain_is_what_is_compared(
    ca: tuple[CertificateAuthority, Path],
) -> None:
    authority, _ = ca
    leaf = authority.issue([DOMAIN])
    chain = pem(leaf) + authority.root.certificate_pem.decode()
    assert report_ready.leaf_pem(chain).strip() == pem(leaf).strip()


# --- which stored certificate is required -----------------------------------------------------


class FakeSecrets:
    """Secrets Manager's GetSecretValue, answering what a test sets."""

    def __init__(self, answer: Callable[[], str]) -> None:
        self.answer = answer
        self.calls = 0

    def get_secret_value(self, SecretId: str) -> dict[str, str]:
        assert SecretId == SECRET
        self.calls += 1
        return {"SecretString": self.answer()}


class AwsError(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(f"An error occurred ({code})")
        self.response = {"Error": {"Code": code}}


def stored_secret(issued: Issued) -> Callable[[], str]:
    return lambda: json.dumps({"fullchain": pem(issued), "privkey": _pem_key(issued.key).decode()})


def raises(code: str) -> Callable[[], str]:
    def answer() -> str:
        raise AwsError(code)

    return answer


def check(site: TlsSite, secrets: FakeSecrets, root: Path) -> report_ready.CertificateCheck:
    return report_ready.CertificateCheck(
        site.url, DOMAIN, SECRET, REGION, ca_file=str(root), secret=secrets
    )


def test_no_certificate_stored_yet_requires_none(
    ca: tuple[CertificateAuthority, Path], site: TlsSite
) -> None:
    """A new stack's first boot: the secret has no value; the self-signed one may serve."""
    _, root = ca
    served(site, self_signed(DOMAIN))
    secrets = FakeSecrets(raises("ResourceNotFoundException"))
    assert check(site, secrets, root).problem() is None
    assert secrets.calls == 1


def test_an_unreadable_secret_is_not_ready(
    ca: tuple[CertificateAuthority, Path], site: TlsSite
) -> None:
    """Whether a certificate exists is unknown: not ready (the wait asks again)."""
    _, root = ca
    served(site, self_signed(DOMAIN))
    found = check(site, FakeSecrets(raises("AccessDeniedException")), root).problem()
    assert found is not None
    assert SECRET in found
    assert "AccessDeniedException" in found


def test_a_stored_certificate_is_required(
    ca: tuple[CertificateAuthority, Path], site: TlsSite
) -> None:
    authority, root = ca
    stored = authority.issue([DOMAIN])
    served(site, self_signed(DOMAIN))
    secrets = FakeSecrets(stored_secret(stored))
    assert check(site, secrets, root).problem() is not None
    site.serve(stored)
    assert check(site, secrets, root).problem() is None


@pytest.mark.parametrize("kind", ["expired", "another name", "self-signed"])
def test_a_stored_certificate_no_browser_accepts_is_not_required(
    ca: tuple[CertificateAuthority, Path], site: TlsSite, kind: str
) -> None:
    """site_certificate.py never serves these from the secret; holding a host to one would
    keep it from ever being ready (a domain changed, a certificate that lapsed)."""
    authority, root = ca
    stored = {
        "expired": lambda: expired(authority, DOMAIN),
        "another name": lambda: authority.issue(["old.example.test"]),
        "self-signed": lambda: self_signed(DOMAIN),
    }[kind]()
    served(site, self_signed(DOMAIN))
    assert check(site, FakeSecrets(stored_secret(stored)), root).problem() is None


def test_the_wait_lasts_until_the_stored_certificate_serves(
    ca: tuple[CertificateAuthority, Path], site: TlsSite
) -> None:
    authority, root = ca
    stored = authority.issue([DOMAIN])
    served(site, self_signed(DOMAIN))
    secrets = FakeSecrets(stored_secret(stored))
    assert not report_ready.wait_for_service(
        site.url, 1.0, 0.2, tls_unverified=True, certificate=check(site, secrets, root)
    )
    timer = threading.Timer(0.6, site.serve, (stored,))
    timer.start()
    assert report_ready.wait_for_service(
        site.url, 10.0, 0.2, tls_unverified=True, certificate=check(site, secrets, root)
    )
    timer.join()


# --- the shipped script, as the load balancer's userdata runs it ------------------------------


def test_the_load_balancers_userdata_asks_for_the_pairs_certificate() -> None:
    tls = load_balancer_config.SiteTls(
        domain=DOMAIN,
        acme_email="ops@example.test",
        acme_directory_url="https://acme.example.test/dir",
        secret_id=SECRET,
        region=REGION,
    )
    readiness = cloud_config.ReadinessReport("/web-infra-test/ready", REGION)
    document = load_balancer_config.load_balancer_cloud_config(
        "load-balancer-2", "test.internal", readiness, tls
    )
    step = document["runcmd"][-1]
    assert step[:2] == ["python3", cloud_config.REPORT_READY]
    assert step[step.index("--domain") + 1] == DOMAIN
    assert step[step.index("--certificate-secret") + 1] == SECRET
    assert "--ca-file" not in step, "on AWS: the system's trust store"
    plain = load_balancer_config.load_balancer_cloud_config(
        "load-balancer-1", "test.internal", readiness
    )
    assert "--domain" not in plain["runcmd"][-1], "no domain: as before"


@pytest.fixture(scope="module")
def aws() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def run_script(
    site: TlsSite, aws: str, root: Path, folder: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    (folder / "user-data.txt").write_text("#cloud-config\nhostname: load-balancer-2\n")
    (folder / "instance-id").write_text("i-0123456789abcdef0\n")
    environment = {
        "AWS_ENDPOINT_URL": aws,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "PATH": "/usr/bin:/bin",
    }
    command = [
        *("/usr/bin/python3", str(SCRIPT), "--parameter", PARAMETER, "--region", REGION),
        *("--tls-unverified", "--check-url", site.url, "--timeout", str(timeout)),
        *("--domain", DOMAIN, "--certificate-secret", SECRET, "--ca-file", str(root)),
        *("--userdata-file", str(folder / "user-data.txt")),
        *("--instance-id-file", str(folder / "instance-id")),
    ]
    return subprocess.run(
        command, env=environment, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_script_reports_only_once_the_stored_certificate_serves(
    ca: tuple[CertificateAuthority, Path], site: TlsSite, aws: str, tmp_path: Path
) -> None:
    authority, root = ca
    secrets = boto3.client(
        "secretsmanager",
        region_name=REGION,
        endpoint_url=aws,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    ssm = boto3.client(
        "ssm",
        region_name=REGION,
        endpoint_url=aws,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    secrets.create_secret(Name=SECRET)  # as the program makes it: no value
    served(site, self_signed(DOMAIN))

    first_boot = run_script(site, aws, root, tmp_path, timeout=3)
    assert first_boot.returncode == 0, first_boot.stderr  # nothing stored: as without a domain

    stored = authority.issue([DOMAIN])
    secrets.put_secret_value(SecretId=SECRET, SecretString=stored_secret(stored)())
    ssm.delete_parameter(Name=PARAMETER)
    refused = run_script(site, aws, root, tmp_path, timeout=3)
    assert refused.returncode == 1, refused.stderr
    assert "fails verification" in refused.stderr
    assert f"CN={DOMAIN}" in refused.stderr
    assert "BEGIN" not in refused.stderr, "no certificate or key in the log"
    with pytest.raises(ssm.exceptions.ParameterNotFound):
        ssm.get_parameter(Name=PARAMETER)

    site.serve(stored)
    ready = run_script(site, aws, root, tmp_path, timeout=10)
    assert ready.returncode == 0, ready.stderr
    assert json.loads(ssm.get_parameter(Name=PARAMETER)["Parameter"]["Value"])["instance_id"]
