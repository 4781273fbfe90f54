"""Pure builders of the `#cloud-config` documents that turn Ubuntu into each kind of host.

Each builder returns the document as a dict; `render` serialises it. Nothing here calls AWS or
reads a Pulumi output: every value is known before `pulumi preview` runs, so a pull request's
preview shows the real configuration diff. Hosts find each other by stable names in the stack's
private Route 53 zone (`web-1.<zone>`, `db-primary.<zone>`, ...), never by addresses AWS assigns.

Files that belong to a package (HAProxy's and Nginx's configs) are written with `defer: true`,
i.e. after cloud-init has installed the packages, so the package cannot overwrite them. The last
step of every host's first boot reports that the host serves (`scripts/report_ready.py`); the
program waits for that report before it sends traffic to the host.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from settings.web_tier import (
    APP_MAX_CONCURRENT_QUERIES,
    GUNICORN_WORKERS,
    MAX_WEB_NODES,
    web_node_names,
)

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
APP_PACKAGE = HERE / "web_app"
REPORT_READY_SOURCE = HERE / "scripts" / "report_ready.py"
SITE_CERTIFICATE_SOURCE = HERE / "scripts" / "site_certificate.py"
ELASTIC_ADDRESS_SOURCE = HERE / "scripts" / "elastic_address.py"

HTTP_PORT = 80  # the load balancer's public ports
HTTPS_PORT = 443
WEB_PORT = 80  # Nginx on every web node; only the load balancer's group may reach it
MYSQL_PORT = 3306
EC2_USERDATA_LIMIT = 16 * 1024  # bytes, before base64

APP_DIR = "/opt/web-app"
# Where the app's package goes: gunicorn imports it from APP_DIR (`web_app:application`).
APP_PACKAGE_DIR = f"{APP_DIR}/web_app"
APP_CONFIG_DIR = "/etc/web-app"
RDS_CA_BUNDLE = f"{APP_CONFIG_DIR}/rds-ca.pem"
RDS_CA_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
RDS_CA_ATTEMPT_SECONDS = 90  # the longest first boot waits for the bundle (then it retries)
REPORT_READY = "/usr/local/lib/web-infra/report_ready.py"
# How long a host's first boot waits for its own service before it gives up reporting ready.
# Fixed here rather than a setting: it is part of every host's userdata.
REPORT_READY_TIMEOUT_SECONDS = 1200

# HTTPS at the load balancer. The certificate and its key are made on a load balancer and kept
# in the pair's secret (SiteTls.secret_id), which only the load balancers' roles may read.
SITE_CERTIFICATE = "/usr/local/lib/web-infra/site_certificate.py"
HAPROXY_CERTIFICATE = "/etc/haproxy/certs/site.pem"
HAPROXY_ADMIN_SOCKET = "/run/haproxy/admin.sock"
ISSUED_ACL = "/etc/haproxy/certificate-issued.acl"
CERTBOT_CONFIG = "/etc/letsencrypt/cli.ini"
CERT_NAME = "site"  # certbot's lineage: /etc/letsencrypt/live/site/
ACME_CHALLENGE_PORT = 8402  # certbot --standalone, on 127.0.0.1, behind HAProxy's port 80
FIRST_CERTIFICATE_UNIT = "site-certificate.service"
CERTIFICATE_TIMER = "site-certificate.timer"  # the same service, daily: the renewal check
VRRP_STATE = "/run/web-infra/vrrp-state"  # keepalived's state, written by elastic_address.py

# A pair of load balancers shares the Elastic IP: keepalived decides who holds it, and
# elastic_address.py moves it (see LoadBalancerPair).
ELASTIC_ADDRESS = "/usr/local/lib/web-infra/elastic_address.py"
KEEPALIVED_TEMPLATE = "/etc/keepalived/keepalived.conf.template"
VIRTUAL_ROUTER_ID = 51  # the pair's VRRP instance; each stack has a VPC of its own
MASTER_MARK = "169.254.255.51/32"  # keepalived's required virtual address, on loopback only
FIRST_PRIORITY, SECOND_PRIORITY = 150, 100

# The report is written with Ubuntu's boto3, so the load balancer needs it too.
LOAD_BALANCER_PACKAGES = ["haproxy", "python3-boto3"]
# The app's runtime comes from Ubuntu, not pip: no PyPI at boot, security updates from apt.
WEB_NODE_PACKAGES = ["nginx", "gunicorn", "python3-pymysql", "python3-boto3", "curl"]


class _Template(string.Template):
    """`@@{name}` placeholders: `$` belongs to Nginx and `%` to HAProxy."""

    delimiter = "@@"


def render_template(name: str, **values: object) -> str:
    return _Template((TEMPLATES / name).read_text()).substitute(values)


def host_name(host: str, zone: str) -> str:
    """The stable DNS name of a host in the stack's private zone."""
    return f"{host}.{zone}"


