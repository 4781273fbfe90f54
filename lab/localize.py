"""Turn the AWS stack's rendered cloud-config into files that run on this machine.

The lab does not keep configs of its own: it renders the same userdata as the Pulumi program
(`components.web_infrastructure.userdata_for`), takes the files from `write_files`, and changes
only what must differ locally: addresses (DNS names become loopback addresses), ports when not
root, file paths (everything lives in the lab's state folder), and the DB credentials source
(a file instead of the RDS-managed secret, since there is no AWS here). Every rewrite must
find the text it replaces, so a change to the userdata that the lab does not understand stops
the lab with a clear error instead of silently running something else.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from components.web_infrastructure import userdata_for
from lab.topology import Topology
from userdata import cloud_config

LAB_REGION = "local"


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


def shipped_files(userdata: str) -> dict[str, str]:
    """Path -> content of every file a cloud-config document writes."""
    document = cloud_config.parse(userdata)
    return {f["path"]: cloud_config.file_content(f).decode() for f in document["write_files"]}


@dataclass(frozen=True)
class WebNodeFiles:
    nginx_conf: Path
    app_command: list[str]
    app_environment: dict[str, str]
    socket: Path


class Localizer:
    def __init__(self, topology: Topology, state: Path, *, is_root: bool) -> None:
        self.topology = topology
        self.state = state
        self.is_root = is_root
        self.load_balancer_userdata, self.web_userdata = userdata_for(topology.settings, LAB_REGION)
        self.zone = topology.settings.internal_zone

    def _host_address(self, dns_name: str) -> str:
        label = dns_name.removesuffix(f".{self.zone}")
        return self.topology.host(label).address

    def haproxy_config(self) -> Path:
        directory = self.state / "load-balancer"
        directory.mkdir(parents=True, exist_ok=True)
        text = shipped_files(self.load_balancer_userdata)["/etc/haproxy/haproxy.cfg"]
        ports = self.topology.ports
        lb = self.topology.host("load-balancer")
        replacements = [
            ("    log /dev/log local0\n", "    log stdout format raw local0\n"),
            # In the foreground the lab keeps HAProxy's PID; systemd does that on AWS.
            ("    daemon\n", ""),
            ("stats socket /run/haproxy/admin.sock", f"stats socket {directory}/admin.sock"),
            (f"bind *:{cloud_config.HTTP_PORT}\n", f"bind {lb.address}:{ports.http}\n"),
            ("bind 127.0.0.1:8404", f"bind {lb.address}:{ports.stats}"),
        ]
        for node in self.topology.web_nodes:
            name = cloud_config.host_name(node.name, self.zone)
            replacements.append(
                (f" {name}:{cloud_config.WEB_PORT}", f" {node.address}:{node.port}")
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

    def web_node(self, name: str, credentials: Path) -> WebNodeFiles:
        directory = self.state / name
        (directory / "app").mkdir(parents=True, exist_ok=True)
        (directory / "etc").mkdir(exist_ok=True)
        (directory / "nginx-temp").mkdir(exist_ok=True)
        files = shipped_files(self.web_userdata[name])
        socket = directory / "gunicorn.sock"
        node = self.topology.host(name)

        nginx = [
            ("pid /run/nginx.pid;", f"pid {directory}/nginx.pid;"),
            ("/var/log/nginx/error.log", f"{directory}/nginx-error.log"),
            ("/var/log/nginx/access.log", f"{directory}/nginx-access.log"),
            ("/var/lib/nginx/", f"{directory}/nginx-temp/"),
            ("unix:/run/web-app/gunicorn.sock", f"unix:{socket}"),
            (
                f"listen *:{cloud_config.WEB_PORT} default_server;",
                f"listen {node.address}:{node.port} default_server;",
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
                files[f"{cloud_config.APP_CONFIG_DIR}/gunicorn.conf.py"],
                [("unix:/run/web-app/gunicorn.sock", f"unix:{socket}")],
                what="the gunicorn config",
            )
        )
        app_dir = directory / "app"
        (app_dir / "web_app.py").write_text(files[f"{cloud_config.APP_DIR}/web_app.py"])

        config = json.loads(files[f"{cloud_config.APP_CONFIG_DIR}/config.json"])
        database = config["database"]
        database["primary_host"] = self._host_address(database["primary_host"])
        database["replica_host"] = self._host_address(database["replica_host"])
        database["port"] = self.topology.ports.mysql
        # The lab's MariaDB has no RDS certificate, and no Secrets Manager holds its password.
        del database["tls_ca_file"]
        config["credentials"] = {"source": "file", "path": str(credentials)}
        app_config = directory / "etc" / "config.json"
        app_config.write_text(json.dumps(config, indent=2) + "\n")

        command, environment = self._service(files["/etc/systemd/system/web-app.service"])
        paths = [
            (f"{cloud_config.APP_CONFIG_DIR}/", f"{directory}/etc/"),
            (cloud_config.APP_DIR, str(app_dir)),
        ]
        command = [rewrite_path(part, paths) for part in command]
        environment = {key: rewrite_path(value, paths) for key, value in environment.items()}
        left = [p for p in [*command, *environment.values()] if p.startswith(("/etc/", "/opt/"))]
        if left:
            raise LabError(f"the web-app unit names paths the lab does not map: {left}")
        return WebNodeFiles(nginx_conf, command, environment, socket)

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


def rewrite_path(part: str, paths: list[tuple[str, str]]) -> str:
    for old, new in paths:
        part = part.replace(old, new)
    return part
