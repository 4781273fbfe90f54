"""Report that this host serves, at the end of its first boot (like CloudFormation's cfn-signal).

The last step of cloud-init on every host: wait until the host's own service answers locally
(`--check-url`: the app's health through Nginx on a web node, a request through HAProxy on the
load balancer; `--check-command`: a command that exits 0, `database_node.py check` on a database
host), then write to the host's SSM parameter which instance booted which userdata:

    {"instance_id": "i-...", "userdata_sha256": "...", "ready_at": "2026-11-26T03:12:00Z"}

`pulumi up` waits for exactly that report before it points traffic at the host (the gate is
components/readiness_gate.py; the wait itself, components/readiness_wait.py). The digest is
taken over cloud-init's raw copy of the userdata, the same bytes the program hashed. Runs with
the system Python and Ubuntu's python3-boto3; the local lab runs this same file against a
stand-in for AWS (`AWS_ENDPOINT_URL`).

A load balancer with a domain (`--domain`, `--certificate-secret`) is ready only once it serves
the pair's certificate: when the secret holds one that is valid for the domain, the local HTTPS
listener, asked with SNI = the domain, must present exactly that certificate, verified against
the system's trust store (`--ca-file`: another bundle) and for the domain's name. Until it does
(site_certificate.py loads the secret's certificate at boot) the host is not ready, so the
public address never moves to a host that serves a certificate browsers reject. With no
certificate in the secret yet (a new stack's first boot), or one no longer valid for the
domain (expired, another name), what serves is only required to answer, as without a domain.

Exit status: 0 reported, 1 the service never answered (or never served the certificate), 2 the
report could not be written.
"""

import argparse
import datetime
import hashlib
import json
import os
import re
import shlex
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

USERDATA = "/var/lib/cloud/instance/user-data.txt"
INSTANCE_ID = "/var/lib/cloud/data/instance-id"
WRITE_ATTEMPTS = 12  # the instance role may need a minute to be usable after launch
WRITE_DEADLINE_SECONDS = 120  # then the host gives up; its gate says where to look


def log(message: str) -> None:
    print(f"report-ready: {message}", file=sys.stderr, flush=True)


def service_answers(url: str, *, tls_unverified: bool = False) -> bool:
    context = None
    if tls_unverified:
        # The host's own listener on 127.0.0.1: its certificate names the site, not this
        # address, and is self-signed until the CA's arrives. What is checked is that it serves.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=3, context=context) as response:  # noqa: S310
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError):
        return False


def wait_for_service(
    url: str,
    timeout: float,
    interval: float = 2.0,
    *,
    tls_unverified: bool = False,
    certificate: "CertificateCheck | None" = None,
) -> bool:
    """Until `url` answers 2xx and, with `certificate`, serves the pair's certificate."""
    deadline = time.monotonic() + timeout
    problem: str | None = "never asked"
    while time.monotonic() < deadline:
        if service_answers(url, tls_unverified=tls_unverified):
            if certificate is None:
                return True
            found = certificate.problem()
            if found is None:
                log(f"serves the stored certificate for {certificate.domain}")
                return True
            if found != problem:  # each new finding once, not every poll
                log(f"not ready: {found}")
            problem = found
        time.sleep(interval)
    if certificate is not None and problem not in (None, "never asked"):
        log(f"gave up: {problem}")
    return False


# --- the pair's certificate ------------------------------------------------------------------

_CERTIFICATE = re.compile(r"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----")


def leaf_pem(chain: str) -> str:
    """The first certificate of a PEM chain (certbot's fullchain: the site's, then the CA's)."""
    found = _CERTIFICATE.search(chain)
    if found is None:
        raise ValueError("no certificate in the PEM")
    return found.group(0) + "\n"


def fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


@dataclass(frozen=True)
class Described:
    """What a certificate says of itself (read by openssl; nothing secret)."""

    subject: str
    issuer: str
    names: frozenset[str]
    not_after: float
    """Seconds since the epoch."""

    def valid_for(self, domain: str, now: float | None = None) -> bool:
        """Issued by a CA (not by itself), naming `domain`, not expired: one a browser could
        accept, so the only kind a host should be held to."""
        now = time.time() if now is None else now
        return self.subject != self.issuer and domain in self.names and self.not_after > now


