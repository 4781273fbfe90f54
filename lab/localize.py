"""Turn the AWS stack's rendered cloud-config into files that run on this machine.

The lab does not keep configs of its own: it renders the same userdata as the Pulumi program
(`components.rendered_hosts.userdata_for`), takes the files from `write_files` and the
readiness report from `runcmd`, and changes only what must differ locally:

- where a host listens: its own loopback address, and higher ports when not root;
- file paths: everything lives in the host's folder in the lab's state;
- HAProxy's resolver: the lab's DNS server instead of the VPC resolver from /etc/resolv.conf
  (HAProxy still finds every web node by its name in the private zone, with the same
  `server` lines, through the lab's DNS server);
- the app's database: the database hosts' addresses (the app resolves names with the system
  resolver, which the lab cannot point at its DNS server), the lab's CA instead of the RDS CA
  bundle (the same TLS check), and the DB password from a file instead of the RDS-managed
  secret;
- the readiness report's local check URL and where it finds the userdata and instance id.

Every rewrite must find the text it replaces, so a change to the userdata that the lab does not
understand stops the lab with a clear error instead of silently running something else.
"""

from __future__ import annotations

import json
import shlex
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from lab.topology import Topology
from userdata import cloud_config, load_balancer_config, web_node_config
from userdata.shipping import FETCH_ARTIFACT

LAB_REGION = "eu-west-1"  # the region the lab renders userdata for; moto serves any
LAB_ACCOUNT = "123456789012"  # moto's account


class LabError(RuntimeError):
    """Something the user must fix; the message says what."""


def rewrite(text: str, replacements: list[tuple[str, str]], *, what: str) -> str:
    for old, new in replacements:
        if old not in text:
            raise LabError(
                f"{what} no longer contains {old!r}: the userdata changed in a way the lab "
                "does not know; update lab/localize.py to match"
            )
        text = text.replace(old, new)
    return text


def shipped_files(userdata: str) -> dict[str, bytes]:
    """Path -> content of every file a cloud-config document writes."""
    document = cloud_config.parse(userdata)
    return {f["path"]: cloud_config.file_content(f) for f in document["write_files"]}


@dataclass(frozen=True)
class WebNodeFiles:
    nginx_conf: Path
    app_command: list[str]
    app_environment: dict[str, str]
    socket: Path


@dataclass(frozen=True)
class ReadinessCommand:
    command: list[str]
    """The host's own readiness report, as its last runcmd step runs it."""
    parameter: str
    """The SSM parameter it writes."""