@dataclass(frozen=True)
class AppDatabase:
    """Where the app finds MySQL and its credentials; all known at preview."""

    zone: str
    database_name: str
    region: str
    secret_name: str
    """The app's own secret in Secrets Manager, {"username", "password"}: the stack's name
    for it, so it is known at preview (components/database_bootstrap.py)."""
    max_replica_lag_seconds: int = 3

    def app_config(self, node_name: str) -> dict[str, Any]:
        return {
            "node_name": node_name,
            "database": {
                "name": self.database_name,
                "primary_host": host_name("db-primary", self.zone),
                "replica_host": host_name("db-replica", self.zone),
                "port": MYSQL_PORT,
                # Short socket timeouts: a hung database fails a request in about a second.
                "connect_timeout_seconds": 1,
                "query_timeout_seconds": 1,
                "max_replica_lag_seconds": self.max_replica_lag_seconds,
                # Per server and worker; twice this stays below gunicorn's threads (12), so
                # some are always free for /health. The settings check the connections this
                # allows against the database class (settings.web_tier.database_connections_needed).
                "max_concurrent_queries": APP_MAX_CONCURRENT_QUERIES,
                "tls_ca_file": RDS_CA_BUNDLE,
            },
            # No password here: the app reads its own user's secret with its instance role
            # when it first needs it (it may not exist yet at boot), and again after MySQL
            # refuses the password, so userdata stays free of secrets and survives rotation.
            "credentials": {
                "source": "secrets-manager",
                "region": self.region,
                "secret_id": self.secret_name,
            },
        }


@dataclass(frozen=True)
class ReadinessReport:
    """Where each host reports that it serves: an SSM parameter per host, known at preview."""

    parameter_prefix: str
    """e.g. /web-infra-dev/ready; the host `web-1` writes /web-infra-dev/ready/web-1."""
    region: str

    def parameter(self, host: str) -> str:
        return f"{self.parameter_prefix}/{host}"

    def steps(self, host: str, check_url: str) -> tuple[dict[str, Any], list[str]]:
        """The script to ship and the runcmd step that runs it, last, on `host`."""
        script = _file(REPORT_READY, REPORT_READY_SOURCE.read_text(), permissions="0755")
        command = [
            "python3",
            REPORT_READY,
            "--parameter",
            self.parameter(host),
            "--region",
            self.region,
            "--check-url",
            check_url,
            "--timeout",
            str(REPORT_READY_TIMEOUT_SECONDS),
        ]
        return script, command


def compressed_file(path: str, data: bytes, permissions: str = "0644") -> dict[str, Any]:
    """A shipped source file, gzip-compressed to stay under EC2's 16 KiB."""
    return {
        "path": path,
        "owner": "root:root",
        "permissions": permissions,
        "encoding": "gz+b64",
        "content": _gzip_b64(data),
    }


def _file(
    path: str, content: str, *, permissions: str = "0644", defer: bool = False
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "path": path,
        "owner": "root:root",
        "permissions": permissions,
        "content": content,
    }
    if defer:
        entry["defer"] = True
    return entry


def _base(hostname: str, zone: str, packages: list[str]) -> dict[str, Any]:
    return {
        "hostname": hostname,
        "fqdn": host_name(hostname, zone),
        "prefer_fqdn_over_hostname": False,
        "package_update": True,
        "package_upgrade": True,
        "packages": packages,
        # A mirror hiccup at first boot (or the Elastic IP replacing the launch address
        # mid-download) must not leave a host without its packages.
        "apt": {"conf": 'Acquire::Retries "5";\n'},
    }


@dataclass(frozen=True)
class SiteTls:
    """HTTPS at the load balancer: with a domain, a certificate from an ACME CA (certbot);
    without one, a self-signed certificate made at first boot. All known at preview."""

    domain: str | None = None
    acme_email: str | None = None
    acme_directory_url: str = ""
    hsts_max_age_seconds: int | None = None
    """None: no Strict-Transport-Security header."""
    secret_id: str = ""
    """The Secrets Manager secret the load balancers share the certificate and its key in
    (the program creates it, the hosts write it); empty: each keeps its own."""
    region: str = ""

    def __post_init__(self) -> None:
        if self.domain and not (self.acme_email and self.acme_directory_url):
            raise ValueError("a domain needs an ACME e-mail and directory URL")
        if self.secret_id and not self.region:
            raise ValueError("the certificate's secret needs its region")


