"""`python -m lab.boot.metadata`: EC2's instance metadata service (IMDSv2) for the boot lab.

On EC2 no host holds long-lived keys: botocore finds its instance role's temporary credentials
by itself at http://169.254.169.254 (a session token from `PUT /latest/api/token`, then
`GET /latest/meta-data/iam/security-credentials/` for the role's name and `.../<role>` for
the keys). This server answers the same paths, on the same address, to every container of the
boot lab, so the hosts' scripts and the app get their role's credentials exactly that way.

Each host gets credentials of its own (an access key id per host, `ASIA...` like STS's), kept
with the host's name and role in `credentials.json`; the AWS API stand-ins read that file to
name the host and role behind every call they record (`lab.boot.aws_api`). The server knows
which host asks by the request's source address on the bridge, as EC2 knows the instance by
its network interface.

Like an instance launched with `http_tokens = "required"` (the program's metadata options),
every GET needs a token from the PUT, and a token is good only for the host that asked for it
and until its TTL (1 to 21600 s) runs out. Every request is logged, one JSON line each, so a
test can see that each host's botocore used IMDSv2.

How a container reaches 169.254.169.254: the address sits on the bridge's host side (a /32),
and each container gets an on-link route to it (`write_route`), since its own address is in
169.254.77.0/24 and it has no default route.
"""

from __future__ import annotations

import argparse
import json
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from lab.boot import network
from settings.keys import NAMESPACE
from settings.names import host_role_name, name_prefix

ADDRESS = network.METADATA
PORT = 80
TOKEN_TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"  # noqa: S105 - a header name
TOKEN_HEADER = "X-aws-ec2-metadata-token"  # noqa: S105 - a header name
MAX_TOKEN_TTL = 21600
CREDENTIALS_LIFETIME = timedelta(hours=6)
CREDENTIALS_FILE = "credentials.json"
ROUTE_DROP_IN = Path("etc/systemd/network/10-bridge.network.d/50-instance-metadata.conf")


@dataclass(frozen=True)
class HostIdentity:
    """One host's instance role, as the metadata service hands it out."""

    host: str
    role: str
    """The host's role in the lab ("web", "load-balancer"): the instances' `Role` tag."""
    role_name: str
    """The IAM role's name, what `iam/security-credentials/` lists."""
    address: str
    instance_id: str
    access_key_id: str
    secret_access_key: str
    session_token: str


def role_name(stack: str, host: str) -> str:
    """The IAM role the program gives `host` (a role per host) in the lab's stack."""
    return host_role_name(name_prefix(NAMESPACE, stack), host)


def new_identity(host: str, role: str, stack: str, address: str, instance_id: str) -> HostIdentity:
    """Fresh credentials for `host`: a distinct access key id per host, as STS gives."""
    return HostIdentity(
        host=host,
        role=role,
        role_name=role_name(stack, host),
        address=address,
        instance_id=instance_id,
        access_key_id="ASIA" + secrets.token_hex(8).upper(),
        secret_access_key=secrets.token_urlsafe(30),
        session_token=secrets.token_urlsafe(96),
    )


def save_identities(path: Path, identities: list[HostIdentity]) -> None:
    """Written whole, then moved into place: the stand-ins read it while the lab runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.tmp")
    temporary.write_text(json.dumps([asdict(i) for i in identities], indent=2))
    temporary.chmod(0o600)
    temporary.replace(path)


def load_identities(path: Path) -> list[HostIdentity]:
    if not path.exists():
        return []
    return [HostIdentity(**entry) for entry in json.loads(path.read_text())]


def write_route(layer: Path) -> None:
    """A systemd-networkd drop-in in the container's layer: 169.254.169.254 is on the link."""
    drop_in = layer / ROUTE_DROP_IN
    drop_in.parent.mkdir(parents=True, exist_ok=True)
    drop_in.write_text(
        "# The instance metadata service (EC2 answers it on every instance's link).\n"
        f"[Route]\nDestination={ADDRESS}/32\nScope=link\n"
    )