class Localizer:
    def __init__(self, topology: Topology, *, is_root: bool) -> None:
        self.topology = topology
        self.is_root = is_root
        self.zone = topology.settings.internal_zone
        self.ports = topology.ports

    def haproxy_config(self, userdata: str, directory: Path, address: str) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        text = shipped_files(userdata)["/etc/haproxy/haproxy.cfg"].decode()
        dns = self.topology.network.address(53)
        replacements = [
            ("    log /dev/log local0\n", "    log stdout format raw local0\n"),
            # In the foreground the lab keeps HAProxy's PID; systemd does that on AWS.
            ("    daemon\n", ""),
            ("stats socket /run/haproxy/admin.sock", f"stats socket {directory}/admin.sock"),
            (f"bind *:{cloud_config.HTTP_PORT}\n", f"bind {address}:{self.ports.http}\n"),
            *self._https_rewrites(text, directory, address),
            ("bind 127.0.0.1:8404", f"bind {address}:{self.ports.stats}"),
            ("    parse-resolv-conf\n", f"    nameserver lab {dns}:{self.ports.dns}\n"),
        ]
        if self.ports.http != cloud_config.WEB_PORT:
            replacements.append(
                (
                    f".{self.zone}:{cloud_config.WEB_PORT}\n",
                    f".{self.zone}:{self.ports.http}\n",
                )
            )
        if not self.is_root:
            replacements += [
                ("    chroot /var/lib/haproxy\n", ""),
                ("    user haproxy\n", ""),
                ("    group haproxy\n", ""),
            ]
        path = directory / "haproxy.cfg"
        path.write_text(rewrite(text, replacements, what="the HAProxy config"))
        return path

    def _https_rewrites(self, text: str, directory: Path, address: str) -> list[tuple[str, str]]:
        """HTTPS in HAProxy's config: its port, and the files site_certificate.py keeps."""
        rewrites = [
            (f"bind *:{cloud_config.HTTPS_PORT} ", f"bind {address}:{self.ports.https} "),
            (load_balancer_config.HAPROXY_CERTIFICATE, f"{directory}/certs/site.pem"),
        ]
        domain = self.topology.settings.domain
        if domain:
            rewrites += [
                (load_balancer_config.ISSUED_ACL, f"{directory}/certificate-issued.acl"),
                (
                    f"server certbot 127.0.0.1:{load_balancer_config.ACME_CHALLENGE_PORT}",
                    f"server certbot {address}:{load_balancer_config.ACME_CHALLENGE_PORT}",
                ),
            ]
            if self.ports.https != cloud_config.HTTPS_PORT:
                rewrites.append(
                    (
                        f"redirect prefix https://{domain} ",
                        f"redirect prefix https://{domain}:{self.ports.https} ",
                    )
                )
        return rewrites

    def web_node(
        self,
        userdata: str,
        name: str,
        directory: Path,
        address: str,
        credentials: Path,
        *,
        database_ca: Path,
    ) -> WebNodeFiles:
        (directory / "etc").mkdir(parents=True, exist_ok=True)
        (directory / "nginx-temp").mkdir(exist_ok=True)
        files = {path: data.decode() for path, data in shipped_files(userdata).items()}
        socket = directory / "gunicorn.sock"

        nginx = [
            ("pid /run/nginx.pid;", f"pid {directory}/nginx.pid;"),
            ("/var/log/nginx/error.log", f"{directory}/nginx-error.log"),
            ("/var/log/nginx/access.log", f"{directory}/nginx-access.log"),
            ("/var/lib/nginx/", f"{directory}/nginx-temp/"),
            ("unix:/run/web-app/gunicorn.sock", f"unix:{socket}"),
            (
                f"listen *:{cloud_config.WEB_PORT} default_server;",
                f"listen {address}:{self.ports.http} default_server;",
            ),
            # Every node's status server would want 127.0.0.1:8080: each gets its own address.
            ("listen 127.0.0.1:8080;", f"listen {address}:{self.ports.status};"),
            # HAProxy connects from the lab's network, not from the VPC's range.
            (
                f"set_real_ip_from {self.topology.settings.vpc_cidr};",
                f"set_real_ip_from {self.topology.network.prefix}.0/24;",
            ),
        ]
        if not self.is_root:
            nginx.append(("user www-data;\n", ""))
        nginx_conf = directory / "nginx.conf"
        nginx_conf.write_text(
            rewrite(files["/etc/nginx/nginx.conf"], nginx, what="the Nginx config")
        )

        gunicorn_conf = directory / "etc" / "gunicorn.conf.py"
        gunicorn_conf.write_text(
            rewrite(
                files[f"{web_node_config.APP_CONFIG_DIR}/gunicorn.conf.py"],
                [("unix:/run/web-app/gunicorn.sock", f"unix:{socket}")],
                what="the gunicorn config",
            )
        )
        app_dir = host_root(directory) / web_node_config.APP_DIR.lstrip("/")

        config = json.loads(files[f"{web_node_config.APP_CONFIG_DIR}/config.json"])
        if config["node_name"] != name:
            raise LabError(f"the userdata for {name} configures {config['node_name']}")
        database = config["database"]
        database["primary_host"] = self._database_address(database["primary_host"])
        database["replica_host"] = self._database_address(database["replica_host"])
        database["port"] = self.ports.mysql
        # The lab's MariaDB has the lab CA's certificate, not RDS's, and no Secrets Manager
        # holds its password.
        database["tls_ca_file"] = str(database_ca)
        config["credentials"] = {"source": "file", "path": str(credentials)}
        app_config = directory / "etc" / "config.json"
        app_config.write_text(json.dumps(config, indent=2) + "\n")

        command, environment = self._service(files["/etc/systemd/system/web-app.service"])
        paths = [
            (f"{web_node_config.APP_CONFIG_DIR}/", f"{directory}/etc/"),
            (web_node_config.APP_DIR, str(app_dir)),
        ]
        command = [rewrite_path(part, paths) for part in command]
        environment = {key: rewrite_path(value, paths) for key, value in environment.items()}
        left = [p for p in [*command, *environment.values()] if p.startswith(("/etc/", "/opt/"))]
        if left:
            raise LabError(f"the web-app unit names paths the lab does not map: {left}")
        return WebNodeFiles(nginx_conf, command, environment, socket)

    def readiness(
        self, userdata: str, directory: Path, address: str, instance_id: str
    ) -> ReadinessCommand:
        """The host's readiness report, run as cloud-init runs it: the shipped script (fetched
        into the host's root by `fetch_files`), with the system Python, against the lab's
        stand-in for AWS."""
        directory.mkdir(parents=True, exist_ok=True)
        document = cloud_config.parse(userdata)
        step = [str(part) for part in document["runcmd"][-1]]
        if step[:2] != ["python3", cloud_config.REPORT_READY]:
            raise LabError(
                "the last runcmd step is no longer the readiness report; update lab/localize.py"
            )
        script = host_root(directory) / cloud_config.REPORT_READY.lstrip("/")
        if not script.exists():
            raise LabError(f"{script} was not installed; run fetch_files first")
        (directory / "user-data.txt").write_text(userdata)  # as cloud-init keeps it
        (directory / "instance-id").write_text(instance_id + "\n")
        url = step[step.index("--check-url") + 1]
        shipped, port = {
            "http": (cloud_config.HTTP_PORT, self.ports.http),
            "https": (cloud_config.HTTPS_PORT, self.ports.https),
        }[urllib.parse.urlsplit(url).scheme]
        local = rewrite(
            url,
            [(f"//127.0.0.1:{shipped}/", f"//{address}:{port}/")],
            what="the readiness check URL",
        )
        command = ["/usr/bin/python3", str(script), *step[2:]]
        command[command.index(url)] = local
        command += [
            "--userdata-file",
            str(directory / "user-data.txt"),
            "--instance-id-file",
            str(directory / "instance-id"),
        ]
        return ReadinessCommand(command, step[step.index("--parameter") + 1])

    def fetch_files(self, userdata: str, directory: Path) -> list[str] | None:
        """The first runcmd step, which installs the host's bigger files from S3, run as
        cloud-init runs it: the shipped script, with the system Python, against the lab's
        stand-in for S3. Each file lands under the host's `root/` (its /opt, /usr, /etc)."""
        if not any(f == FETCH_ARTIFACT for f in shipped_files(userdata)):
            return None
        step = self._runcmd_step(userdata, FETCH_ARTIFACT)
        script = directory / "fetch_artifact.py"
        script.write_bytes(shipped_files(userdata)[FETCH_ARTIFACT])
        command = ["/usr/bin/python3", str(script), *step[2:]]
        for index, part in enumerate(command):
            if index >= 3 and command[index - 3] == "--file":  # KEY SHA256 DESTINATION MODE
                command[index] = str(host_root(directory)) + part
        return command

    @staticmethod
    def _runcmd_step(userdata: str, script: str) -> list[str]:
        steps = [[str(p) for p in s] for s in cloud_config.parse(userdata)["runcmd"]]
        found = [s for s in steps if s[:2] == ["python3", script]]
        if len(found) != 1:
            raise LabError(f"the userdata no longer runs {script} once; update lab/localize.py")
        return found[0]

    def _database_address(self, dns_name: str) -> str:
        label = dns_name.removesuffix(f".{self.zone}")
        return self.topology.host(label).address

    @staticmethod
    def _service(unit: str) -> tuple[list[str], dict[str, str]]:
        """The app server's command line and environment, as systemd would start it."""
        command: list[str] = []
        environment: dict[str, str] = {}
        for line in unit.splitlines():
            if line.startswith("ExecStart="):
                command = shlex.split(line.removeprefix("ExecStart="))
            elif line.startswith("Environment="):
                key, _, value = line.removeprefix("Environment=").partition("=")
                environment[key] = value
        if not command:
            raise LabError("the web-app unit has no ExecStart; update lab/localize.py")
        return command, environment


def host_root(directory: Path) -> Path:
    """Where a lab host's files from S3 go: its own /opt, /usr, /etc under its folder."""
    return directory / "root"


def rewrite_path(part: str, paths: list[tuple[str, str]]) -> str:
    for old, new in paths:
        part = part.replace(old, new)
    return part