def _https_rules(tls: SiteTls) -> str:
    """The frontend's rules that depend on the domain: none without one (no redirect)."""
    if not tls.domain:
        return ""
    lines = [
        "    # Redirect and HSTS once the CA's certificate serves (site_certificate.py deploy).",
        "    acl acme_challenge path_beg /.well-known/acme-challenge/",
        f"    acl certificate_issued str(issued) -m str -f {ISSUED_ACL}",
        f"    http-request redirect prefix https://{tls.domain} code 301 "
        "if !{ ssl_fc } certificate_issued !acme_challenge",
    ]
    if tls.hsts_max_age_seconds is not None:
        lines.append(
            "    http-after-response set-header Strict-Transport-Security "
            f'"max-age={tls.hsts_max_age_seconds}" if {{ ssl_fc }} certificate_issued'
        )
    lines.append("    use_backend acme if acme_challenge")
    return "\n".join(lines)


def _acme_backend(tls: SiteTls) -> str:
    if not tls.domain:
        return ""
    return f"\nbackend acme\n    server certbot 127.0.0.1:{ACME_CHALLENGE_PORT}  # while it asks\n"


def haproxy_config(zone: str, tls: SiteTls | None = None) -> str:
    """The same file for any node count: a slot for every node the program can make."""
    tls = tls or SiteTls()
    servers = "\n".join(
        f"    server {node} {host_name(node, zone)}:{WEB_PORT}"
        for node in web_node_names(MAX_WEB_NODES)
    )
    return render_template(
        "haproxy.cfg",
        frontend_port=HTTP_PORT,
        https_port=HTTPS_PORT,
        certificate=HAPROXY_CERTIFICATE,
        https_rules=_https_rules(tls),
        servers=servers,
        acme_backend=_acme_backend(tls),
        max_nodes=MAX_WEB_NODES,
    )


def report_ready_last(document: dict[str, Any]) -> dict[str, Any]:
    """`document` with its readiness report moved to the end of runcmd, after whatever was
    merged in: a host reports that it serves once everything of its first boot is done."""
    steps = document.get("runcmd", [])
    report = [s for s in steps if s[:2] == ["python3", REPORT_READY]]
    rest = [s for s in steps if s[:2] != ["python3", REPORT_READY]]
    return {**document, "runcmd": rest + report}


def app_files(folder: Path = APP_PACKAGE) -> dict[str, bytes]:
    """The app's modules by file name, in name order: every `*.py` of its package's folder
    (the repository's, or a release's copy of it)."""
    files = {path.name: path.read_bytes() for path in sorted(folder.glob("*.py"))}
    if "__init__.py" not in files:
        raise ValueError(f"{folder} holds no __init__.py; pass the app's package folder")
    return files


def gunicorn_config() -> str:
    text = render_template("gunicorn.conf.py")
    # The database's connection budget (settings.web_tier.database_connections_needed) counts these.
    if f"\nworkers = {GUNICORN_WORKERS}  " not in text:
        raise ValueError("gunicorn.conf.py must run settings.web_tier.GUNICORN_WORKERS workers")
    return text


def _certbot_files(tls: SiteTls, pair: bool) -> list[dict[str, Any]]:
    """certbot's settings (read by every run, the timer's renewals too), and the unit (with its
    daily timer) that serves the pair's certificate from the secret or obtains one."""
    # HAProxy's certificate, admin socket and marker file: the script's defaults (these paths).
    serving = f" --secret-id {tls.secret_id} --region {tls.region}" if tls.secret_id else ""
    return [
        _file(
            CERTBOT_CONFIG,
            render_template(
                "certbot-cli.ini",
                email=tls.acme_email,
                directory_url=tls.acme_directory_url,
                challenge_port=ACME_CHALLENGE_PORT,
                deploy_hook=f"/usr/bin/python3 {SITE_CERTIFICATE} deploy{serving}",
            ),
            defer=True,  # after the package, whose own cli.ini this replaces
        ),
        _file(
            f"/etc/systemd/system/{FIRST_CERTIFICATE_UNIT}",
            render_template(
                "site-certificate.service",
                script=SITE_CERTIFICATE,
                serving=serving + (f" --vrrp-state {VRRP_STATE}" if pair else ""),
                cert_name=CERT_NAME,
                domain=tls.domain,
            ),
        ),
        _file(f"/etc/systemd/system/{CERTIFICATE_TIMER}", render_template(CERTIFICATE_TIMER)),
        _file(ISSUED_ACL, "# issued: see site_certificate.py\n", defer=True),
    ]


