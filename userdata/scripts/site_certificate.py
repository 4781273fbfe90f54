"""The load balancers' certificate: made, obtained, shared by the pair and swapped on the host.

self-signed: at first boot, so 443 serves at once (for good when the site has no domain).
obtain: make this host serve a CA's certificate for the domain with at least RENEW_DAYS left.
Each attempt looks in the pair's secret first: a certificate there that is newer than the one
served is installed (so a replacement, or the pair's second host, asks the CA for nothing);
only when the one served is still short of RENEW_DAYS, and this host holds the address (the
CA's HTTP-01 request reaches the holder only), does it run certbot. Failures are retried,
waiting longer each time (logged). A host that does not hold the address looks in the secret on
a shorter schedule of its own (its peer's certificate is usually there within seconds), and
stops waiting when keepalived makes it the holder: a pair's hosts start as backups, so the one
promoted a second later asks the CA seconds later (once the Elastic IP followed), not a
minute later.
site-certificate.timer runs it daily too: the renewal check.
deploy: certbot's deploy hook; loads the new certificate into the running HAProxy (runtime API
`set/commit ssl cert`: no reload), switches on the redirect to HTTPS and HSTS, and stores the
certificate and its key in the secret for the other load balancer and the next replacement.

The secret (Secrets Manager, JSON {"fullchain", "privkey"}) is readable by the load balancers'
roles only; nothing here logs its value. Runs with the system Python and Ubuntu's python3-boto3.
"""

