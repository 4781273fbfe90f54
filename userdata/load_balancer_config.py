"""The cloud-config of a load balancer: HAProxy in front of the web nodes, HTTPS (a
self-signed certificate at first, then with a domain certbot's, shared by the pair through a
secret), and with a pair keepalived and the holder of the shared Elastic IP.

Built from `cloud_config`'s parts, like the web node's (`web_node_config`). It changes when
what runs on a load balancer does; the web node's side never needs to follow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from settings.web_tier import MAX_WEB_NODES, web_node_names
from userdata.cloud_config import (
    HERE,
    HTTP_PORT,
    HTTPS_PORT,
    WEB_PORT,
    ReadinessReport,
    base_document,
    file_entry,
    host_name,
    render_template,
)

SITE_CERTIFICATE_SOURCE = HERE / "scripts" / "site_certificate.py"
ELASTIC_ADDRESS_SOURCE = HERE / "scripts" / "elastic_address.py"

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


def _certbot_files(tls: SiteTls, pair: bool) -> list[dict[str, Any]]:
    """certbot's settings (read by every run, the timer's renewals too), and the unit (with its
    daily timer) that serves the pair's certificate from the secret or obtains one."""
    # HAProxy's certificate, admin socket and marker file: the script's defaults (these paths).
    serving = f" --secret-id {tls.secret_id} --region {tls.region}" if tls.secret_id else ""
    return [
        file_entry(
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
        file_entry(
            f"/etc/systemd/system/{FIRST_CERTIFICATE_UNIT}",
            render_template(
                "site-certificate.service",
                script=SITE_CERTIFICATE,
                serving=serving + (f" --vrrp-state {VRRP_STATE}" if pair else ""),
                cert_name=CERT_NAME,
                domain=tls.domain,
            ),
        ),
        file_entry(f"/etc/systemd/system/{CERTIFICATE_TIMER}", render_template(CERTIFICATE_TIMER)),
        file_entry(ISSUED_ACL, "# issued: see site_certificate.py\n", defer=True),
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
        file_entry(
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
        file_entry(ELASTIC_ADDRESS, ELASTIC_ADDRESS_SOURCE.read_text(), permissions="0755"),
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
    document = base_document(host, zone, packages)
    # Ready once a request through HAProxy reaches a web node: moving the public address to a
    # load balancer that only answers 503 would be an outage. Asked over HTTPS, which serves
    # from the start (HTTP may already redirect), without verifying the certificate: it is
    # made out to the domain, not to 127.0.0.1, and self-signed at first.
    report_script, report_ready = readiness.steps(host, f"https://127.0.0.1:{HTTPS_PORT}/health")
    report_ready[report_ready.index("--check-url") : report_ready.index("--check-url")] = [
        "--tls-unverified"
    ]
    if tls.domain and tls.secret_id:  # and then serve the pair's certificate, once there is one
        report_ready += ["--domain", tls.domain, "--certificate-secret", tls.secret_id]
    certificate_script = file_entry(
        SITE_CERTIFICATE, SITE_CERTIFICATE_SOURCE.read_text(), permissions="0755"
    )
    document["write_files"] = [
        file_entry("/etc/haproxy/haproxy.cfg", haproxy_config(zone, tls), defer=True),
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