@dataclass(frozen=True)
class LoadBalancerPair:
    """One host's part in the pair that shares the Elastic IP: known at preview."""

    peer: str
    """The other load balancer's host name (`load-balancer-2` for `load-balancer-1`)."""
    first: bool
    """The first takes the address when neither holds it (a higher VRRP priority)."""
    address_parameter: str
    """The SSM parameter holding the Elastic IP's allocation id (the program writes it)."""
    region: str
    namespace: str
    """The stack's CloudWatch namespace: each host reports there whether it holds the address."""


def _pair_files(pair: LoadBalancerPair) -> list[dict[str, Any]]:
    return [
        _file(
            KEEPALIVED_TEMPLATE,
            render_template(
                "keepalived.conf",
                virtual_router_id=VIRTUAL_ROUTER_ID,
                priority=FIRST_PRIORITY if pair.first else SECOND_PRIORITY,
                master_mark=MASTER_MARK,
                notify=f"/usr/bin/python3 {ELASTIC_ADDRESS} notify",
            ),
            defer=True,  # after the package, which owns /etc/keepalived
        ),
        _file(ELASTIC_ADDRESS, ELASTIC_ADDRESS_SOURCE.read_text(), permissions="0755"),
    ]


def _pair_step(host: str, zone: str, pair: LoadBalancerPair) -> list[str]:
    """keepalived's config from the two hosts' names, then keepalived and the address holder
    (the script writes their units: one step, to keep the userdata under EC2's 16 KiB; for the
    same reason the template's path is the script's default, `KEEPALIVED_TEMPLATE`)."""
    return [
        "python3",
        ELASTIC_ADDRESS,
        "--parameter",
        pair.address_parameter,
        "--region",
        pair.region,
        "--namespace",
        pair.namespace,
        "install",
        "--self-name",
        host_name(host, zone),
        "--peer-name",
        host_name(pair.peer, zone),
    ]


def load_balancer_cloud_config(
    host: str,
    zone: str,
    readiness: ReadinessReport,
    tls: SiteTls | None = None,
    pair: LoadBalancerPair | None = None,
) -> dict[str, Any]:
    """HAProxy, round robin over the web nodes that resolve in `zone`, HTTP and HTTPS; with
    `pair`, keepalived and the holder of the shared Elastic IP too."""
    tls = tls or SiteTls()
    packages = [
        *LOAD_BALANCER_PACKAGES,
        *(["keepalived"] if pair else []),
        *(["certbot"] if tls.domain else []),
    ]
    document = _base(host, zone, packages)
    # Ready once a request through HAProxy reaches a web node: moving the public address to a
    # load balancer that only answers 503 would be an outage. Asked over HTTPS, which serves
    # from the start (HTTP may already redirect), without verifying the certificate: it is
    # made out to the domain, not to 127.0.0.1, and self-signed at first.
    report_script, report_ready = readiness.steps(host, f"https://127.0.0.1:{HTTPS_PORT}/health")
    report_ready[report_ready.index("--check-url") : report_ready.index("--check-url")] = [
        "--tls-unverified"
    ]
    certificate_script = _file(
        SITE_CERTIFICATE, SITE_CERTIFICATE_SOURCE.read_text(), permissions="0755"
    )
    document["write_files"] = [
        _file("/etc/haproxy/haproxy.cfg", haproxy_config(zone, tls), defer=True),
        certificate_script,
        *(_certbot_files(tls, pair is not None) if tls.domain else []),
        *(_pair_files(pair) if pair else []),
        report_script,
    ]
    self_signed_name = tls.domain or host_name(host, zone)
    document["runcmd"] = [
        # Port 443 serves from the first minute; with a domain, until the CA's certificate.
        [
            "python3",
            SITE_CERTIFICATE,
            "self-signed",
            "--name",
            self_signed_name,
            "--certificate",
            HAPROXY_CERTIFICATE,
        ],
        ["haproxy", "-c", "-f", "/etc/haproxy/haproxy.cfg"],
        ["systemctl", "enable", "haproxy"],
        ["systemctl", "restart", "haproxy"],
        # keepalived once HAProxy runs: it tracks HAProxy, and a host without it never claims.
        *([_pair_step(host, zone, pair)] if pair else []),
        # In the background: the site serves while the certificate is obtained (a new stack's
        # DNS name reaches this host only once it reports ready and the Elastic IP moves).
        *(
            [
                [
                    "systemctl",
                    "enable",
                    "--now",
                    "--no-block",
                    FIRST_CERTIFICATE_UNIT,
                    CERTIFICATE_TIMER,
                ]
            ]
            if tls.domain
            else []
        ),
        report_ready,
    ]
    return document


