"""HTTPS in the lab: Let's Encrypt's test CA (Debian's `pebble`) and the load balancer's own
certificate machinery, run from its rendered cloud-config.

On AWS the load balancer makes a self-signed certificate at first boot, starts HAProxy, and
`site-certificate.service` runs certbot (HTTP-01 through HAProxy) until the CA issues the site's
certificate, which certbot's deploy hook loads into the running HAProxy. The lab runs the same
steps from the same userdata: the shipped `site_certificate.py`, the unit's certbot command line
and certbot's `cli.ini`, with only what must differ here changed:

- the ACME directory: pebble on the lab's own address instead of Let's Encrypt, and the root
  that certbot trusts for it (`REQUESTS_CA_BUNDLE`: the lab's CA, which made pebble's listener
  certificate);
- where things live: certbot's folders, HAProxy's certificate, admin socket and marker file in
  the load balancer's folder; certbot's challenge listener on the load balancer's address;
- how long the first-certificate loop waits between attempts (seconds instead of minutes);
- keepalived's state file, in the load balancer's folder: the lab writes it (MASTER on the
  holder of the public address), as keepalived's notify script does on AWS;
- AWS: the pair's certificate secret is the lab's AWS stand-in's (`AWS_ENDPOINT_URL`).

Pebble validates HTTP-01 by resolving the site's domain with the lab's DNS server (dnsmasq has
a record for it: the public address) and connecting to it on the lab's HTTP port, so the
challenge travels the way Let's Encrypt's does: public address, HAProxy, certbot.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import ssl
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from lab.certificates import CertificateAuthority
from lab.localize import LabError, host_root, rewrite, rewrite_path, shipped_files
from lab.processes import program
from lab.topology import Network, Ports
from settings import Settings
from userdata import cloud_config, load_balancer_config

REQUIRED = ("certbot", "pebble")
LAB_DOMAIN = "www.web-infra.test"  # .test: reserved (RFC 2606), never a real site
LAB_EMAIL = "operations@web-infra.test"
ACME = 7  # pebble's address in the lab's network: 127.0.<n>.7
ACME_PORT = 14000
MANAGEMENT_PORT = 15000
# Waits of the first-certificate loop, in the lab: 1 s doubling to 4 s, the holder's after a
# failed attempt and the other host's between looks in the secret (AWS: 60 s and 15 s, to 1 h).
LAB_FIRST_DELAY, LAB_MAX_DELAY = "1", "4"


def lab_settings(settings: Settings) -> Settings:
    """The stack's settings with the lab's domain: HTTPS by ACME, as a site with a domain has
    it. The directory URL stays the stack's; the localized certbot config points at pebble."""
    return dataclasses.replace(settings, domain=LAB_DOMAIN, acme_email=LAB_EMAIL)


def address(network: Network) -> str:
    return network.address(ACME)


def directory_url(network: Network) -> str:
    return f"https://{address(network)}:{ACME_PORT}/dir"


@dataclass(frozen=True)
class AcmeServer:
    """pebble, on the lab's address .7, with its files in `directory`."""

    network: Network
    directory: Path

    @property
    def listener_ca(self) -> Path:
        """The root that made pebble's HTTPS listener's certificate: what certbot trusts."""
        return self.directory / "listener-ca.pem"

    @property
    def issuing_root(self) -> Path:
        """pebble's own root, which signs the site's certificates (new at each start)."""
        return self.directory / "pebble-root.pem"

    def prepare(self, ports: Ports) -> list[str]:
        """Write pebble's config and listener certificate; return its command line."""
        self.directory.mkdir(parents=True, exist_ok=True)
        ca = CertificateAuthority.create("web-infra lab ACME listener CA")
        listener = ca.issue([address(self.network)], days=30)
        ca.write_root(self.listener_ca)
        (self.directory / "listener.pem").write_bytes(listener.certificate_pem)
        key = self.directory / "listener.key"
        key.write_bytes(listener.key_pem)
        key.chmod(0o600)
        config = {
            "pebble": {
                "listenAddress": f"{address(self.network)}:{ACME_PORT}",
                "managementListenAddress": f"{address(self.network)}:{MANAGEMENT_PORT}",
                "certificate": str(self.directory / "listener.pem"),
                "privateKey": str(key),
                # Where it asks for the challenge answers: the site's HTTP port, as the CA does.
                "httpPort": ports.http,
                "tlsPort": ports.https,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
            }
        }
        (self.directory / "pebble-config.json").write_text(json.dumps(config, indent=2))
        return [
            program("pebble"),
            "-config",
            str(self.directory / "pebble-config.json"),
            "-dnsserver",
            f"{self.network.address(53)}:{ports.dns}",
        ]

    @staticmethod
    def environment() -> dict[str, str]:
        # Validate at once (not after a random pause of up to 15 s) and accept every good
        # nonce: the tests measure the lab, not pebble's chaos options.
        return {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}

    def fetch_issuing_root(self) -> Path:
        """pebble's current root, from its management interface, into `issuing_root`."""
        context = ssl.create_default_context(cafile=str(self.listener_ca))
        url = f"https://{address(self.network)}:{MANAGEMENT_PORT}/roots/0"
        with urllib.request.urlopen(url, timeout=5, context=context) as response:
            pem = response.read()
        if b"BEGIN CERTIFICATE" not in pem:
            raise LabError(f"pebble's management interface gave no root at {url}")
        temporary = self.issuing_root.with_suffix(".new")
        temporary.write_bytes(pem)
        temporary.replace(self.issuing_root)
        return self.issuing_root

    def answers(self) -> bool:
        try:
            self.fetch_issuing_root()
        except (OSError, LabError):
            return False
        return True