def describe(pem: str) -> Described | None:
    result = subprocess.run(  # noqa: S603 - fixed arguments
        [
            *("openssl", "x509", "-noout", "-enddate", "-subject", "-issuer"),
            *("-ext", "subjectAltName", "-nameopt", "RFC2253"),
        ],
        input=pem,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        return None
    fields: dict[str, str] = {}
    names: set[str] = set()
    for line in result.stdout.splitlines():
        key, _, value = line.partition("=")
        if key in ("notAfter", "subject", "issuer"):
            fields[key] = value.strip()
        elif line.startswith(" "):
            names |= {n.strip()[4:] for n in line.split(",") if n.strip().startswith("DNS:")}
    try:
        not_after = ssl.cert_time_to_seconds(fields["notAfter"])
    except (KeyError, ValueError):
        return None
    return Described(
        fields.get("subject", ""), fields.get("issuer", ""), frozenset(names), not_after
    )


def name_of(der: bytes) -> str:
    """A served certificate, for a message: its subject, issuer and fingerprint."""
    described = describe(ssl.DER_cert_to_PEM_cert(der))
    digest = fingerprint(der)[:16]
    if described is None:
        return f"a certificate openssl cannot read (SHA-256 {digest}...)"
    return f"subject {described.subject!r}, issuer {described.issuer!r} (SHA-256 {digest}...)"


def served_certificate(
    host: str, port: int, server_name: str, context: ssl.SSLContext, timeout: float = 3
) -> bytes:
    """The leaf certificate `host:port` presents to a TLS client asking for `server_name`."""
    with (
        socket.create_connection((host, port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        return tls.getpeercert(binary_form=True) or b""


def certificate_problem(
    host: str, port: int, domain: str, stored_chain: str, ca_file: str | None = None
) -> str | None:
    """None if `host:port`, asked for `domain`, presents the leaf of `stored_chain` and it
    verifies (chain to the trust store, the domain's name); else what it serves instead."""
    expected = fingerprint(ssl.PEM_cert_to_DER_cert(leaf_pem(stored_chain)))
    verified = ssl.create_default_context(cafile=ca_file)  # check_hostname, CERT_REQUIRED
    try:
        der = served_certificate(host, port, domain, verified)
    except ssl.SSLCertVerificationError as error:
        unverified = ssl.create_default_context()
        unverified.check_hostname = False
        unverified.verify_mode = ssl.CERT_NONE
        try:
            shown = name_of(served_certificate(host, port, domain, unverified))
        except OSError as again:
            shown = f"a certificate it did not show again ({again})"
        return f"{host}:{port} serves {shown} for {domain}, which fails verification: " + (
            error.verify_message or str(error)
        )
    except OSError as error:
        return f"no TLS handshake with {host}:{port} for {domain}: {error}"
    if fingerprint(der) != expected:
        return (
            f"{host}:{port} serves {name_of(der)} for {domain}, not the stored certificate "
            f"(SHA-256 {expected[:16]}...)"
        )
    return None


class CertificateCheck:
    """This host serves the certificate in the pair's secret, when there is one to serve."""

    def __init__(
        self,
        url: str,
        domain: str,
        secret_id: str,
        region: str,
        *,
        ca_file: str | None = None,
        secret: Any = None,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 443
        self.domain, self.secret_id, self.region, self.ca_file = domain, secret_id, region, ca_file
        self._client = secret
        self._said: set[str] = set()

    def client(self) -> Any:
        if self._client is None:
            import boto3  # noqa: PLC0415 - the host's python3-boto3
            from botocore.config import Config  # noqa: PLC0415

            config = Config(connect_timeout=5, read_timeout=10, retries={"total_max_attempts": 1})
            endpoint = os.environ.get("AWS_ENDPOINT_URL") or None
            self._client = boto3.client(
                "secretsmanager", region_name=self.region, endpoint_url=endpoint, config=config
            )
        return self._client

    def stored(self) -> tuple[str | None, str | None]:
        """(the stored chain, or None when there is none to require; what is wrong, or None).
        The key in the secret is never kept or logged."""
        try:
            value = self.client().get_secret_value(SecretId=self.secret_id)["SecretString"]
        except Exception as error:  # any failure: unknown, so not ready
            code = getattr(error, "response", {}).get("Error", {}).get("Code", "")
            if code == "ResourceNotFoundException":  # no certificate yet (a new stack)
                return None, None
            return None, f"could not read {self.secret_id}: {error}"
        try:
            chain = json.loads(value)["fullchain"]
            leaf = leaf_pem(chain)
        except (ValueError, KeyError, TypeError):
            return None, f"{self.secret_id} holds no certificate chain"
        described = describe(leaf)
        if described is None or not described.valid_for(self.domain):
            said = f"the certificate in {self.secret_id} is not valid for {self.domain}; ignored"
            if said not in self._said:
                self._said.add(said)
                log(said)
            return None, None
        return chain, None

    def problem(self) -> str | None:
        """None once this host may report ready; else why not."""
        chain, error = self.stored()
        if error is not None:
            return error
        if chain is None:
            return None
        return certificate_problem(self.host, self.port, self.domain, chain, self.ca_file)


def wait_for_command(
    command: str, timeout: float, interval: float = 5.0, attempt_timeout: float = 120.0
) -> bool:
    """`--check-command`: run `command` (split like a shell's words, no shell) until it exits
    0, each run at most `attempt_timeout` seconds, all of them within `timeout`."""
    words = shlex.split(command)
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            result = subprocess.run(  # noqa: S603 - the host's own check, from its userdata
                words, timeout=max(min(attempt_timeout, left), 1.0), check=False
            )
            if result.returncode == 0:
                return True
            log(f"{words[0]} ... exited {result.returncode}")
        except subprocess.TimeoutExpired:
            log(f"{words[0]} ... did not finish in {attempt_timeout:g} s")
        except OSError as error:
            log(f"{words[0]} could not run: {error}")
        if time.monotonic() + interval >= deadline:
            return False
        time.sleep(interval)


def build_report(userdata_file: str, instance_id_file: str) -> dict[str, str]:
    with open(userdata_file, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    with open(instance_id_file) as f:
        instance_id = f.read().strip()
    ready_at = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"instance_id": instance_id, "userdata_sha256": digest, "ready_at": ready_at}


def write_report(
    parameter: str,
    region: str,
    report: dict[str, str],
    attempts: int = WRITE_ATTEMPTS,
    deadline_seconds: float = WRITE_DEADLINE_SECONDS,
) -> bool:
    import boto3  # noqa: PLC0415 - only needed once the service answers
    from botocore.config import Config  # noqa: PLC0415

    # Ubuntu 24.04's boto3 reads AWS_ENDPOINT_URL by itself; older ones (the lab's) do not.
    # Short timeouts and no retries of boto's own: the loop below bounds the whole report,
    # so an unreachable endpoint cannot hold up the end of boot for long.
    client = boto3.client(
        "ssm",
        region_name=region,
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
        config=Config(connect_timeout=5, read_timeout=10, retries={"total_max_attempts": 1}),
    )
    deadline = time.monotonic() + deadline_seconds
    for attempt in range(1, attempts + 1):
        if time.monotonic() > deadline:
            break
        try:
            client.put_parameter(
                Name=parameter, Value=json.dumps(report), Type="String", Overwrite=True
            )
            return True
        except Exception as error:  # retried, then reported
            log(f"writing {parameter} failed (attempt {attempt}/{attempts}): {error}")
            time.sleep(min(2**attempt, 10))
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--parameter", required=True, help="SSM parameter of this host")
    parser.add_argument("--region", required=True)
    check = parser.add_mutually_exclusive_group(required=True)
    check.add_argument("--check-url", help="answers 2xx once the host serves")
    check.add_argument("--check-command", help="exits 0 once the host serves (no shell)")
    parser.add_argument(
        "--tls-unverified",
        action="store_true",
        help="an https check URL on this host: do not verify its certificate",
    )
    parser.add_argument(
        "--domain", help="the site's name: serve the pair's certificate for it (with a secret)"
    )
    parser.add_argument("--certificate-secret", help="the pair's certificate (Secrets Manager)")
    parser.add_argument("--ca-file", help="trust these roots instead of the system's")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds to wait for it")
    parser.add_argument(
        "--write-deadline",
        type=float,
        default=WRITE_DEADLINE_SECONDS,
        help="seconds to keep trying to write the report",
    )
    parser.add_argument("--userdata-file", default=USERDATA)
    parser.add_argument("--instance-id-file", default=INSTANCE_ID)
    args = parser.parse_args(argv)
    if bool(args.domain) != bool(args.certificate_secret):
        parser.error("--domain and --certificate-secret go together")

    certificate = None
    if args.domain:
        certificate = CertificateCheck(
            args.check_url, args.domain, args.certificate_secret, args.region, ca_file=args.ca_file
        )
    if args.check_command is not None:
        if not wait_for_command(args.check_command, args.timeout):
            log(f"the check command failed for {args.timeout:g} s; not reporting ready")
            return 1
    elif not wait_for_service(
        args.check_url, args.timeout, tls_unverified=args.tls_unverified, certificate=certificate
    ):
        log(f"{args.check_url} did not answer within {args.timeout:g} s; not reporting ready")
        return 1
    report = build_report(args.userdata_file, args.instance_id_file)
    if not write_report(args.parameter, args.region, report, deadline_seconds=args.write_deadline):
        return 2
    log(f"reported {args.parameter} = {json.dumps(report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