def web_node_cloud_config(
    node_name: str,
    database: AppDatabase,
    readiness: ReadinessReport,
    *,
    load_balancer_cidr: str = "127.0.0.1/32",
    app: Mapping[str, bytes] | None = None,
) -> dict[str, Any]:
    """Nginx in front of gunicorn running the app (`app`: its modules by file name, as
    `app_files` reads them; default: the repository's), for the web node `node_name`.

    Nginx believes X-Forwarded-For only from `load_balancer_cidr` (the VPC's range, where
    HAProxy lives); the default trusts no other host.
    """
    nginx = render_template(
        "nginx.conf", node_name=node_name, web_port=WEB_PORT, load_balancer_cidr=load_balancer_cidr
    )
    document = _base(node_name, database.zone, WEB_NODE_PACKAGES)
    # Ready once the app answers its health check through Nginx, as HAProxy will ask it.
    report_script, report_ready = readiness.steps(node_name, f"http://127.0.0.1:{WEB_PORT}/health")
    modules = app_files() if app is None else app
    document["write_files"] = [
        *(_file(f"{APP_PACKAGE_DIR}/{name}", modules[name].decode()) for name in sorted(modules)),
        _file(
            f"{APP_CONFIG_DIR}/config.json",
            json.dumps(database.app_config(node_name), indent=2) + "\n",
        ),
        _file(f"{APP_CONFIG_DIR}/gunicorn.conf.py", gunicorn_config()),
        _file("/etc/systemd/system/web-app.service", render_template("web-app.service")),
        _file(
            "/etc/systemd/system/rds-ca-bundle.service",
            render_template(
                "rds-ca-bundle.service",
                bundle=RDS_CA_BUNDLE,
                url=RDS_CA_URL,
                attempt_seconds=RDS_CA_ATTEMPT_SECONDS,
            ),
        ),
        _file("/etc/nginx/nginx.conf", nginx, defer=True),
        report_script,
    ]
    document["runcmd"] = [
        ["systemctl", "daemon-reload"],
        # Bounded (RDS_CA_ATTEMPT_SECONDS); on failure systemd keeps retrying in the background.
        ["systemctl", "start", "rds-ca-bundle.service"],
        ["systemctl", "enable", "--now", "web-app.service"],
        ["nginx", "-t"],
        ["systemctl", "enable", "nginx"],
        ["systemctl", "restart", "nginx"],
        report_ready,
    ]
    return document


def _gzip_b64(data: bytes) -> str:
    """Deterministic gzip: no timestamp, no file name, OS byte "unknown" on every platform.

    `gzip.compress` lets zlib write the header, whose OS byte differs between Linux and
    macOS; that would change the userdata, and so replace every web node, depending on who
    runs `pulumi up`. The deflate stream itself is zlib's: deploy from machines with the
    same zlib (CI does), since a different implementation (zlib-ng) compresses differently.
    """
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as out:
        out.write(data)
    return base64.b64encode(buffer.getvalue()).decode()


class _LiteralDumper(yaml.SafeDumper):
    """Multi-line strings as `|` blocks, so config files read (and diff) as files."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_LiteralDumper.add_representer(str, _str_representer)


def render(document: dict[str, Any]) -> str:
    """The userdata text: the `#cloud-config` header, then the document as YAML."""
    body = yaml.dump(document, Dumper=_LiteralDumper, sort_keys=False, width=100)
    text = "#cloud-config\n" + body
    if len(text.encode()) > EC2_USERDATA_LIMIT:
        raise ValueError(
            f"userdata is {len(text.encode())} bytes, over EC2's {EC2_USERDATA_LIMIT}; "
            "shrink the shipped files"
        )
    return text


def parse(userdata: str) -> dict[str, Any]:
    """The document back from userdata text (tests and the local lab read it this way)."""
    if not userdata.startswith("#cloud-config\n"):
        raise ValueError("userdata must start with '#cloud-config'")
    document: dict[str, Any] = yaml.safe_load(userdata)
    return document


def file_content(entry: dict[str, Any]) -> bytes:
    """The bytes cloud-init writes for a `write_files` entry."""

    content = str(entry["content"])
    if entry.get("encoding") == "gz+b64":
        return gzip.decompress(base64.b64decode(content))
    return content.encode()