class MetadataService:
    """The answers, independent of HTTP: (status, content type, body) for a request."""

    def __init__(self, identities: list[HostIdentity], region: str, account: str) -> None:
        self.by_address = {i.address: i for i in identities}
        self.region = region
        self.account = account
        self.tokens: dict[str, tuple[str, float]] = {}  # token -> (address, expiry)
        self.lock = threading.Lock()

    def put_token(self, address: str, ttl_header: str | None) -> tuple[int, str]:
        if address not in self.by_address:
            return 403, "not an instance of this lab"
        try:
            ttl = int(ttl_header or "")
        except ValueError:
            return 400, f"{TOKEN_TTL_HEADER} is required: 1 to {MAX_TOKEN_TTL}"
        if not 1 <= ttl <= MAX_TOKEN_TTL:
            return 400, f"{TOKEN_TTL_HEADER} must be 1 to {MAX_TOKEN_TTL}"
        token = secrets.token_urlsafe(40)
        with self.lock:
            self.tokens[token] = (address, time.monotonic() + ttl)
        return 200, token

    def get(self, address: str, path: str, token: str | None) -> tuple[int, str, str]:
        identity = self.by_address.get(address)
        if identity is None:
            return 403, "text/plain", "not an instance of this lab"
        with self.lock:
            owner, expiry = self.tokens.get(token or "", ("", 0.0))
        if owner != address or time.monotonic() > expiry:
            return 401, "text/plain", "IMDSv2 only: PUT /latest/api/token first"
        answers = self.answers(identity)
        key = path.rstrip("/") if path.rstrip("/") in answers else path
        if key not in answers:
            return 404, "text/plain", "Not Found"
        answer = answers[key]
        if isinstance(answer, dict):
            return 200, "application/json", json.dumps(answer, indent=2)
        return 200, "text/plain", answer

    def answers(self, identity: HostIdentity) -> dict[str, str | dict[str, Any]]:
        now = datetime.now(UTC).replace(microsecond=0)
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        zone = f"{self.region}a"
        meta = "/latest/meta-data"
        profile = f"arn:aws:iam::{self.account}:instance-profile/{identity.role_name}"
        return {
            f"{meta}/instance-id": identity.instance_id,
            f"{meta}/local-ipv4": identity.address,
            f"{meta}/local-hostname": identity.host,
            f"{meta}/placement/region": self.region,
            f"{meta}/placement/availability-zone": zone,
            f"{meta}/iam/info": {
                "Code": "Success",
                "LastUpdated": stamp,
                "InstanceProfileArn": profile,
                "InstanceProfileId": "AIPA" + identity.access_key_id[4:],
            },
            f"{meta}/iam/security-credentials": identity.role_name,
            f"{meta}/iam/security-credentials/{identity.role_name}": {
                "Code": "Success",
                "LastUpdated": stamp,
                "Type": "AWS-HMAC",
                "AccessKeyId": identity.access_key_id,
                "SecretAccessKey": identity.secret_access_key,
                "Token": identity.session_token,
                "Expiration": (now + CREDENTIALS_LIFETIME).strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
            "/latest/dynamic/instance-identity/document": {
                "accountId": self.account,
                "availabilityZone": zone,
                "instanceId": identity.instance_id,
                "privateIp": identity.address,
                "region": self.region,
            },
        }


def make_server(
    address: str, port: int, *, credentials: Path, region: str, account: str, log: Path
) -> ThreadingHTTPServer:
    service = MetadataService(load_identities(credentials), region, account)
    log_lock = threading.Lock()
    loaded = [credentials.stat().st_mtime_ns if credentials.exists() else 0]

    def refresh() -> None:
        """A replaced host gets a new instance and credentials: read the file again when the
        lab has rewritten it (a token stays its address's, as EC2's does its interface's)."""
        stamp = credentials.stat().st_mtime_ns if credentials.exists() else 0
        if stamp != loaded[0]:
            loaded[0] = stamp
            fresh = {i.address: i for i in load_identities(credentials)}
            with service.lock:
                service.by_address = fresh

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, content_type: str, body: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            host = service.by_address.get(self.client_address[0])
            entry = {
                "time": time.time(),
                "address": self.client_address[0],
                "host": host.host if host else None,
                "method": self.command,
                "path": self.path,
                "status": status,
            }
            with log_lock, log.open("a") as output:
                output.write(json.dumps(entry) + "\n")

        def do_PUT(self) -> None:
            refresh()
            if self.path != "/latest/api/token":
                self._answer(404, "text/plain", "Not Found")
                return
            status, body = service.put_token(
                self.client_address[0], self.headers.get(TOKEN_TTL_HEADER)
            )
            self._answer(status, "text/plain", body)

        def do_GET(self) -> None:
            refresh()
            self._answer(
                *service.get(self.client_address[0], self.path, self.headers.get(TOKEN_HEADER))
            )

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the JSON log above has every request

    return ThreadingHTTPServer((address, port), Handler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--address", default=ADDRESS)
    parser.add_argument("--port", type=int, default=PORT)
    parser.add_argument("--credentials", type=Path, required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--account", required=True)
    parser.add_argument("--log", type=Path, required=True)
    args = parser.parse_args()
    make_server(
        args.address,
        args.port,
        credentials=args.credentials,
        region=args.region,
        account=args.account,
        log=args.log,
    ).serve_forever()


if __name__ == "__main__":
    main()