@dataclass(frozen=True)
class CertificateSteps:
    """The load balancer's certificate steps, localized: commands and their environment."""

    self_signed: list[str]
    obtain: list[str]
    """The first-certificate loop (site-certificate.service's ExecStart)."""
    renew: list[str]
    """What certbot.timer runs, forced: `certbot renew --force-renewal`."""
    environment: dict[str, str]
    certificate: Path
    """HAProxy's PEM file."""
    issued_acl: Path
    vrrp_state: Path | None = None
    """keepalived's state file in a pair (the lab writes it); None: a single load balancer."""


def localize(
    userdata: str,
    directory: Path,
    balancer_address: str,
    network: Network,
    trust_root: Path,
) -> CertificateSteps:
    """The certificate steps of the load balancer's userdata, for a load balancer that lives in
    `directory` on `balancer_address`. Writes certbot's config and the marker file there."""
    # Written by cloud-init, or installed from the artifacts bucket by the host's first runcmd
    # step (Lab._fetch_files): certbot's settings and the certificate's units go there.
    files = shipped_files(userdata)
    for path in (
        load_balancer_config.CERTBOT_CONFIG,
        f"/etc/systemd/system/{load_balancer_config.FIRST_CERTIFICATE_UNIT}",
        f"/etc/systemd/system/{load_balancer_config.CERTIFICATE_TIMER}",
    ):
        fetched = host_root(directory) / path.lstrip("/")
        if path not in files and fetched.exists():
            files[path] = fetched.read_bytes()
    document = cloud_config.parse(userdata)
    script = host_root(directory) / load_balancer_config.SITE_CERTIFICATE.lstrip("/")
    if not script.exists():
        raise LabError(f"{script} was not installed; run the host's fetch step first")
    paths = [
        (load_balancer_config.SITE_CERTIFICATE, str(script)),
        (load_balancer_config.HAPROXY_CERTIFICATE, str(directory / "certs" / "site.pem")),
        (load_balancer_config.HAPROXY_ADMIN_SOCKET, str(directory / "admin.sock")),
        (load_balancer_config.ISSUED_ACL, str(directory / "certificate-issued.acl")),
    ]
    steps = [[str(part) for part in step] for step in document["runcmd"]]
    made = [
        s
        for s in steps
        if s[:3] == ["python3", load_balancer_config.SITE_CERTIFICATE, "self-signed"]
    ]
    if len(made) != 1:
        raise LabError("the userdata no longer makes a self-signed certificate once; update lab")
    self_signed = ["/usr/bin/python3", *(rewrite_path(p, paths) for p in made[0][1:])]

    unit_path = f"/etc/systemd/system/{load_balancer_config.FIRST_CERTIFICATE_UNIT}"
    if unit_path not in files:  # no domain: the self-signed certificate is the certificate
        return CertificateSteps(self_signed, [], [], {}, directory / "certs" / "site.pem", Path())
    issued_acl = directory / "certificate-issued.acl"
    # The script's defaults are the shipped paths (load_balancer_config's): here, the folder's.
    serving = [
        *("--certificate", str(directory / "certs" / "site.pem")),
        *("--socket", str(directory / "admin.sock")),
        *("--issued-acl", str(issued_acl)),
    ]
    if not issued_acl.exists():  # at first boot only: later, the deploy hook's marker stays
        issued_acl.write_bytes(files[load_balancer_config.ISSUED_ACL])

    config = directory / "certbot" / "cli.ini"
    config.parent.mkdir(parents=True, exist_ok=True)
    certbot_state = directory / "certbot"
    ini = rewrite(
        files[load_balancer_config.CERTBOT_CONFIG].decode(),
        [
            (
                f"server = {_shipped_server(files)}\n",
                f"server = {directory_url(network)}\n",
            ),
            ("http-01-address = 127.0.0.1\n", f"http-01-address = {balancer_address}\n"),
            (
                f"/usr/bin/python3 {load_balancer_config.SITE_CERTIFICATE} deploy",
                f"/usr/bin/python3 {script} deploy {' '.join(serving)}",
            ),
        ],
        what="certbot's cli.ini",
    )
    # certbot's own folders (/etc/letsencrypt, /var/lib/letsencrypt, /var/log/letsencrypt).
    ini += "".join(
        f"{key} = {certbot_state / name}\n"
        for key, name in (("config-dir", "etc"), ("work-dir", "lib"), ("logs-dir", "log"))
    )
    config.write_text(ini)

    unit = files[unit_path].decode()
    exec_start = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    if len(exec_start) != 1:
        raise LabError(f"{unit_path} has no single ExecStart; update lab/acme.py")
    command = shlex.split(exec_start[0].removeprefix("ExecStart="))
    if command[1:3] != [load_balancer_config.SITE_CERTIFICATE, "obtain"] or "--" not in command:
        raise LabError(f"{unit_path} no longer runs `site_certificate.py obtain ... -- certbot`")
    separator = command.index("--")
    if command[separator + 1] != "certbot":
        raise LabError(f"{unit_path} no longer runs certbot after `--`")
    vrrp_state = directory / "vrrp-state"
    options = [
        str(vrrp_state) if option == load_balancer_config.VRRP_STATE else option
        for option in command[3:separator]
    ]
    obtain = [
        command[0],
        str(script),
        "obtain",
        *serving,
        *options,
        "--first-delay",
        LAB_FIRST_DELAY,
        "--peer-delay",
        LAB_FIRST_DELAY,
        "--max-delay",
        LAB_MAX_DELAY,
        "--",
        program("certbot"),
        "--config",
        str(config),
        *command[separator + 2 :],
    ]
    renew = [
        program("certbot"),
        "--config",
        str(config),
        "renew",
        "--no-random-sleep-on-renew",
        "--force-renewal",
    ]
    # The only trust change: certbot (requests) trusts the lab's ACME listener.
    environment = {"REQUESTS_CA_BUNDLE": str(trust_root)}
    return CertificateSteps(
        self_signed,
        obtain,
        renew,
        environment,
        directory / "certs" / "site.pem",
        directory / "certificate-issued.acl",
        vrrp_state if load_balancer_config.VRRP_STATE in command else None,
    )


