"""The local lab: the whole architecture on one machine, from the stack's own userdata.

`Lab.up()` brings up two MariaDB servers (primary -> GTID -> read-only replica), every web node
(the app under gunicorn, behind Nginx) and HAProxy, each on its own loopback address, and
records every PID in `.lab/state.json`. `stop`/`start` take one host down and back (what the
failover tests and the benchmark do), `down` stops exactly the recorded PIDs and deletes the
state folder, the only place the lab writes.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import shutil
import signal
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab import mariadb, processes
from lab.localize import LabError, Localizer
from lab.processes import Daemon
from lab.topology import Topology, build_topology
from settings import Settings, load_settings, load_stack_file

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STATE = ROOT / ".lab"
REQUIRED = ("haproxy", "nginx", "gunicorn", "mariadbd", "mariadb-install-db", "mariadb")


@dataclass
class Spec:
    """How to (re)start one daemon, and its PID while it runs."""

    name: str
    command: list[str]
    log: str
    environment: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    pid: int | None = None

    @property
    def host(self) -> str:
        return self.name.split("/", 1)[0]

    def daemon(self) -> Daemon | None:
        return Daemon(self.name, self.pid, self.command[0], self.log) if self.pid else None

    def running(self) -> bool:
        daemon = self.daemon()
        return daemon is not None and processes.is_running(daemon)


class Lab:
    def __init__(self, state: Path = DEFAULT_STATE, stack: str = "dev") -> None:
        self.state = state
        self.stack = stack
        self.state_file = state / "state.json"

    # --- state -------------------------------------------------------------------------

    def _load(self) -> tuple[Topology, list[Spec]]:
        if not self.state_file.exists():
            raise LabError("the lab is not running; start it with `make lab` (python -m lab up)")
        data = json.loads(self.state_file.read_text())
        settings = Settings(
            **{**data["settings"], "admin_cidrs": tuple(data["settings"]["admin_cidrs"])}
        )
        topology = build_topology(settings, is_root=data["is_root"])
        return topology, [Spec(**spec) for spec in data["daemons"]]

    def _save(self, topology: Topology, specs: list[Spec]) -> None:
        data = {
            "settings": dataclasses.asdict(topology.settings),
            "is_root": topology.ports.http == 80,
            "daemons": [dataclasses.asdict(s) for s in specs],
        }
        self.state_file.write_text(json.dumps(data, indent=2))

    def settings(self, web_nodes: int | None) -> Settings:
        settings = load_stack_file(ROOT / f"Pulumi.{self.stack}.yaml", stack=self.stack)
        if web_nodes is not None:
            # Validated like the stack file, so the lab refuses what `pulumi up` refuses.
            checked = load_settings({"webNodeCount": web_nodes}, stack=self.stack)
            settings = dataclasses.replace(settings, web_node_count=checked.web_node_count)
        return settings

    # --- up / down -----------------------------------------------------------------------

    def up(self, web_nodes: int | None = None) -> Topology:
        if self.state_file.exists():
            _, previous = self._load()
            if any(s.running() for s in previous):
                raise LabError(
                    "the lab is already running; see `python -m lab status`, "
                    "or stop it with `make lab-down` before starting it again"
                )
            shutil.rmtree(self.state)  # left over from a crash: nothing of it runs
        missing = [t for t in REQUIRED if processes.find_program(t) is None]
        if missing:
            raise LabError(f"missing programs: {', '.join(missing)}; {processes.INSTALL}")

        is_root = os.geteuid() == 0
        topology = build_topology(self.settings(web_nodes), is_root=is_root)
        for host in topology.hosts:
            processes.ensure_port_free(host.address, host.port, host.name)
        processes.ensure_port_free(
            topology.host("load-balancer").address, topology.ports.stats, "HAProxy stats"
        )

        self.state.mkdir(parents=True)
        specs: list[Spec] = []
        try:
            self._bring_up(topology, specs, is_root)
        except BaseException:
            for spec in reversed(specs):
                self._stop_spec(spec, signal.SIGTERM)
            self._save(topology, specs)
            raise
        return topology

    def _bring_up(self, topology: Topology, specs: list[Spec], is_root: bool) -> None:
        localizer = Localizer(topology, self.state, is_root=is_root)
        credentials = self.state / "credentials.json"

        primary = self._server(topology, "db-primary")
        replica = self._server(topology, "db-replica")
        for server in (primary, replica):
            mariadb.initialise(server)
        specs.append(self._mariadb_spec(primary, replica=False))
        self._start(specs[-1], topology)
        self._save(topology, specs)
        replication_password = mariadb.set_up_primary(primary, credentials)
        specs.append(self._mariadb_spec(replica, replica=True))
        self._start(specs[-1], topology)
        self._save(topology, specs)
        mariadb.start_replication(replica, primary.host, replication_password)
        processes.wait_until(
            lambda: mariadb.replication_summary(replica).startswith("replicating"),
            _daemon(specs[-1]),
            what="replication from db-primary to db-replica",
        )
        if is_root:  # the app (root here) and Nginx's workers (www-data) share the socket
            os.chmod(self.state, 0o755)  # noqa: S103 - a folder, not a secret; see above

        for node in topology.web_nodes:
            files = localizer.web_node(node.name, credentials)
            directory = self.state / node.name
            specs.append(
                Spec(
                    f"{node.name}/app",
                    files.app_command,
                    str(directory / "app.log"),
                    files.app_environment,
                    str(directory),
                )
            )
            self._start(specs[-1], topology)
            nginx = processes.program("nginx")
            specs.append(
                Spec(
                    f"{node.name}/nginx",
                    [
                        nginx,
                        "-c",
                        str(files.nginx_conf),
                        "-e",
                        str(directory / "nginx-error.log"),
                        "-g",
                        "daemon off;",
                    ],
                    str(directory / "nginx.log"),
                )
            )
            self._start(specs[-1], topology)
            self._save(topology, specs)

        haproxy_conf = localizer.haproxy_config()
        haproxy = processes.program("haproxy")
        specs.append(
            Spec(
                "load-balancer/haproxy",
                [haproxy, "-db", "-f", str(haproxy_conf)],
                str(self.state / "load-balancer" / "haproxy.log"),
            )
        )
        self._start(specs[-1], topology)
        self._save(topology, specs)
        every_node_up = {node.name: "UP" for node in topology.web_nodes}
        processes.wait_until(
            lambda: self.rotation(topology) == every_node_up,
            _daemon(specs[-1]),
            what="HAProxy to see every web node UP",
        )

    def _server(self, topology: Topology, name: str) -> mariadb.Server:
        return mariadb.Server(
            topology.host(name), self.state / name, 1 if name == "db-primary" else 2
        )

    def _mariadb_spec(self, server: mariadb.Server, *, replica: bool) -> Spec:
        return Spec(
            f"{server.host.name}/mariadbd",
            mariadb.server_command(server, replica=replica),
            str(server.log),
        )

    def _start(self, spec: Spec, topology: Topology) -> None:
        daemon = processes.start(
            spec.name,
            spec.command,
            Path(spec.log),
            environment=spec.environment,
            cwd=Path(spec.cwd) if spec.cwd else None,
        )
        spec.pid = daemon.pid
        host = topology.host(spec.host)
        kind = spec.name.split("/", 1)[1]
        if kind == "mariadbd":
            server = self._server(topology, host.name)
            ready = lambda: mariadb.sql(server, "SELECT 1", check=False).returncode == 0  # noqa: E731
        elif kind == "app":
            socket_path = Path(spec.cwd or "") / "gunicorn.sock"
            ready = lambda: _unix_socket_answers(socket_path)  # noqa: E731
        else:
            ready = lambda: processes.port_is_open(host.address, host.port)  # noqa: E731
        processes.wait_until(ready, daemon, what=f"{spec.name} ({host.address})", timeout=60)

    @staticmethod
    def _stop_spec(spec: Spec, sig: int) -> None:
        daemon = spec.daemon()
        if daemon is not None:
            # Nginx stops gracefully on QUIT (as systemd stops it); the others on TERM.
            if sig == signal.SIGTERM and spec.name.endswith("/nginx"):
                sig = signal.SIGQUIT
            processes.stop(daemon, sig=sig)

    def down(self) -> list[str]:
        """Stop every daemon the lab recorded, by PID, and remove the state folder."""
        if not self.state_file.exists():
            if self.state.exists():
                shutil.rmtree(self.state)
            return []
        _, specs = self._load()
        stopped = []
        for spec in reversed(specs):
            if spec.running():
                stopped.append(spec.name)
            self._stop_spec(spec, signal.SIGTERM)
        shutil.rmtree(self.state)
        return stopped

    # --- one host ----------------------------------------------------------------------------

    def stop_host(self, name: str, *, kill: bool = False) -> None:
        topology, specs = self._load()
        topology.host(name)
        for spec in reversed([s for s in specs if s.host == name]):
            self._stop_spec(spec, signal.SIGKILL if kill else signal.SIGTERM)

    def start_host(self, name: str) -> None:
        topology, specs = self._load()
        topology.host(name)
        for spec in [s for s in specs if s.host == name]:
            if not spec.running():
                self._start(spec, topology)
        self._save(topology, specs)

    # --- status ------------------------------------------------------------------------------

    def rotation(self, topology: Topology) -> dict[str, str]:
        """HAProxy's view of each web node (UP, DOWN, MAINT ...), from its stats CSV."""
        try:
            with urllib.request.urlopen(f"{topology.stats_url};csv", timeout=2) as response:  # noqa: S310
                text = response.read().decode()
        except OSError:
            return {}
        rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
        return {
            r["svname"]: r["status"].split()[0]
            for r in rows
            if r["pxname"] == "web" and r["svname"] not in ("FRONTEND", "BACKEND")
        }

    def status(self) -> dict[str, Any]:
        topology, specs = self._load()
        rotation = self.rotation(topology)
        hosts, details = [], {}
        for host in topology.hosts:
            own = [s for s in specs if s.host == host.name]
            up = (
                bool(own)
                and all(s.running() for s in own)
                and processes.port_is_open(host.address, host.port)
            )
            hosts.append({**host.as_dict(), "state": "up" if up else "down"})
            if host.role == "web":
                details[host.name] = f"HAProxy: {rotation.get(host.name, 'unknown')}"
            elif host.name == "db-replica":
                details[host.name] = (
                    mariadb.replication_summary(self._server(topology, host.name)) if up else "down"
                )
            elif host.name == "db-primary":
                details[host.name] = "takes writes" if up else "down"
            else:
                details[host.name] = f"stats: {topology.stats_url}"
        return {"url": topology.url, "hosts": hosts, "details": details}


def _daemon(spec: Spec) -> Daemon:
    daemon = spec.daemon()
    if daemon is None:
        raise LabError(f"{spec.name} was never started")
    return daemon


def _unix_socket_answers(path: Path) -> bool:
    import socket  # noqa: PLC0415

    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.3)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True