import argparse
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Where HAProxy serves from (userdata/cloud_config.py's; the labs pass their own).
CERTIFICATE = "/etc/haproxy/certs/site.pem"
ADMIN_SOCKET = "/run/haproxy/admin.sock"
ISSUED_ACL = "/etc/haproxy/certificate-issued.acl"
SELF_SIGNED_DAYS = 3650
RENEW_DAYS = 30  # certbot's own renewal threshold: a certificate with less is renewed
ISSUED_MARKER = "issued"  # the pattern of HAProxy's `certificate_issued` ACL
MASTER = "MASTER"  # keepalived's state, as elastic_address.py writes it
WATCH_SECONDS = 2.0
"""How often a waiting host that does not hold the address reads keepalived's state (a local
file): how late it notices that it became the holder."""
PROMOTED_GRACE_SECONDS = 5.0
"""How long a host promoted while it waited lets elastic_address.py's hold loop associate the
Elastic IP (at once on promotion, one API call) before it asks the CA, whose HTTP-01 request
goes to the address: a validation that reached the peer would count as a failed one."""
_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")


def log(message: str, *, failure: bool = True) -> None:
    # certbot reports a hook's standard error as errors, so success goes to standard output.
    print(f"site-certificate: {message}", file=sys.stderr if failure else sys.stdout, flush=True)


def write_private(path: Path, data: str) -> None:
    """Atomically, readable by root only (mkstemp: 0600)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".site-", suffix=".pem")
    try:
        with os.fdopen(descriptor, "w") as out:
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def self_signed(name: str, certificate: Path) -> int:
    if certificate.exists():
        log(f"{certificate} exists; keeping it", failure=False)
        return 0
    with tempfile.TemporaryDirectory() as work:
        key, cert = Path(work, "key.pem"), Path(work, "cert.pem")
        options = f"-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -days {SELF_SIGNED_DAYS}"
        result = subprocess.run(  # noqa: S603 - fixed arguments
            [
                *("openssl", "req", "-x509", "-nodes", *options.split(), "-keyout", str(key)),
                *(
                    "-out",
                    str(cert),
                    "-subj",
                    f"/CN={name}",
                    "-addext",
                    f"subjectAltName=DNS:{name}",
                ),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            log(f"openssl could not make a certificate: {result.stderr.strip()}")
            return 1
        write_private(certificate, cert.read_text() + key.read_text())
    log(f"made a self-signed certificate for {name} in {certificate}", failure=False)
    return 0


# --- what a certificate is -------------------------------------------------------------------


@dataclass(frozen=True)
class Certificate:
    """What matters of a PEM (certificate chain, then its key): names, expiry, issuer."""

    pem: str
    names: frozenset[str]
    not_after: float
    """Seconds since the epoch."""
    issued: bool
    """Signed by a CA, not by itself (the first boot's certificate)."""

    def days_left(self) -> float:
        return (self.not_after - time.time()) / 86400

    def good_for(self, domain: str, days: float = 0) -> bool:
        """A CA's certificate for `domain` with at least `days` left."""
        return self.issued and domain in self.names and self.days_left() > days

    def newer_than(self, other: "Certificate | None", domain: str) -> bool:
        """Better to serve than `other`: valid for `domain`, and `other` is not, or ends sooner."""
        if not self.good_for(domain):
            return False
        return other is None or not other.good_for(domain) or self.not_after > other.not_after

    def parts(self) -> tuple[str, str]:
        """The chain and the key."""
        found = _KEY.search(self.pem)
        if found is None:
            raise ValueError("no private key after the certificate")
        return self.pem[: found.start()], self.pem[found.start() :]


def describe(pem: str) -> Certificate | None:
    """The first certificate of `pem`, read by openssl (its key is in the input, never output)."""
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
    if result.returncode != 0 or _KEY.search(pem) is None:
        return None
    fields: dict[str, str] = {}
    names: set[str] = set()
    for line in result.stdout.splitlines():
        key, _, value = line.partition("=")
        if key in ("notAfter", "subject", "issuer"):
            fields[key] = value.strip()
        elif line.startswith(" "):
            names |= {n.strip()[4:] for n in line.split(",") if n.strip().startswith("DNS:")}
    return Certificate(
        pem,
        frozenset(names),
        ssl.cert_time_to_seconds(fields["notAfter"]),
        fields["subject"] != fields["issuer"],
    )


def served(certificate: Path) -> Certificate | None:
    try:
        return describe(certificate.read_text())
    except FileNotFoundError:
        return None


# --- the secret the pair shares --------------------------------------------------------------


class Secret:
    """The certificate and key in Secrets Manager, by the load balancer's role."""

    def __init__(self, secret_id: str, region: str) -> None:
        self.secret_id, self.region = secret_id, region
        self._client: Any = None

    def client(self) -> Any:
        if self._client is None:
            import boto3  # noqa: PLC0415 - the host's python3-boto3
            from botocore.config import Config  # noqa: PLC0415

            config = Config(connect_timeout=5, read_timeout=10, retries={"total_max_attempts": 3})
            endpoint = os.environ.get("AWS_ENDPOINT_URL") or None
            self._client = boto3.client(
                "secretsmanager", region_name=self.region, endpoint_url=endpoint, config=config
            )
        return self._client

    def load(self) -> Certificate | None:
        """The stored certificate, or None (none yet, unreadable: logged without its value)."""
        try:
            value = self.client().get_secret_value(SecretId=self.secret_id)["SecretString"]
            stored = json.loads(value)
            return describe(stored["fullchain"] + stored["privkey"])
        except Exception as error:  # any failure: serve on, retry later
            code = getattr(error, "response", {}).get("Error", {}).get("Code", "")
            if code == "ResourceNotFoundException":
                log(f"no certificate in {self.secret_id} yet", failure=False)
            else:
                log(f"reading {self.secret_id} failed: {error}")
            return None

    def save(self, certificate: Certificate) -> bool:
        fullchain, privkey = certificate.parts()
        try:
            self.client().put_secret_value(
                SecretId=self.secret_id,
                SecretString=json.dumps({"fullchain": fullchain, "privkey": privkey}),
            )
        except Exception as error:  # logged; the next check stores it again
            log(f"storing the certificate in {self.secret_id} failed: {error}")
            return False
        log(f"stored the certificate in {self.secret_id}", failure=False)
        return True


# --- HAProxy ---------------------------------------------------------------------------------


def runtime_api(socket_path: str, command: str) -> str:
    """One command on HAProxy's admin socket; its whole answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(10)
        client.connect(socket_path)
        client.sendall(command.encode())
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    return answer.decode(errors="replace")


@dataclass(frozen=True)
class Site:
    """Where this load balancer serves its certificate, and where the pair keeps it."""

    certificate: Path
    """HAProxy's PEM file (what it loads when it starts)."""
    socket: str
    issued_acl: Path
    secret: Secret | None = None
    vrrp_state: Path | None = None
    """keepalived's state in a pair; None: a single load balancer, which always holds it."""

    def install(self, pem: str, source: str) -> int:
        """Serve `pem` (chain and key): into the running HAProxy, then the redirect and HSTS."""
        try:
            # HAProxy checks the pair before it serves it; open connections finish on the old one.
            created = runtime_api(self.socket, f"set ssl cert {self.certificate} <<\n{pem}\n")
            committed = runtime_api(self.socket, f"commit ssl cert {self.certificate}\n")
            if "Transaction" not in created or "Success!" not in committed:
                runtime_api(self.socket, f"abort ssl cert {self.certificate}\n")
                log(f"HAProxy refused the new certificate: {(created + committed).strip()}")
                return 1
        except OSError as error:
            write_private(self.certificate, pem)
            log(f"HAProxy's runtime API did not answer ({error}); it loads the new one at start")
            return 1
        write_private(self.certificate, pem)  # what HAProxy loads when it starts
        if ISSUED_MARKER not in self.issued_acl.read_text().split():
            with self.issued_acl.open("a") as marker:
                marker.write(f"{ISSUED_MARKER}\n")
            added = runtime_api(self.socket, f"add acl {self.issued_acl} {ISSUED_MARKER}\n")
            if added.strip():
                log(f"HAProxy did not switch on the redirect to HTTPS: {added.strip()}")
                return 1
        log(f"HAProxy serves the certificate from {source} (no restart)", failure=False)
        return 0

    def holds_address(self) -> bool:
        if self.vrrp_state is None:
            return True
        try:
            return self.vrrp_state.read_text().strip() == MASTER
        except FileNotFoundError:  # keepalived has not decided yet
            return False

    def wait(self, seconds: float, *, until_holder: bool) -> bool:
        """Sleep `seconds`; with `until_holder`, end early once this host holds the address
        (True: it does now)."""
        left = seconds
        while left > 0:
            step = min(WATCH_SECONDS, left) if until_holder else left
            time.sleep(step)
            left -= step
            if until_holder and self.holds_address():
                return True
        return False

    def refresh(self, domain: str) -> bool:
        """Serve the better of the secret's and this host's certificate, and keep the better
        in the secret; True if what serves now has at least RENEW_DAYS left."""
        current = served(self.certificate)
        if self.secret is not None:
            stored = self.secret.load()
            if stored is not None and stored.newer_than(current, domain):
                if self.install(stored.pem, self.secret.secret_id) == 0:
                    current = stored
            elif current is not None and current.newer_than(stored, domain):
                self.secret.save(current)  # one the deploy hook could not store
        return current is not None and current.good_for(domain, RENEW_DAYS)


def deploy(site: Site, lineage: str) -> int:
    live = Path(lineage)
    pem = (live / "fullchain.pem").read_text() + (live / "privkey.pem").read_text()
    if site.install(pem, str(live)) != 0:
        return 1
    new = describe(pem)
    if site.secret is None or new is None:
        return 0
    stored = site.secret.load()
    if stored is not None and any(stored.newer_than(new, name) for name in new.names):
        log(f"{site.secret.secret_id} holds a newer certificate; keeping it", failure=False)
        return 0
    return 0 if site.secret.save(new) else 1


def obtain(
    site: Site,
    domain: str,
    command: list[str],
    delays: tuple[float, float, float],
) -> int:
    """Until this host serves a good certificate: the secret's, or else `command`'s (certbot,
    run on the address holder only). `delays`: the holder's first wait after a failed attempt,
    the other host's first wait before it looks in the secret again, and the longest wait;
    each doubles from its first."""
    first_delay, peer_delay, max_delay = delays
    delay, look, attempt = first_delay, peer_delay, 0
    while True:
        if site.refresh(domain):
            log(f"serving a certificate for {domain} with {RENEW_DAYS}+ days left", failure=False)
            return 0
        if site.holds_address():
            attempt += 1
            log(f"asking the ACME CA (attempt {attempt})", failure=False)
            result = subprocess.run(command, check=False)  # noqa: S603 - the unit's own command
            if result.returncode == 0:
                log(f"certificate obtained on attempt {attempt}", failure=False)
                return 0
            log(
                f"ACME attempt {attempt} failed (exit {result.returncode}; see certbot's log); "
                f"serving the current certificate, next attempt in {delay:g} s"
            )
            # The failed-validation limit counts these: the holder's back-off is the CA's.
            site.wait(delay, until_holder=False)
            delay = min(delay * 2, max_delay)
        else:
            log(
                "the peer holds the address and obtains the certificate; looking in the "
                f"secret again in {look:g} s, or sooner if this host becomes the holder",
                failure=False,
            )
            if site.wait(look, until_holder=True):
                log("this host holds the address now", failure=False)
                time.sleep(PROMOTED_GRACE_SECONDS)
            look = min(look * 2, max_delay)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    steps = parser.add_subparsers(dest="step", required=True)
    made = steps.add_parser("self-signed")
    made.add_argument("--name", required=True)
    made.add_argument("--certificate", type=Path, required=True)
    serving = argparse.ArgumentParser(add_help=False)
    serving.add_argument("--certificate", type=Path, default=Path(CERTIFICATE))
    serving.add_argument("--socket", default=ADMIN_SOCKET)
    serving.add_argument("--issued-acl", type=Path, default=Path(ISSUED_ACL))
    serving.add_argument("--secret-id", help="the pair's secret (Secrets Manager)")
    serving.add_argument("--region")
    steps.add_parser("deploy", parents=[serving])
    retry = steps.add_parser("obtain", parents=[serving])
    retry.add_argument("--vrrp-state", type=Path, help="keepalived's state (a pair)")
    retry.add_argument("--first-delay", type=float, default=60.0)
    retry.add_argument("--peer-delay", type=float, default=15.0)
    retry.add_argument("--max-delay", type=float, default=3600.0)
    retry.add_argument("command", nargs=argparse.REMAINDER, help="-- certbot certonly ...")
    args = parser.parse_args(argv)

    if args.step == "self-signed":
        return self_signed(args.name, args.certificate)
    if args.secret_id and not args.region:
        parser.error("--secret-id needs --region")
    site = Site(
        args.certificate,
        args.socket,
        args.issued_acl,
        Secret(args.secret_id, args.region) if args.secret_id else None,
        getattr(args, "vrrp_state", None),
    )
    if args.step == "deploy":
        lineage = os.environ.get("RENEWED_LINEAGE")
        if not lineage:
            log("RENEWED_LINEAGE is not set: run this as certbot's --deploy-hook")
            return 2
        return deploy(site, lineage)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if "--domains" not in command[:-1]:
        parser.error("obtain needs certbot's command after --, with --domains <the site's name>")
    domain = command[command.index("--domains") + 1]
    return obtain(site, domain, command, (args.first_delay, args.peer_delay, args.max_delay))


if __name__ == "__main__":
    sys.exit(main())