def _shipped_server(files: dict[str, bytes]) -> str:
    for line in files[load_balancer_config.CERTBOT_CONFIG].decode().splitlines():
        if line.startswith("server = "):
            return line.removeprefix("server = ")
    raise LabError("certbot's cli.ini names no ACME server; update lab/acme.py")


def ports_wanted(
    network: Network, ports: Ports, load_balancers: int, *, https: bool
) -> list[tuple[str, int, str]]:
    """The addresses and ports HTTPS takes in the lab, checked free before it starts."""
    wanted = [(network.public, ports.https, "the public address (HTTPS)")]
    for generation in range(1, load_balancers + 1):
        load_balancer = network.load_balancer(generation)
        wanted.append((load_balancer, ports.https, f"load-balancer-{generation} (HTTPS)"))
        if https:
            wanted.append(
                (load_balancer, load_balancer_config.ACME_CHALLENGE_PORT, "certbot's challenges")
            )
    if https:
        wanted += [
            (address(network), ACME_PORT, "the ACME server"),
            (address(network), MANAGEMENT_PORT, "the ACME server's management"),
        ]
    return wanted


def run_step(command: list[str], log: Path, environment: dict[str, str], *, timeout: float) -> None:
    """A step that blocks boot (the self-signed certificate), as cloud-init runs it."""
    with log.open("ab") as output:
        result = subprocess.run(  # noqa: S603 - the shipped script, as cloud-init runs it
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, **environment},
            timeout=timeout,
            check=False,
        )
    if result.returncode != 0:
        raise LabError(f"{' '.join(command[:3])} failed; see {log}")
